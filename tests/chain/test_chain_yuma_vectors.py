"""Subtensor's own epoch test vectors, reproduced by ``distrain.chain.simulate``.

Source: opentensor/subtensor, pallets/subtensor/src/tests/epoch.rs (the Yuma3 tests also live in a later
Yuma3 / liquid-alpha test module with the same names and numbers). Each subtensor test registers its
neurons, runs one epoch without weights to hand out validator permits, then sets weights and runs the
epochs it checks; here that first epoch is the scenario's leading ``{}``.

Tolerances: the Yuma3 tests compare bonds and dividends to within 1e-3 of targets printed to 4 decimals;
we match within 1e-4 (4-decimal rounding plus u16 storage). The classic ``test_bonds`` compares stored u16
bonds exactly; we match within one u16 unit, because subtensor's I32F32 divisions truncate and so drift
a stored bond down by one now and then (one entry of 28 here: 49150 on chain, 49151 in float64).
"""

import numpy as np
import pytest

from distrain.chain.simulate import parse_scenario, simulate

U16 = 65535
HALF = U16 // 2

# setup_yuma_3_scenario: kappa = u16::MAX / 2, liquid alpha on with (0.1, 0.3), steepness 1000 (the
# sigmoid uses 1000 / 100 = 10), bonds_moving_average 975_000, bonds_penalty 0, 3 validator permits.
YUMA3 = {
    "yuma3": True,
    "kappa": HALF / U16,
    "liquid_alpha": True,
    "alpha_low": 0.1,
    "alpha_high": 0.3,
    "alpha_steepness": 1000,
    "bonds_moving_avg": 0.975,
    "bonds_penalty": 0.0,
    "max_validators": 3,
}

TO_1, TO_2 = [U16, 0], [0, U16]  # all weight on server 1 (uid 3) or server 2 (uid 4)


def scenario(params: dict, stakes: list, validator_rows: list) -> list[dict]:
    """Run a leading permit epoch, then one epoch per entry of ``validator_rows``.

    An entry lists the validators' weights on the servers (the last uids), or is None to keep the
    previous weights; servers set no weights.
    """
    n = len(stakes)
    epochs = [{}]
    for rows in validator_rows:
        if rows is None:
            epochs.append({})
            continue
        weights = [[0] * (n - len(row)) + list(row) for row in rows]
        epochs.append({"weights": weights + [[0] * n] * (n - len(rows))})
    return simulate(parse_scenario({"params": params, "stakes": stakes, "epochs": epochs}))[1:]


def check_yuma3(records: list[dict], target_bonds: list, target_dividends: list) -> None:
    """Bonds of the validators (rows) on the servers (columns), and dividends, epoch by epoch."""
    assert len(records) == len(target_bonds) == len(target_dividends)
    for epoch, (record, bonds, dividends) in enumerate(zip(records, target_bonds, target_dividends)):
        validators, servers = len(bonds), len(bonds[0])
        got = np.array(record["bonds"])[:validators, -servers:]
        np.testing.assert_allclose(got, bonds, atol=1e-4, err_msg=f"bonds, epoch {epoch}")
        np.testing.assert_allclose(
            record["dividends"], dividends, atol=1e-4, err_msg=f"dividends, epoch {epoch}"
        )


# epoch.rs: test_yuma_3_kappa_moves_first
def test_yuma_3_kappa_moves_first():
    records = scenario(
        YUMA3,
        [8, 1, 1, 0, 0],
        [[TO_1, TO_1, TO_1], [TO_2, TO_1, TO_1], [TO_2, TO_2, TO_1], [TO_2, TO_2, TO_2], None, None],
    )
    check_yuma3(
        records,
        [
            [[0.1013, 0.0000], [0.1013, 0.0000], [0.1013, 0.0000]],
            [[0.0908, 0.1013], [0.3697, 0.0000], [0.3697, 0.0000]],
            [[0.0815, 0.1924], [0.3170, 0.1013], [0.5580, 0.0000]],
            [[0.0731, 0.2742], [0.2765, 0.1924], [0.4306, 0.1013]],
            [[0.0656, 0.3478], [0.2435, 0.2742], [0.3589, 0.1924]],
            [[0.0588, 0.4139], [0.2157, 0.3478], [0.3089, 0.2742]],
        ],
        [
            [0.8000, 0.1000, 0.1000, 0.0000, 0.0000],
            [1.0000, 0.0000, 0.0000, 0.0000, 0.0000],
            [0.9382, 0.0618, 0.0000, 0.0000, 0.0000],
            [0.8819, 0.0773, 0.0407, 0.0000, 0.0000],
            [0.8564, 0.0844, 0.0592, 0.0000, 0.0000],
            [0.8418, 0.0884, 0.0697, 0.0000, 0.0000],
        ],
    )


# epoch.rs: test_yuma_3_kappa_moves_second
def test_yuma_3_kappa_moves_second():
    records = scenario(
        YUMA3,
        [8, 1, 1, 0, 0],
        [[TO_1, TO_1, TO_1], [TO_1, TO_2, TO_1], [TO_2, TO_2, TO_1], [TO_2, TO_2, TO_2], None, None],
    )
    check_yuma3(
        records,
        [
            [[0.1013, 0.0000], [0.1013, 0.0000], [0.1013, 0.0000]],
            [[0.1924, 0.0000], [0.0908, 0.2987], [0.1924, 0.0000]],
            [[0.1715, 0.1013], [0.0815, 0.3697], [0.4336, 0.0000]],
            [[0.1531, 0.1924], [0.0731, 0.4336], [0.3608, 0.1013]],
            [[0.1369, 0.2742], [0.0656, 0.4910], [0.3103, 0.1924]],
            [[0.1225, 0.3478], [0.0588, 0.5426], [0.2712, 0.2742]],
        ],
        [
            [0.8000, 0.1000, 0.1000, 0.0000, 0.0000],
            [0.8446, 0.0498, 0.1056, 0.0000, 0.0000],
            [0.6868, 0.3132, 0.0000, 0.0000, 0.0000],
            [0.7421, 0.2090, 0.0489, 0.0000, 0.0000],
            [0.7625, 0.1706, 0.0669, 0.0000, 0.0000],
            [0.7730, 0.1508, 0.0762, 0.0000, 0.0000],
        ],
    )


# epoch.rs: test_yuma_3_kappa_moves_last
def test_yuma_3_kappa_moves_last():
    records = scenario(
        YUMA3,
        [8, 1, 1, 0, 0],
        [[TO_1, TO_1, TO_1], [TO_1, TO_2, TO_1], [TO_1, TO_2, TO_2], [TO_2, TO_2, TO_2], None, None],
    )
    check_yuma3(
        records,
        [
            [[0.1013, 0.0000], [0.1013, 0.0000], [0.1013, 0.0000]],
            [[0.1924, 0.0000], [0.0908, 0.2987], [0.1924, 0.0000]],
            [[0.2742, 0.0000], [0.0815, 0.5081], [0.1715, 0.2987]],
            [[0.2416, 0.1013], [0.0731, 0.5580], [0.1531, 0.3697]],
            [[0.2141, 0.1924], [0.0656, 0.6028], [0.1369, 0.4336]],
            [[0.1903, 0.2742], [0.0588, 0.6430], [0.1225, 0.4910]],
        ],
        [
            [0.8000, 0.1000, 0.1000, 0.0000, 0.0000],
            [0.8446, 0.0498, 0.1056, 0.0000, 0.0000],
            [0.8966, 0.0333, 0.0701, 0.0000, 0.0000],
            [0.4663, 0.3210, 0.2127, 0.0000, 0.0000],
            [0.5976, 0.2340, 0.1683, 0.0000, 0.0000],
            [0.6592, 0.1932, 0.1475, 0.0000, 0.0000],
        ],
    )


SWITCH_ONCE = [[TO_1] * 3, [TO_1] * 3, [TO_1, TO_1, TO_2], [TO_1] * 3, [TO_1] * 3, [TO_1] * 3]
"""Equal-stake validators all weight server 1, except validator C on server 2 for one epoch."""


# epoch.rs: test_yuma_3_one_epoch_switch
def test_yuma_3_one_epoch_switch():
    check_yuma3(
        scenario(YUMA3, [33, 33, 34, 0, 0], SWITCH_ONCE),
        [
            [[0.1013, 0.0000], [0.1013, 0.0000], [0.1013, 0.0000]],
            [[0.1924, 0.0000], [0.1924, 0.0000], [0.1924, 0.0000]],
            [[0.2742, 0.0000], [0.2742, 0.0000], [0.1715, 0.2987]],
            [[0.3478, 0.0000], [0.3478, 0.0000], [0.2554, 0.2618]],
            [[0.4139, 0.0000], [0.4139, 0.0000], [0.3309, 0.2312]],
            [[0.4733, 0.0000], [0.4733, 0.0000], [0.3987, 0.2051]],
        ],
        [
            [0.3300, 0.3300, 0.3400, 0.0000, 0.0000],
            [0.3300, 0.3300, 0.3400, 0.0000, 0.0000],
            [0.3782, 0.3782, 0.2436, 0.0000, 0.0000],
            [0.3628, 0.3628, 0.2745, 0.0000, 0.0000],
            [0.3541, 0.3541, 0.2917, 0.0000, 0.0000],
            [0.3487, 0.3487, 0.3026, 0.0000, 0.0000],
        ],
    )


# epoch.rs: test_yuma_3_liquid_alpha_disabled. Upstream lists these bonds as [0, server 1, server 2]
# rows and its `skip(3)` leaves them unchecked; they are still the fixed-alpha (0.025) bonds, so we check
# them as (server 1, server 2).
def test_yuma_3_liquid_alpha_disabled():
    check_yuma3(
        scenario({**YUMA3, "liquid_alpha": False}, [33, 33, 34, 0, 0], SWITCH_ONCE),
        [
            [[0.0250, 0.0000], [0.0250, 0.0000], [0.0250, 0.0000]],
            [[0.0494, 0.0000], [0.0494, 0.0000], [0.0494, 0.0000]],
            [[0.0731, 0.0000], [0.0731, 0.0000], [0.0481, 0.0250]],
            [[0.0963, 0.0000], [0.0963, 0.0000], [0.0719, 0.0244]],
            [[0.1189, 0.0000], [0.1189, 0.0000], [0.0951, 0.0238]],
            [[0.1409, 0.0000], [0.1409, 0.0000], [0.1178, 0.0232]],
        ],
        [
            [0.3300, 0.3300, 0.3400, 0.0000, 0.0000],
            [0.3300, 0.3300, 0.3400, 0.0000, 0.0000],
            [0.3734, 0.3734, 0.2532, 0.0000, 0.0000],
            [0.3611, 0.3611, 0.2779, 0.0000, 0.0000],
            [0.3541, 0.3541, 0.2919, 0.0000, 0.0000],
            [0.3495, 0.3495, 0.3009, 0.0000, 0.0000],
        ],
    )


# epoch.rs: test_yuma_3_stable_miner
def test_yuma_3_stable_miner():
    first_third, second_third = [HALF, 0, HALF], [0, HALF, HALF]
    check_yuma3(
        scenario(
            YUMA3,
            [8, 1, 1, 0, 0, 0],
            [
                [first_third] * 3,
                [first_third, second_third, first_third],
                [second_third, second_third, first_third],
                [second_third] * 3,
                None,
                None,
            ],
        ),
        [
            [[0.0507, 0.0000, 0.0507], [0.0507, 0.0000, 0.0507], [0.0507, 0.0000, 0.0507]],
            [[0.0962, 0.0000, 0.0962], [0.0455, 0.1000, 0.0962], [0.0962, 0.0000, 0.0962]],
            [[0.0863, 0.0507, 0.1371], [0.0408, 0.1405, 0.1371], [0.1770, 0.0000, 0.1371]],
            [[0.0774, 0.0962, 0.1739], [0.0367, 0.1770, 0.1739], [0.1579, 0.0507, 0.1739]],
            [[0.0694, 0.1371, 0.2069], [0.0329, 0.2097, 0.2069], [0.1411, 0.0962, 0.2069]],
            [[0.0623, 0.1739, 0.2366], [0.0296, 0.2391, 0.2366], [0.1263, 0.1371, 0.2366]],
        ],
        [
            [0.8000, 0.1000, 0.1000, 0.0000, 0.0000, 0.0000],
            [0.8226, 0.0745, 0.1028, 0.0000, 0.0000, 0.0000],
            [0.7750, 0.1685, 0.0565, 0.0000, 0.0000, 0.0000],
            [0.7864, 0.1372, 0.0764, 0.0000, 0.0000, 0.0000],
            [0.7912, 0.1241, 0.0847, 0.0000, 0.0000, 0.0000],
            [0.7937, 0.1173, 0.0890, 0.0000, 0.0000, 0.0000],
        ],
    )


# epoch.rs: test_bonds (classic Yuma: bonds_penalty = u16::MAX, default bonds_moving_average 900_000 and
# kappa 32767, 4 validators with stake 1:2:3:4 weighting 4 servers 0.1:0.2:0.3:0.4). Bonds are stored
# column max-upscaled as u16; the test checks one server's column after each epoch.
def test_bonds():
    u16 = [U16 // 4, U16 // 2, (U16 // 4) * 3, U16]
    honest = [0, 0, 0, 0, *u16]
    on_self = [[U16 if j == i else 0 for j in range(8)] for i in range(3)]
    only_srv4 = [0] * 7 + [U16]
    servers = [[0] * 8] * 4
    validator_rows = [
        [honest] * 4,
        [on_self[0], honest, honest, honest],  # validator 1 weights only itself (masked)
        [on_self[0], on_self[1], honest, honest],  # then validator 2
        [on_self[0], on_self[1], on_self[2], honest],  # then validator 3: 0.4 of stake < kappa
        [on_self[0], on_self[1], only_srv4, honest],  # validator 3 weights server 4 only
        None,
        None,
    ]
    epochs = [{}] + [{} if rows is None else {"weights": rows + servers} for rows in validator_rows]
    params = {"yuma3": False, "kappa": HALF / U16, "bonds_penalty": 1.0, "bonds_moving_avg": 0.9}
    records = simulate(
        parse_scenario({"params": params, "stakes": [1, 2, 3, 4, 0, 0, 0, 0], "epochs": epochs})
    )
    expected = [  # (server uid, stored u16 bonds of validators 1..4)
        (4, [16383, 32767, 49151, 65535]),
        (4, [14582, 32767, 49151, 65535]),
        (4, [12603, 28321, 49151, 65535]),
        (7, [12602, 28320, 49150, 65535]),
        (7, [10951, 24609, 49150, 65535]),
        (7, [9559, 21482, 49150, 65535]),
        (7, [8376, 18824, 49150, 65535]),
    ]
    for epoch, (record, (server, bonds)) in enumerate(zip(records[1:], expected, strict=True)):
        got = np.rint(np.array(record["bonds"])[:4, server] * U16)
        np.testing.assert_allclose(got, bonds, atol=1, err_msg=f"epoch {epoch}")
    # Epoch 3: with only 0.4 of the stake still weighting servers, nothing reaches kappa: no incentive.
    assert records[4]["consensus"] == pytest.approx([0] * 8) and not any(records[4]["incentive"])
