"""Conform a weight vector the way the chain stores it: clipped to ``max_weight_limit``, then u16.

Subtensor keeps weights as u16 integers, max-upscaled so the largest is 65535, and refuses a vector whose
largest normalised entry exceeds the subnet's ``max_weight_limit`` (itself a u16 fraction of 65535).
"""

import numpy as np

U16_MAX = 65535


def clip_to_limit(weights: np.ndarray, limit: float) -> np.ndarray | None:
    """Normalise ``weights`` to sum 1 with no entry above ``limit``, or None if that is impossible.

    Entries above a cutoff are lowered to it and the whole vector renormalised, so the excess goes to the
    other entries in proportion to their weights; the cutoff is chosen so the largest entries land exactly
    on ``limit``. Zero entries stay zero (weight is never moved onto a uid the caller did not score), so
    fewer than ``1 / limit`` non-zero entries cannot be made to fit.
    """
    w = weights / weights.sum()
    if w.max() <= limit:
        return w
    descending = np.sort(w)[::-1]
    n_nonzero = int(np.count_nonzero(descending))
    tail_sums = np.cumsum(descending[::-1])[::-1]  # tail_sums[k] = sum of all but the k largest
    # Clip the k largest to the cutoff: k * cutoff + tail = cutoff / limit gives the cutoff for each k;
    # the smallest k whose cutoff sits above the next entry is the answer.
    for k in range(1, n_nonzero):
        if k * limit >= 1:
            break
        cutoff = limit * tail_sums[k] / (1 - k * limit)
        # Slack for rounding: with exactly 1 / limit non-zero entries the answer is uniform at the cutoff.
        if descending[k] <= cutoff + 1e-12:
            clipped = np.minimum(w, cutoff)
            return clipped / clipped.sum()
    return None


def within_limit(weights: np.ndarray, max_weight_limit: int) -> bool:
    """Subtensor's own test: the largest weight's share of the total, floored to u16, is within the limit.

    Flooring lets through a vector that a client clipped and then quantised to u16 (which can nudge the
    largest share a hair above the limit), so such a vector is stored exactly as sent.
    """
    return int(weights.max() * U16_MAX / weights.sum()) <= max_weight_limit


def to_u16(weights: np.ndarray) -> list[int]:
    """Max-upscale to u16: the largest weight becomes 65535, the others keep their ratio to it (rounded)."""
    return [int(v) for v in np.rint(weights / weights.max() * U16_MAX)]


def from_u16(values: dict[int, int]) -> dict[int, float]:
    """Normalised floats from a stored u16 row ``{uid: value}``; an all-zero row gives zeros."""
    total = sum(values.values())
    return {uid: (v / total if total else 0.0) for uid, v in values.items()}
