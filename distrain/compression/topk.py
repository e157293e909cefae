"""Chunked top-k: the largest values of every chunk, their values quantised, their indices packed.

A tensor is flattened and cut into chunks of `chunk` values (the last one may be shorter; a 1-D bias
is usually just that tail). Each full chunk keeps its `k` largest magnitudes, the tail the same
density rounded up, so every region of every tensor gets its share of the budget and a decoder knows
the exact count per chunk before reading a byte. Optionally each full chunk is first moved to the
DCT domain (DeMo); the tail then travels untransformed.

Everything of one parameter travels in a single uint8 tensor, because each safetensors entry costs
~80 header bytes, as much as a small tensor's whole payload at 0.1 bits per value:

    [magnitude table: 2**(value_bits-1) float32][codes: value_bits each][indices: `index_coding`]

Only the index section's length is not fixed by the shape and the codec's parameters; it is the
rest of the tensor, and its decoder bounds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from distrain.compression.base import Codec, require, single_tensor
from distrain.compression.bitpack import MAX_RICE_SHIFT, pack, packed_size, rice_decode, rice_encode, unpack
from distrain.compression.dct import dct_chunks
from distrain.compression.quantize import MAX_BITS, dequantize, quantize


@dataclass(frozen=True)
class ChunkLayout:
    """How many values a tensor of `numel` values keeps in each chunk."""

    numel: int
    chunk: int
    k: int

    @property
    def full(self) -> int:
        """Number of whole chunks."""
        return self.numel // self.chunk

    @property
    def tail(self) -> int:
        """Values after the last whole chunk."""
        return self.numel % self.chunk

    @property
    def tail_k(self) -> int:
        """Kept values of the tail: the chunks' density rounded up, so a tail keeps at least one."""
        return min(self.tail, -(-self.k * self.tail // self.chunk))

    @property
    def count(self) -> int:
        return self.full * self.k + self.tail_k

    @property
    def chunks(self) -> int:
        """Number of chunks, tail included."""
        return self.full + (self.tail > 0)

    def counts(self) -> np.ndarray:
        """Kept values per chunk, tail included."""
        counts = np.full(self.chunks, self.k, dtype=np.int64)
        counts[self.full :] = self.tail_k
        return counts


class RiceIndices:
    """Gaps between sorted positions, Rice-coded: about log2(e·chunk/k) + 0.1 bits per index.

    Stored as [Rice shift: 1 byte][low bits: shift each][unary high parts: the rest].
    """

    def encode(self, positions: np.ndarray, layout: ChunkLayout) -> np.ndarray:
        shift, low, unary = rice_encode(np.diff(positions, prepend=-1) - 1)
        return np.concatenate([np.array([shift], np.uint8), low, unary])

    def decode(self, data: np.ndarray, layout: ChunkLayout) -> np.ndarray:
        require(data.size >= 1, "truncated")
        shift = int(data[0])
        low_end = 1 + packed_size(layout.count, shift)
        require(data.size >= low_end, "truncated")
        gaps = rice_decode(shift, data[1:low_end], data[low_end:], layout.count, total=layout.numel)
        return np.cumsum(gaps + 1) - 1

    def estimated_bytes(self, layout: ChunkLayout) -> int:
        # The unary parts of gaps summing to at most numel take at most numel >> shift bits plus one
        # terminator each; the encoder picks a shift at least as good as the best of these bounds.
        return 1 + min(
            packed_size(layout.count, shift) + packed_size((layout.numel >> shift) + layout.count, 1)
            for shift in range(MAX_RICE_SHIFT + 1)
        )


class FixedIndices:
    """Each index's offset inside its chunk in ceil(log2(chunk)) bits: 12 for 4096, as Templar packs them."""

    def encode(self, positions: np.ndarray, layout: ChunkLayout) -> np.ndarray:
        return pack(positions % layout.chunk, self._width(layout))

    def decode(self, data: np.ndarray, layout: ChunkLayout) -> np.ndarray:
        offsets = unpack(data, self._width(layout), layout.count)
        starts = np.arange(layout.chunks, dtype=np.int64) * layout.chunk
        return offsets + np.repeat(starts, layout.counts())

    def estimated_bytes(self, layout: ChunkLayout) -> int:
        return packed_size(layout.count, self._width(layout))

    @staticmethod
    def _width(layout: ChunkLayout) -> int:
        return max(1, (layout.chunk - 1).bit_length())


INDEX_CODINGS = {"rice": RiceIndices(), "fixed": FixedIndices()}


@dataclass(frozen=True)
class ChunkedTopK(Codec):
    """Top-`k` magnitudes of every `chunk` values, quantised to `value_bits`, indices by `index_coding`.

    Bits per value ≈ k/chunk · (value_bits + index bits), plus a magnitude table per tensor.
    """

    name: str
    chunk: int = 4096
    """Values per chunk (a square, e.g. 64×64, when `dct` is on)."""
    k: int = 40
    """Values kept per full chunk; the density is k/chunk."""
    value_bits: int = 2
    """Bits per kept value: one sign bit, the rest pick one of 2**(value_bits-1) magnitudes (1 to 8)."""
    index_coding: str = "rice"
    """`rice` (gaps between sorted positions, Rice-coded) or `fixed` (ceil(log2(chunk)) bits per index)."""
    dct: bool = False
    """Select the top-k of each full chunk's 2-D DCT coefficients rather than of its values (DeMo)."""

    def __post_init__(self):
        checks = {
            "k": 1 <= self.k <= self.chunk,
            "value_bits": 1 <= self.value_bits <= MAX_BITS,
            "index_coding": self.index_coding in INDEX_CODINGS,
            "dct": not self.dct or math.isqrt(self.chunk) ** 2 == self.chunk,
        }
        for parameter, ok in checks.items():
            if not ok:
                raise ValueError(f"codec '{self.name}': invalid {parameter} for {self!r}")

    def layout(self, numel: int) -> ChunkLayout:
        return ChunkLayout(numel, self.chunk, self.k)

    def encode(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        flat = tensor.detach().float().flatten()
        layout = self.layout(flat.numel())
        coefficients = self._transform(flat, layout)
        positions = self._select(coefficients, layout).numpy()
        table, codes = quantize(coefficients.numpy()[positions], self.value_bits)
        blob = np.concatenate(
            [
                table.astype("<f4").view(np.uint8),
                pack(codes, self.value_bits),
                INDEX_CODINGS[self.index_coding].encode(positions, layout),
            ]
        )
        return {"": torch.from_numpy(blob)}

    def decode(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
        blob = single_tensor(stored, torch.uint8)
        require(blob.dim() == 1, "malformed")
        data, layout = blob.numpy(), self.layout(shape.numel())
        table_end = 4 * (1 << (self.value_bits - 1))
        codes_end = table_end + packed_size(layout.count, self.value_bits)
        require(data.size >= codes_end, "truncated")
        table = np.frombuffer(data[:table_end].tobytes(), "<f4").astype(np.float32)
        require(bool(np.isfinite(table).all()), "non_finite")
        codes = unpack(data[table_end:codes_end], self.value_bits, layout.count)
        positions = INDEX_CODINGS[self.index_coding].decode(data[codes_end:], layout)
        _check_positions(positions, layout)
        coefficients = np.zeros(layout.numel, np.float32)
        coefficients[positions] = dequantize(table, codes)
        values = self._transform(torch.from_numpy(coefficients), layout, inverse=True)
        # Finite coefficients are finite values, except that the DCT's sums can overflow.
        require(not self.dct or bool(torch.isfinite(values).all()), "non_finite")
        return values.view(shape)

    def estimated_bytes(self, numel: int) -> int:
        layout = self.layout(numel)
        table = 4 * (1 << (self.value_bits - 1))
        coding = INDEX_CODINGS[self.index_coding]
        return table + packed_size(layout.count, self.value_bits) + coding.estimated_bytes(layout)

    def _transform(self, flat: torch.Tensor, layout: ChunkLayout, inverse: bool = False) -> torch.Tensor:
        """The DCT of every full chunk (or its inverse) followed by the untouched tail; `flat` without `dct`."""
        if not self.dct or not layout.full:
            return flat
        side, full = math.isqrt(self.chunk), layout.full * self.chunk
        tiles = dct_chunks(flat[:full].view(-1, side, side), inverse)
        return torch.cat([tiles.flatten(), flat[full:]])

    def _select(self, coefficients: torch.Tensor, layout: ChunkLayout) -> torch.Tensor:
        """Sorted flat positions of the top-k magnitudes of every chunk."""
        full = layout.full * self.chunk
        parts = [torch.empty(0, dtype=torch.long)]  # an empty tensor keeps nothing
        if layout.full:
            rows = coefficients[:full].view(-1, self.chunk).abs().topk(self.k, dim=1, sorted=False).indices
            parts.append((rows.sort(dim=1).values + torch.arange(0, full, self.chunk)[:, None]).flatten())
        if layout.tail_k:
            tail = coefficients[full:].abs().topk(layout.tail_k, sorted=False).indices
            parts.append(tail.sort().values + full)
        return torch.cat(parts)


def _check_positions(positions: np.ndarray, layout: ChunkLayout) -> None:
    """Positions must be strictly increasing, inside the tensor, and exactly `layout.counts()` per chunk."""
    require(positions.size == layout.count, "bad_count")
    require(bool((np.diff(positions) > 0).all()), "malformed")
    require(positions.size == 0 or (positions[0] >= 0 and positions[-1] < layout.numel), "index_out_of_range")
    per_chunk = np.bincount(positions // layout.chunk, minlength=layout.chunks)
    require(np.array_equal(per_chunk, layout.counts()), "bad_count")
