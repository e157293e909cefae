"""Dense codecs: every value, cast to a smaller float type."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from distrain.compression.base import Codec, Parsed, require, single_tensor, squared_norm


@dataclass(frozen=True)
class DenseCodec(Codec):
    """Every value cast to `dtype`: fp32 is lossless, fp16 halves the bytes at ~1e-3 relative error,
    bf16 halves them at ~4e-3 but keeps fp32's range (no overflow of large or underflow of tiny deltas)."""

    name: str
    dtype: torch.dtype
    """Type the values travel in."""

    @property
    def lossless(self) -> bool:
        return self.dtype == torch.float32

    def encode(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"": tensor.detach().to(self.dtype).contiguous()}

    def parse(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> Parsed:
        value = single_tensor(stored, self.dtype)
        require(value.shape == shape, "malformed")
        return Parsed(functools.partial(value.to, torch.float32, copy=True), squared_norm(value))

    def estimated_bytes(self, shape: torch.Size) -> int:
        return shape.numel() * self.dtype.itemsize
