"""Value quantisation for sparse codecs: a sign bit plus a magnitude level from a per-tensor table.

With `bits` bits per value, the magnitudes are split into 2**(bits-1) equally populated bins and each
bin is represented by the mean magnitude of its members (the bin's centroid), as Templar does. Bin
means preserve the total magnitude of every bin, so the quantised tensor keeps the scale of the
original, and equal populations spend the levels where the values are.

numpy rather than torch: these arrays hold ~1% of a tensor, where per-call overhead dominates.
"""

from __future__ import annotations

import numpy as np

MAX_BITS = 8


def quantize(values: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """`(table, codes)`: float32 magnitudes, one per level, and codes `level << 1 | negative`."""
    levels = 1 << (bits - 1)
    magnitudes = np.abs(values)
    ranks = (np.arange(1, levels) * magnitudes.size) // levels
    edges = np.partition(magnitudes, ranks)[ranks] if magnitudes.size else ranks.astype(magnitudes.dtype)
    level = np.searchsorted(edges, magnitudes)
    sums = np.bincount(level, weights=magnitudes, minlength=levels)
    counts = np.bincount(level, minlength=levels)
    table = (sums / np.maximum(counts, 1)).astype(np.float32)
    return table, (level << 1) | (values < 0)


def dequantize(table: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The values that `codes` stand for under `table`; every code below 2**bits is valid."""
    magnitudes = table[codes >> 1]
    return np.where(codes & 1, -magnitudes, magnitudes)
