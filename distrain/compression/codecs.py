"""A tiny codec interface: a tensor in, named tensors for safetensors out, and back.

Every decoder validates what it is given (shapes, dtypes, finiteness) and raises `ValueError` with a
short reason: payloads come from untrusted peers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from distrain.config import RecipeError


class Codec(ABC):
    """Turns one parameter's pseudo-gradient into tensors that travel, and back."""

    name: str

    @abstractmethod
    def encode(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tensors to store for this parameter, keyed by a suffix ('' for a single tensor)."""

    @abstractmethod
    def decode(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
        """The float32 tensor of `shape` that `stored` describes; raise ValueError if it cannot be one."""


class DenseCodec(Codec):
    """Every value, cast to `dtype`: fp32 is lossless, fp16 halves the bytes at ~1e-3 relative error."""

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype

    def encode(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"": tensor.detach().to(self.dtype).contiguous()}

    def decode(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
        if set(stored) != {""}:
            raise ValueError("malformed")
        value = stored[""]
        if value.dtype != self.dtype or value.shape != shape:
            raise ValueError("malformed")
        value = value.float()
        if not torch.isfinite(value).all():
            raise ValueError("non_finite")
        return value


CODECS: dict[str, Codec] = {
    "fp32": DenseCodec("fp32", torch.float32),
    "fp16": DenseCodec("fp16", torch.float16),
}


def get_codec(name: str) -> Codec:
    if name not in CODECS:
        raise RecipeError(f"recipe key 'compression.codec' is '{name}', expected one of {sorted(CODECS)}")
    return CODECS[name]
