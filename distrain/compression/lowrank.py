"""Low rank: each matrix as P·Qᵀ of rank r with int8 factors, found by two subspace iterations.

A round of AdamW steps moves a weight matrix mostly along a few directions, so its pseudo-gradient is
close to low rank (PowerSGD, Vogels et al. 2019, exploits the same for gradients). Measured on the
default model's Δ after 24 steps: rank 1 per matrix keeps 58% of the energy (cosine 0.76 with Δ) at
0.1 bits per value, where the largest 1% of values keeps 4% (cosine 0.20) at 0.13 bits. What the
rank misses stays in the error-feedback residual and is sent in later rounds.

The rank of each matrix follows from a bit budget, so small models get rank 1 and large matrices more:
a 768×768 matrix at 0.1 bits/value gets rank 4, a 4096×4096 one rank 25. Vectors (norms, biases) are
sent as blockwise int8: they are few, and they have no rank to exploit.

Measured in `distrain bench convergence` on the default model: the best start of every codec (the
first round's loss is within 0.5 of uncompressed DiLoCo's), but little progress after it, since each
round re-sends much the same dominant directions; final loss 2.85 with plain averaging (its outer
step, `SPARSE_OUTER_LR`), where `topk` reaches 2.48. Momentum or an outer lr above 1 overshoots.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from distrain.compression.base import Codec, Parsed, require, single_tensor
from distrain.compression.blockwise import BlockwiseInt8, check_int8, to_int8

MIN_VALUES = 64
"""Matrices this small travel as int8 values: a few bytes either way, and whole they lose nothing to a
rank cut."""

EXPANSION_BOUND = 1e38
"""Largest magnitude a factor product or partial sum may reach: float32's largest is 3.4e38, and the
margin covers float32 rounding on the way."""


@dataclass(frozen=True)
class LowRank(Codec):
    """Rank-r factors of every matrix (tensors of ≥ 2 dims are viewed as shape[0] × rest)."""

    name: str
    blob: ClassVar[bool] = True
    bits_per_value: float = 0.1
    """Budget of the factors: a matrix gets the largest rank whose int8 factors fit it (at least 1)."""
    iterations: int = 2
    """Subspace iterations from a fixed random start; two keep ~97% of what an exact SVD would."""
    vectors: BlockwiseInt8 = field(default_factory=lambda: BlockwiseInt8("int8"))
    """Codec of 1-D tensors."""

    def rank(self, shape: torch.Size) -> int:
        rows, cols = shape[0], math.prod(shape[1:])
        return max(1, min(rows, cols, int(self.bits_per_value * rows * cols / (8 * (rows + cols)))))

    @staticmethod
    def factorable(shape: torch.Size) -> bool:
        """Matrices (≥ 2 dims) with something to gain: neither side 1, more values than a factor pair."""
        return len(shape) >= 2 and min(shape[0], math.prod(shape[1:])) > 1 and shape.numel() > MIN_VALUES

    def encode(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.factorable(tensor.shape):
            stored = self.vectors.encode(tensor)
            return {"": _pack(stored["scale"], stored["q"])}
        matrix = tensor.detach().float().reshape(tensor.shape[0], -1)
        # A fixed start makes the payload a function of Δ alone: the same delta, the same bytes.
        start = torch.Generator().manual_seed(matrix.numel())
        q = torch.randn(matrix.shape[1], self.rank(tensor.shape), generator=start)
        for _ in range(self.iterations):
            p = torch.linalg.qr(matrix @ q).Q  # orthonormal basis of the column space found so far
            q = matrix.T @ p  # matrix ≈ p qᵀ, the best fit given p
        (p_codes, p_scale), (q_codes, q_scale) = to_int8(p, dim=0), to_int8(q, dim=0)  # a scale a column
        return {"": _pack(torch.stack([p_scale, q_scale]), torch.cat([p_codes, q_codes]))}

    def parse(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> Parsed:
        blob = single_tensor(stored, torch.uint8)
        if not self.factorable(shape):
            blocks = math.ceil(shape.numel() / self.vectors.block)
            scale, codes = _unpack(blob, [(torch.float32, (blocks,)), (torch.int8, (shape.numel(),))])
            return self.vectors.parse({"scale": scale, "q": codes}, shape)
        rows, cols, rank = shape[0], math.prod(shape[1:]), self.rank(shape)
        scales, factors = _unpack(blob, [(torch.float32, (2, rank)), (torch.int8, (rows + cols, rank))])
        check_int8(factors, scales)
        p, q = factors[:rows].double() * scales[0].double(), factors[rows:].double() * scales[1].double()
        # Each entry of p qᵀ, and each partial sum of products the float32 expansion adds up on the way
        # to it, is at most rank · max|p| · max|q|. A small norm does not bound them: products that
        # cancel in the sum can each overflow float32 and turn the entry into inf − inf = NaN.
        bound = rank * float(p.abs().max()) * float(q.abs().max())
        require(bound < EXPANSION_BOUND, "non_finite")
        # ‖p qᵀ‖² = trace(pᵀp · qᵀq): the norm from two r×r products, without expanding the matrix.
        squared = float(((p.T @ p) * (q.T @ q)).sum())
        return Parsed(functools.partial(self._expand, factors, scales, shape), squared)

    def estimated_bytes(self, shape: torch.Size) -> int:
        if not self.factorable(shape):
            return self.vectors.estimated_bytes(shape)
        rows, cols, rank = shape[0], math.prod(shape[1:]), self.rank(shape)
        return 4 * 2 * rank + (rows + cols) * rank  # the two factors' column scales and int8 codes

    def _expand(self, factors: torch.Tensor, scales: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        rows = shape[0]
        p = factors[:rows].float() * scales[0]
        q = factors[rows:].float() * scales[1]
        return (p @ q.T).view(shape)


def _pack(*tensors: torch.Tensor) -> torch.Tensor:
    """The raw bytes of `tensors`, one after the other: one safetensors entry per parameter keeps the
    payload's JSON header small (it costs more than the factors of a small model otherwise)."""
    return torch.cat([t.contiguous().flatten().view(torch.uint8) for t in tensors])


def _unpack(blob: torch.Tensor, layout: list[tuple[torch.dtype, tuple[int, ...]]]) -> list[torch.Tensor]:
    """Split `blob` into tensors of the given dtypes and shapes; ValueError unless it is exactly that long."""
    sizes = [math.prod(shape) * dtype.itemsize for dtype, shape in layout]
    require(blob.dim() == 1 and blob.numel() == sum(sizes), "truncated")
    parts = torch.split(blob, sizes)
    # clone(): a slice of a byte buffer is not always aligned for a wider dtype.
    return [part.clone().view(dtype).view(shape) for part, (dtype, shape) in zip(parts, layout)]
