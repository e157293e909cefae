"""The codec interface: one parameter's tensor in, named tensors for safetensors out, and back.

Payloads come from untrusted peers, so every decoder validates what it is given (keys, dtypes,
shapes, byte lengths, counts, index bounds, finiteness) and raises `ValueError` whose message is a
short reason code (`malformed`, `truncated`, `bad_count`, `index_out_of_range`, `non_finite`) that
validators record. A decoder never trusts a length it is told: it derives every size from the
expected shape and the codec's own parameters, then checks the bytes it actually received.

Decoding has two steps so that a node can hold many submissions without a dense model for each:
`parse` validates everything and keeps the data compact (a sparse codec: positions and values), and
`Parsed.dense()` expands one parameter when it is needed.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch


@dataclass(frozen=True)
class Parsed:
    """One parameter's validated data, still compact, and what aggregation needs before expanding it."""

    dense: Callable[[], torch.Tensor]
    """A new float32 tensor of the parameter's shape, decoded from the compact data on every call."""
    squared_norm: float
    """Σ value², summed in float64: finite exactly when every value is (|float32|² < 1.2e77)."""


class Codec(ABC):
    """Turns one parameter's pseudo-gradient into tensors that travel, and back."""

    name: str
    blob: ClassVar[bool] = False
    """Every parameter encodes to a single uint8 tensor (under ''), so a payload can pack them all into
    one (see `distrain.compression.payload`)."""

    @abstractmethod
    def encode(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tensors to store for this parameter, keyed by a suffix ('' for a single tensor)."""

    @property
    def lossless(self) -> bool:
        """Decoding gives back exactly what was encoded, so error feedback has nothing to keep."""
        return False

    def encode_all(self, tensors: Iterable[torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
        """`encode` of each tensor in turn; a codec may share work between them."""
        return map(self.encode, tensors)

    @abstractmethod
    def parse(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> Parsed:
        """Validate `stored` as a tensor of `shape`, finiteness included; raise ValueError(reason) if it is not one."""

    def decode(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
        """The float32 tensor of `shape` that `stored` describes; raise ValueError(reason) if it cannot be one."""
        return self.parse(stored, shape).dense()

    @abstractmethod
    def estimated_bytes(self, shape: torch.Size) -> int:
        """Bytes of tensor data `encode` produces at most for a tensor of `shape`, for planning (safetensors
        header excluded)."""


def require(ok: bool, reason: str) -> None:
    """Raise `ValueError(reason)` unless `ok`: the one way decoders reject input."""
    if not ok:
        raise ValueError(reason)


def squared_norm(values: torch.Tensor) -> float:
    """Σ value² in float64, or ValueError('non_finite'): the one pass that checks finiteness too."""
    # One fused cast and reduction: ~40% faster than a float64 copy and a dot product of it.
    total = float(torch.linalg.vector_norm(values, dtype=torch.float64)) ** 2
    require(math.isfinite(total), "non_finite")
    return total


def single_tensor(stored: dict[str, torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """The only tensor of `stored`, stored under the '' suffix with `dtype`, or ValueError('malformed')."""
    require(set(stored) == {""} and stored[""].dtype == dtype, "malformed")
    return stored[""]
