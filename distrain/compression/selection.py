"""The k largest magnitudes of every row, exactly, in two small top-k's instead of one large one.

A top-k over every 4096-value chunk was most of the cost of encoding. Here each row is first cut into
groups of `GROUP` values: stage 1 keeps the k groups with the largest maxima, stage 2 the k largest of
those k·GROUP values. Nothing is lost: a value among its row's k largest lies in a group whose
maximum is at least that value, and a group can only rank above it through a maximum that itself
beats the value, of which there are fewer than k. With GROUP = 8 a chunk of 4096 becomes 512 maxima
and, for the 56 values `topk` keeps, 448 candidates.

Of equal magnitudes the lower position wins, in both stages (the argument above holds for that order
too), so the selection is a function of the values alone and not of the order a partial sort visits
them. Magnitudes are compared through their bits: those of a non-negative float32 order like its value
as an int32, with NaN above infinity (a NaN is kept, and its payload then rejected by decoders), and
those of a negative float below all of them, which makes negative entries padding.
"""

from __future__ import annotations

import numpy as np
import torch

GROUP = 8
"""Values per group of stage 1; ~sqrt(4096 / 56) ≈ 8.6 balances the two stages of `topk`."""


def top_k_per_row(magnitudes: torch.Tensor, counts: np.ndarray) -> np.ndarray:
    """Columns of the `counts[r]` largest entries of each row r of an n × width float32 tensor of
    magnitudes, ascending within each row, row after row. Negative entries are padding: never chosen,
    provided a row has `counts[r]` others."""
    bits = magnitudes.view(torch.int32)
    n, width = bits.shape
    k = int(counts.max(initial=0))
    if k == 0:
        return np.empty(0, np.int64)
    positions = torch.arange(width).expand(n, width)
    if (
        width % GROUP == 0 and width >= GROUP * GROUP * k
    ):  # else the candidates would be as many as the groups
        maxima = bits.view(n, width // GROUP, GROUP).amax(dim=2)
        groups = _largest(maxima, positions[:, : width // GROUP], k, ordered=False)
        positions = (groups[:, :, None] * GROUP + torch.arange(GROUP)).view(n, -1)
        bits = bits.gather(1, positions)
    best = _largest(bits, positions, k, ordered=True).numpy()
    # Row r keeps its first counts[r]; the others move past every column, out of the way of the sort.
    kept = np.arange(k) < counts[:, None]
    best[~kept] = width
    best.sort(axis=1)
    return best[kept]


def _largest(bits: torch.Tensor, positions: torch.Tensor, k: int, ordered: bool) -> torch.Tensor:
    """The `positions` of the k largest `bits` of each row (largest first if `ordered`), the lower
    position first among equal bits.

    One int64 key per entry, (bits << 32) − position, makes every key of a row distinct (positions are
    below 2**32), so which k win never depends on how `topk` breaks ties.
    """
    keys = (bits.long() << 32) - positions
    return positions.gather(1, keys.topk(k, dim=1, sorted=ordered).indices)
