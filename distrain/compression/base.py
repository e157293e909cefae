"""The codec interface: one parameter's tensor in, named tensors for safetensors out, and back.

Payloads come from untrusted peers, so every decoder validates what it is given (keys, dtypes,
shapes, byte lengths, counts, index bounds, finiteness) and raises `ValueError` whose message is a
short reason code (`malformed`, `truncated`, `bad_count`, `index_out_of_range`, `non_finite`) that
validators record. A decoder never trusts a length it is told: it derives every size from the
expected shape and the codec's own parameters, then checks the bytes it actually received.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class Codec(ABC):
    """Turns one parameter's pseudo-gradient into tensors that travel, and back."""

    name: str

    @abstractmethod
    def encode(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tensors to store for this parameter, keyed by a suffix ('' for a single tensor)."""

    @abstractmethod
    def decode(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
        """The float32 tensor of `shape` that `stored` describes; raise ValueError(reason) if it cannot be one."""

    @abstractmethod
    def estimated_bytes(self, numel: int) -> int:
        """Bytes of tensor data `encode` produces for `numel` values, for planning (safetensors header excluded)."""


def require(ok: bool, reason: str) -> None:
    """Raise `ValueError(reason)` unless `ok`: the one way decoders reject input."""
    if not ok:
        raise ValueError(reason)


def single_tensor(stored: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The only tensor of `stored`, stored under the '' suffix with `dtype`, or ValueError('malformed')."""
    require(set(stored) == {""} and stored[""].dtype == dtype, "malformed")
    return stored[""]
