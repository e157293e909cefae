"""Vector and matrix helpers for Yuma Consensus, with subtensor's conventions for the edge cases.

Subtensor never divides by zero: normalising an all-zero vector, row or column leaves it at zero, and a
ratio over zero is zero. It stores every proportion as a u16 by truncation (``floor(x * 65535)``).
"""

import numpy as np

from .weights import U16_MAX

MEDIAN_SLACK = 1e-9
"""Stake comparisons in the weighted median allow this much float error, so that an exact tie (two
validators at 50% with kappa = 0.5) resolves as it does in subtensor's fixed point, not by rounding."""


def normalise(x: np.ndarray) -> np.ndarray:
    """``x / sum(x)``, or zeros when the sum is zero."""
    total = x.sum()
    return x / total if total > 0 else np.zeros_like(x, dtype=np.float64)


def normalise_rows(m: np.ndarray) -> np.ndarray:
    """Each row divided by its sum; all-zero rows stay zero."""
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m, dtype=np.float64), where=sums > 0)


def normalise_columns(m: np.ndarray) -> np.ndarray:
    """Each column divided by its sum; all-zero columns stay zero."""
    sums = m.sum(axis=0, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m, dtype=np.float64), where=sums > 0)


def max_upscale_columns(m: np.ndarray) -> np.ndarray:
    """Each column divided by its largest entry (which becomes 1); all-zero columns stay zero."""
    peaks = m.max(axis=0, keepdims=True) if m.size else np.zeros((1, m.shape[1]))
    return np.divide(m, peaks, out=np.zeros_like(m, dtype=np.float64), where=peaks > 0)


def ratio(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Element-wise ``x / y``, zero where ``y`` is zero."""
    return np.divide(x, y, out=np.zeros_like(x, dtype=np.float64), where=y > 0)


def to_u16(x: np.ndarray) -> np.ndarray:
    """Proportions in [0, 1] as subtensor stores them: ``floor(x * 65535)``."""
    return np.floor(np.clip(x, 0.0, 1.0) * U16_MAX).astype(np.int64)


def top_k_nonzero(stake: np.ndarray, k: int) -> np.ndarray:
    """Booleans: the ``k`` largest non-zero stakes (all non-zero ones if fewer than ``k`` neurons).

    Ties break as in subtensor, which drops the ``n - k`` first entries of a stable ascending sort: among
    equal stakes the higher uid keeps its permit.
    """
    keep = stake > 0
    if len(stake) > k:
        keep[np.argsort(stake, kind="stable")[: len(stake) - k]] = False
    return keep


def weighted_median_columns(stake: np.ndarray, weights: np.ndarray, kappa: float) -> np.ndarray:
    """Per column, the largest weight ``c`` such that validators weighting ``>= c`` hold ``>= kappa`` of stake.

    Only rows with stake count; their stake is renormalised. Sorting each column from the largest weight
    down and accumulating the stake behind it, consensus is the weight at which the running total first
    reaches kappa. This is subtensor's stake-weighted median (the smallest weight whose cumulative stake
    from below exceeds the minority ``1 - kappa``), computed by sorting instead of its pivot search.
    """
    voters = stake > 0
    n_cols = weights.shape[1]
    if not voters.any() or n_cols == 0:
        return np.zeros(n_cols)
    stake = normalise(stake[voters])
    weights = weights[voters]
    order = np.argsort(-weights, axis=0, kind="stable")
    sorted_weights = np.take_along_axis(weights, order, axis=0)
    supporting = np.cumsum(stake[order], axis=0)
    first = (supporting >= kappa - MEDIAN_SLACK).argmax(axis=0)
    return sorted_weights[first, np.arange(n_cols)]
