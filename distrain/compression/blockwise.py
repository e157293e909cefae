"""Blockwise int8: 8 bits per value plus one fp32 scale per block of values."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distrain.compression.base import Codec, Parsed, require


@dataclass(frozen=True)
class BlockwiseInt8(Codec):
    """Each block of `block` consecutive values is scaled by its largest magnitude and rounded to int8.

    A per-block scale keeps one outlier from flattening a whole tensor to zero; the error of a value
    is at most half a step, |max of its block| / 254.
    """

    name: str
    block: int = 256
    """Values sharing one scale; costs 32/`block` extra bits per value (0.125 at 256)."""

    def encode(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        codes, scale = to_int8(self._blocks(tensor.detach().float().flatten()), dim=1)
        return {"q": codes.flatten()[: tensor.numel()], "scale": scale}

    def parse(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> Parsed:
        require(set(stored) == {"q", "scale"}, "malformed")
        codes, scale = stored["q"], stored["scale"]
        numel = shape.numel()
        require(codes.dtype == torch.int8 and codes.shape == (numel,), "malformed")
        require(scale.dtype == torch.float32 and scale.shape == (math.ceil(numel / self.block),), "malformed")
        check_int8(codes, scale)
        # Σ value² = Σ over blocks of scale² · Σ code², without expanding the codes to values (the sums
        # of code² are exact in float32 for blocks of up to 1040 values).
        squared = float(self._blocks(codes.float()).square().sum(1).double() @ scale.double().square())
        return Parsed(functools.partial(self._expand, codes, scale, shape), squared)

    def estimated_bytes(self, shape: torch.Size) -> int:
        return shape.numel() + 4 * math.ceil(shape.numel() / self.block)

    def _expand(self, codes: torch.Tensor, scale: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        return (self._blocks(codes.float()) * scale[:, None]).flatten()[: shape.numel()].view(shape)

    def _blocks(self, flat: torch.Tensor) -> torch.Tensor:
        """`flat` zero-padded to whole blocks, one block per row."""
        return F.pad(flat, (0, -flat.numel() % self.block)).view(-1, self.block)


def to_int8(values: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(codes, scales)`: `values` divided by their largest magnitude along `dim` over 127, rounded to
    int8 codes in ±127. A zero slice has scale 0; dividing by the smallest normal float keeps its codes
    at 0."""
    scale = values.abs().amax(dim=dim, keepdim=True) / 127
    codes = torch.round(values / scale.clamp_min(torch.finfo(torch.float32).tiny))
    return codes.to(torch.int8), scale.squeeze(dim)


def check_int8(codes: torch.Tensor, scales: torch.Tensor) -> None:
    """Refuse what `to_int8` never writes: the code −128 (its value, −128·scale, is the one that 127·scale
    being finite does not bound), negative scales, and scales whose 127·scale overflows float32."""
    require(bool((codes != -128).all()), "malformed")
    require(bool(torch.isfinite(scales * 127).all()), "non_finite")
    require(bool((scales >= 0).all()), "malformed")
