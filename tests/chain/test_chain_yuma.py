import math

import numpy as np
import pytest

from distrain.chain.yuma import BondsInput, YumaParams, liquid_alpha, split_emission, yuma_epoch
from distrain.chain.yuma_math import top_k_nonzero, weighted_median_columns

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
VARIANTS = ("yuma3", "classic")


def run(weights=WEIGHTS, stake=STAKE, permit=PERMIT, bonds=None, variant="yuma3", **params):
    n = len(stake)
    bonds = np.zeros((n, n), dtype=np.int64) if bonds is None else bonds
    return yuma_epoch(weights, stake, permit, bonds, YumaParams(**params), variant)


@pytest.mark.parametrize("variant", VARIANTS)
def test_hand_checked_consensus_two_validators_three_miners(variant):
    r = run(variant=variant)
    # Consensus: miner 2 -> 0.5 (0.7 of stake weights >= 0.5); miner 3 -> 0.3 (both);
    # miner 4 -> 0.2 (only 0.3 of stake supports 0.6, all of it supports 0.2).
    np.testing.assert_allclose(r.consensus, [0, 0, 0.5, 0.3, 0.2])
    # Validator 1's 0.6 on miner 4 is clipped to 0.2: ranks = 0.7 * W0 + 0.3 * W1'.
    np.testing.assert_allclose(r.ranks, [0, 0, 0.38, 0.30, 0.20])
    np.testing.assert_allclose(r.incentive, np.array([0, 0, 19, 15, 10]) / 44)
    # Miner 4 kept 0.20 of its 0.32 pre-clip rank.
    np.testing.assert_allclose(r.trust, [0, 0, 1, 1, 0.625])
    np.testing.assert_allclose(r.validator_trust, [1.0, 0.6, 0, 0, 0])
    np.testing.assert_array_equal(r.validator_permit, [True, True, False, False, False])


def test_hand_checked_classic_bonds_and_dividends():
    r = run(variant="classic")
    # Bonds from empty are the column-normalised stake-weighted clipped weights,
    # [[35/38, 0.7, 0.7], [3/38, 0.3, 0.3]], stored max-upscaled per column as floor(x * 65535).
    np.testing.assert_array_equal(r.bonds[:2, 2:], [[65535] * 3, [5617, 28086, 28086]])
    # Dividends: 35/38 * 19/44 + 0.7 * 25/44 = 70/88 for the validator that agrees.
    np.testing.assert_allclose(r.dividends, [70 / 88, 18 / 88, 0, 0, 0])


def test_hand_checked_yuma3_bonds_and_dividends():
    r = run(variant="yuma3")
    # Bonds are alpha (0.1) times the clipped weights, each its own proportion of 65535.
    np.testing.assert_array_equal(r.bonds[:2, 2:], [[3276, 1966, 1310], [655, 1966, 1310]])
    # Per validator: column-normalised bonds times incentive, [85/132, 47/132], then times stake.
    np.testing.assert_allclose(r.dividends, [595 / 736, 141 / 736, 0, 0, 0])
    assert r.dividends[0] / STAKE[0] > 1 > r.dividends[1] / STAKE[1]


@pytest.mark.parametrize("variant", VARIANTS)
def test_unweighted_miner_gets_nothing(variant):
    weights = np.zeros((4, 4))
    weights[0, 1:3] = [0.5, 0.5]  # nobody weights uid 3
    r = run(weights, np.array([1.0, 0, 0, 0]), np.array([True, False, False, False]), variant=variant)
    np.testing.assert_allclose(r.incentive, [0, 0.5, 0.5, 0])
    assert r.dividends[0] == pytest.approx(1.0)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "weights, stake",
    [
        (WEIGHTS, np.zeros(5)),  # nobody has stake
        (np.zeros((5, 5)), STAKE),  # nobody set weights
    ],
)
def test_idle_subnet_gives_zeros_not_nan(weights, stake, variant):
    r = run(weights, stake, variant=variant)
    for name in ("consensus", "incentive", "dividends", "trust", "ranks", "bonds", "validator_trust"):
        value = getattr(r, name)
        assert np.isfinite(value).all() and not value.any(), name


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("n", [0, 1])
def test_tiny_subnets(n, variant):
    r = run(np.ones((n, n)), np.ones(n), np.ones(n, dtype=bool), variant=variant)
    # A lone validator's only weight is on itself, which is masked.
    assert r.incentive.shape == (n,) and not r.incentive.any()
    assert r.bonds.shape == (n, n) and not r.bonds.any()


def test_unpermitted_and_self_weights_are_ignored():
    weights = np.zeros((3, 3))
    weights[0] = [0.9, 0.1, 0.0]  # self-weight 0.9 dropped, leaving all weight on uid 1
    weights[2] = [0.0, 0.0, 1.0]  # no permit: ignored even though it has stake
    r = run(weights, np.array([1.0, 0, 5.0]), np.array([True, False, False]))
    np.testing.assert_allclose(r.incentive, [0, 1, 0])
    # Permits for the next epoch follow stake, whatever the weights.
    np.testing.assert_array_equal(r.validator_permit, [True, False, True])


@pytest.mark.parametrize(
    "variant, bonds, dividends",
    [
        # Classic: 0.9 * old shares + 0.1 * new shares: validator 0 keeps 0.95, validator 1 gains 0.05;
        # stored max-upscaled, 0.05 / 0.95 of 65535.
        ("classic", [65535, 3449], [0.95, 0.05]),
        # Yuma3: each bond moves 10% toward the weight (1.0): 1.0 stays, 0 becomes 0.1.
        ("yuma3", [65535, 6553], [1 / 1.1, 0.1 / 1.1]),
    ],
)
def test_bonds_move_by_the_moving_average(variant, bonds, dividends):
    # One miner (uid 2), two equal validators; old bonds all on validator 0, new weights equal.
    weights = np.zeros((3, 3))
    weights[:2, 2] = 1.0
    old = np.zeros((3, 3), dtype=np.int64)
    old[0, 2] = 65535
    r = run(weights, np.array([1.0, 1.0, 0]), np.array([True, True, False]), bonds=old, variant=variant)
    np.testing.assert_array_equal(r.bonds[:2, 2], bonds)
    np.testing.assert_allclose(r.dividends, [*dividends, 0])


def test_bonds_are_cleared_when_the_permit_is_lost():
    weights = np.zeros((3, 3))
    weights[:2, 2] = 1.0
    # max_validators = 1: validator 1 votes this epoch but loses its permit to the larger stake.
    r = run(weights, np.array([2.0, 1.0, 0]), np.array([True, True, False]), max_validators=1)
    assert r.bonds[0, 2] > 0 and r.bonds[1, 2] == 0 and r.dividends[1] > 0


def test_liquid_alpha_follows_the_sigmoid():
    params = YumaParams(liquid_alpha=True, alpha_low=0.1, alpha_high=0.3, alpha_steepness=1000)
    # Row 0 buys (weight above its bond) 0, 0.5 and 1 above consensus; row 1 sells down to the weight.
    weights = np.array([[0.5, 1.0, 1.0], [0.0, 0.0, 0.0]])
    bonds = np.array([[0.0, 0.0, 0.0], [0.5, 1.0, 0.0]])
    x = BondsInput(weights, bonds, np.array([0.5, 0.5, 0.0]), np.zeros(3), np.ones(2), params)
    slow, fast = 0.1 + 0.2 / (1 + math.exp(5)), 0.1 + 0.2 / (1 + math.exp(-5))
    np.testing.assert_allclose(liquid_alpha(x, bonds), [[slow, 0.2, fast], [0.2, fast, slow]])


def test_liquid_alpha_needs_some_consensus():
    # With no consensus anywhere (nobody weights), Yuma3 falls back to the fixed rate 1 - bonds_moving_avg.
    weights = np.zeros((2, 2))
    old = np.array([[0, 65535], [0, 0]])
    r = run(weights, np.array([1.0, 0]), np.array([True, False]), bonds=old, liquid_alpha=True)
    assert r.bonds[0, 1] == math.floor(0.9 * 65535)


def test_permits_go_to_the_top_nonzero_stakes():
    np.testing.assert_array_equal(
        top_k_nonzero(np.array([1.0, 5.0, 3.0, 0.0]), 2), [False, True, True, False]
    )
    # Ties: subtensor drops the lower uids first.
    np.testing.assert_array_equal(top_k_nonzero(np.array([1.0, 1.0, 1.0]), 2), [False, True, True])
    np.testing.assert_array_equal(top_k_nonzero(np.array([0.0, 2.0]), 5), [False, True])


@pytest.mark.parametrize("kappa, expected", [(0.25, 0.9), (0.5, 0.4), (0.6, 0.2), (1.0, 0.2)])
def test_weighted_median_kappa(kappa, expected):
    # Stake 0.25 / 0.25 / 0.5 behind weights 0.9 / 0.4 / 0.2; a zero-stake row at 1.0 never counts.
    stake = np.array([0.25, 0.25, 0.5, 0.0])
    column = np.array([[0.9], [0.4], [0.2], [1.0]])
    assert weighted_median_columns(stake, column, kappa)[0] == pytest.approx(expected)


def test_emission_split():
    r = run()
    e = split_emission(r, total=10.0, owner_cut=0.18)
    # 1.8 to the owner; the remaining 8.2 half to miners by incentive, half to validators by dividends.
    assert e.owner == pytest.approx(1.8)
    np.testing.assert_allclose(e.miners, 4.1 * r.incentive)
    np.testing.assert_allclose(e.validators, 4.1 * r.dividends)
    assert e.per_uid.sum() == pytest.approx(8.2)


def test_emission_without_earnings_pays_validators_by_stake():
    r = run(np.zeros((5, 5)))
    e = split_emission(r, total=10.0, owner_cut=0.0)
    np.testing.assert_allclose(e.validators, [7, 3, 0, 0, 0])
    assert not e.miners.any()
