import numpy as np
import pytest

from distrain.chain.yuma import weighted_median_columns, yuma_epoch

# uids 0 and 1 are validators (stake 0.7 and 0.3), uids 2, 3, 4 are miners.
STAKE = np.array([0.7, 0.3, 0.0, 0.0, 0.0])
PERMIT = np.array([True, True, False, False, False])
WEIGHTS = np.array(
    [
        [0.0, 0.0, 0.5, 0.3, 0.2],  # agrees with consensus
        [0.0, 0.0, 0.1, 0.3, 0.6],  # outlier: over-weights miner 4
        [0.0] * 5,
        [0.0] * 5,
        [0.0] * 5,
    ]
)


def run(weights=WEIGHTS, stake=STAKE, permit=PERMIT, bonds=None, kappa=0.5, bonds_moving_avg=0.9):
    n = len(stake)
    bonds = np.zeros((n, n)) if bonds is None else bonds
    return yuma_epoch(weights, stake, permit, bonds, kappa, bonds_moving_avg)


def test_hand_checked_two_validators_three_miners():
    r = run()
    # Consensus: miner 2 -> 0.5 (0.7 of stake weights >= 0.5); miner 3 -> 0.3 (both);
    # miner 4 -> 0.2 (only 0.3 of stake supports 0.6, all of it supports 0.2).
    np.testing.assert_allclose(r.consensus, [0, 0, 0.5, 0.3, 0.2])
    # Validator 1's 0.6 on miner 4 is clipped to 0.2: ranks = 0.7 * W0 + 0.3 * W1'.
    np.testing.assert_allclose(r.ranks, [0, 0, 0.38, 0.30, 0.20])
    np.testing.assert_allclose(r.incentive, np.array([0, 0, 19, 15, 10]) / 44)
    assert r.incentive.sum() == pytest.approx(1.0)
    # Miner 4 kept 0.20 of its 0.32 pre-clip rank.
    np.testing.assert_allclose(r.trust, [0, 0, 1, 1, 0.625])
    np.testing.assert_allclose(r.validator_trust, [1.0, 0.6, 0, 0, 0])
    # Bonds from empty: the column-normalised stake-weighted clipped weights.
    np.testing.assert_allclose(r.bonds[:2, 2:], [[35 / 38, 0.7, 0.7], [3 / 38, 0.3, 0.3]])
    # Dividends: 35/38 * 19/44 + 0.7 * 25/44 = 70/88 for the validator that agrees.
    np.testing.assert_allclose(r.dividends, [70 / 88, 18 / 88, 0, 0, 0])
    assert r.dividends[0] / STAKE[0] > 1 > r.dividends[1] / STAKE[1]


def test_unweighted_miner_gets_nothing():
    weights = np.zeros((4, 4))
    weights[0, 1:3] = [0.5, 0.5]  # nobody weights uid 3
    r = run(weights, np.array([1.0, 0, 0, 0]), np.array([True, False, False, False]))
    np.testing.assert_allclose(r.incentive, [0, 0.5, 0.5, 0])
    assert r.dividends[0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "weights, stake",
    [
        (WEIGHTS, np.zeros(5)),  # nobody has stake
        (np.zeros((5, 5)), STAKE),  # nobody set weights
    ],
)
def test_idle_subnet_gives_zeros_not_nan(weights, stake):
    r = run(weights, stake)
    for name in ("consensus", "incentive", "dividends", "trust", "ranks", "bonds", "validator_trust"):
        value = getattr(r, name)
        assert np.isfinite(value).all() and not value.any(), name


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_subnets(n):
    r = run(np.ones((n, n)), np.ones(n), np.ones(n, dtype=bool))
    # A lone validator's only weight is on itself, which is masked.
    assert r.incentive.shape == (n,) and not r.incentive.any()
    assert np.isfinite(r.bonds).all()


def test_unpermitted_and_self_weights_are_ignored():
    weights = np.zeros((3, 3))
    weights[0] = [0.9, 0.1, 0.0]  # self-weight 0.9 dropped, leaving all weight on uid 1
    weights[2] = [0.0, 0.0, 1.0]  # no permit: ignored even though it has stake
    r = run(weights, np.array([1.0, 0, 5.0]), np.array([True, False, False]))
    np.testing.assert_allclose(r.incentive, [0, 1, 0])


def test_bonds_move_by_the_moving_average():
    # One miner (uid 2), two equal validators; old bonds all on validator 0, new weights equal.
    weights = np.zeros((3, 3))
    weights[:2, 2] = 1.0
    old = np.zeros((3, 3))
    old[0, 2] = 1.0
    r = run(weights, np.array([1.0, 1.0, 0]), np.array([True, True, False]), bonds=old, bonds_moving_avg=0.9)
    # 0.9 * old + 0.1 * new: validator 0 keeps 0.9 + 0.05, validator 1 gains 0.05.
    np.testing.assert_allclose(r.bonds[:2, 2], [0.95, 0.05])
    np.testing.assert_allclose(r.dividends, [0.95, 0.05, 0])


@pytest.mark.parametrize("kappa, expected", [(0.25, 0.9), (0.5, 0.4), (0.6, 0.2), (1.0, 0.2)])
def test_weighted_median_kappa(kappa, expected):
    # Stake 0.25 / 0.25 / 0.5 behind weights 0.9 / 0.4 / 0.2; a zero-stake row at 1.0 never counts.
    stake = np.array([0.25, 0.25, 0.5, 0.0])
    column = np.array([[0.9], [0.4], [0.2], [1.0]])
    assert weighted_median_columns(stake, column, kappa)[0] == pytest.approx(expected)
