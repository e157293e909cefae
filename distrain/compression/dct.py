"""A 2-D DCT of square chunks, as DeMo applies before top-k.

A chunk of side² values is viewed as a side × side tile and transformed with the orthonormal DCT-II
along both axes (two small matrix products, ~4·side flops per value). Smooth structure in a tile
concentrates in few coefficients, so top-k of the coefficients can keep more of its energy. The
transform is orthonormal: errors in coefficients are errors of the same norm in values. A decoder
restores a tile of k coefficients as the sum of their k basis tiles (~2·k flops per value).
"""

from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=8)
def dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix D (n × n): coefficients = D @ x, and x = D.T @ coefficients."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    matrix = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    matrix[0] /= math.sqrt(2)
    return matrix.float()


def dct_chunks(tiles: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """2-D DCT (or its inverse) of every tile of `tiles` (count × side × side)."""
    d = dct_matrix(tiles.shape[-1])
    return d.T @ tiles @ d if inverse else d @ tiles @ d.T


def inverse_sparse(coordinates: torch.Tensor, values: torch.Tensor, side: int) -> torch.Tensor:
    """The tiles (count × side × side) whose only non-zero DCT coefficients are `values` at flat
    positions `coordinates` (both count × k): Σ value · (row of D)ᵀ ⊗ (column of D) per tile."""
    d = dct_matrix(side)
    rows, columns = coordinates // side, coordinates % side
    left = d.T[:, rows].permute(1, 0, 2) * values[:, None, :]  # count × side × k
    return left @ d[columns]  # (count × side × k) @ (count × k × side)
