"""Yuma Consensus: turn validators' weights and stake into incentive, dividends and bonds.

Written from the published algorithm (the "classic" Yuma of subtensor's epoch), in plain numpy:

    S   = stake of permitted validators, normalised
    W   = weights with non-permitted rows and self-weights masked, rows normalised
    C_j = largest c such that the stake of validators with W_ij >= c is at least kappa
    W'  = min(W, C)                                   (clip weights above consensus)
    R   = S^T W'            incentive = R / sum(R)      trust = R / (S^T W)
    B   = EMA(col_normalise(S * W'), bonds) then col_normalise
    D_i = sum_j B_ij * incentive_j, normalised

Every normalisation of an all-zero vector returns zeros, so an empty or idle subnet yields zeros, not NaN.
Variants (e.g. Yuma 3) register themselves in ``VARIANTS`` under a name that ``SubnetParams`` selects.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass
class EpochResult:
    """Per-uid outcome of one epoch; every array has length n except ``bonds`` (n x n)."""

    consensus: np.ndarray
    """Stake-weighted kappa-median of each uid's column of weights."""
    incentive: np.ndarray
    """Normalised clipped ranks: the miners' share of miner emission (sums to 1, or all 0)."""
    dividends: np.ndarray
    """Validators' share of validator emission, from their bonds (sums to 1, or all 0)."""
    trust: np.ndarray
    """Fraction of each uid's rank that survived clipping to consensus (1 = nobody over-weighted it)."""
    ranks: np.ndarray
    """Stake-weighted sums of clipped weights, before normalisation."""
    bonds: np.ndarray
    """Updated bonds, rows = validators, columns column-normalised; feed back into the next epoch."""
    validator_trust: np.ndarray
    """Share of each validator's weight that lies within consensus (1 = fully agrees)."""


def normalise(x: np.ndarray) -> np.ndarray:
    """``x / sum(x)``, or zeros when the sum is zero."""
    total = x.sum()
    return x / total if total > 0 else np.zeros_like(x)


def normalise_rows(m: np.ndarray) -> np.ndarray:
    """Each row divided by its sum; all-zero rows stay zero."""
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def normalise_columns(m: np.ndarray) -> np.ndarray:
    """Each column divided by its sum; all-zero columns stay zero."""
    sums = m.sum(axis=0, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def weighted_median_columns(stake: np.ndarray, weights: np.ndarray, kappa: float) -> np.ndarray:
    """Per column, the largest weight ``c`` such that validators weighting ``>= c`` hold ``>= kappa`` of stake.

    ``stake`` must be normalised. Sorting each column from the largest weight down and accumulating the
    stake behind it, consensus is the weight at which the running total first reaches kappa.
    """
    n_rows, n_cols = weights.shape
    if n_rows == 0 or n_cols == 0 or stake.sum() <= 0:
        return np.zeros(n_cols)
    order = np.argsort(-weights, axis=0, kind="stable")
    sorted_weights = np.take_along_axis(weights, order, axis=0)
    supporting = np.cumsum(stake[order], axis=0)
    # The stake is a sum of floats normalised to 1: without a little slack an exact kappa
    # (two validators at 50% with kappa = 0.5) would depend on rounding.
    reached = supporting >= kappa - 1e-9
    first = reached.argmax(axis=0)
    return sorted_weights[first, np.arange(n_cols)]


def yuma_epoch(
    weights: np.ndarray,
    stake: np.ndarray,
    validator_permit: np.ndarray,
    bonds: np.ndarray,
    kappa: float,
    bonds_moving_avg: float,
) -> EpochResult:
    """One classic Yuma Consensus epoch.

    Args:
        weights: n x n, row i = weights set by uid i (normalised here, so raw u16 rows are fine).
        stake: length n, raw stake per uid.
        validator_permit: length n booleans; only permitted uids' stake and weights count.
        bonds: n x n bonds from the previous epoch (zeros for a new subnet).
        kappa: stake fraction that must support a weight for it to count (0.5 = majority).
        bonds_moving_avg: weight of the old bonds in the EMA (0.9 keeps 90% old, 10% new).
    """
    n = len(stake)
    permit = np.asarray(validator_permit, dtype=bool)
    active_stake = normalise(np.where(permit, np.asarray(stake, dtype=np.float64), 0.0))

    w = np.asarray(weights, dtype=np.float64).copy()
    w[~permit | (active_stake == 0)] = 0.0
    # A validator's weight on itself would let it pay itself incentive: masked, as on chain.
    np.fill_diagonal(w, 0.0)
    w = normalise_rows(w)

    consensus = weighted_median_columns(active_stake, w, kappa)
    clipped = np.minimum(w, consensus[None, :])

    pre_ranks = active_stake @ w
    ranks = active_stake @ clipped
    trust = np.divide(ranks, pre_ranks, out=np.zeros(n), where=pre_ranks > 0)
    incentive = normalise(ranks)
    validator_trust = clipped.sum(axis=1)

    # Bonds: a validator's stake-weighted stake in each miner, smoothed over epochs so that
    # validators who weighted a miner early (and in agreement with consensus) keep earning on it.
    bonds_delta = normalise_columns(active_stake[:, None] * clipped)
    old_bonds = normalise_columns(np.asarray(bonds, dtype=np.float64))
    new_bonds = normalise_columns((1.0 - bonds_moving_avg) * bonds_delta + bonds_moving_avg * old_bonds)
    dividends = normalise(new_bonds @ incentive)

    return EpochResult(
        consensus=consensus,
        incentive=incentive,
        dividends=dividends,
        trust=trust,
        ranks=ranks,
        bonds=new_bonds,
        validator_trust=validator_trust,
    )


YumaFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float], EpochResult]

VARIANTS: dict[str, YumaFn] = {"classic": yuma_epoch}
"""Consensus variants by name; ``SubnetParams.yuma`` picks one."""
