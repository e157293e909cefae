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

import functools
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from distrain.compression.base import Codec, Parsed, require, single_tensor, squared_norm
from distrain.compression.bitpack import (
    MAX_RICE_SHIFT,
    gaps,
    pack,
    packed_size,
    rice_bound_shift,
    rice_bytes,
    rice_decode,
    rice_encode,
    unpack,
)
from distrain.compression.dct import dct_chunks, inverse_sparse
from distrain.compression.quantize import MAX_BITS, dequantize, quantize
from distrain.compression.selection import top_k_per_row

_FLOAT32_MAX = float(np.finfo(np.float32).max)

BATCH_VALUES = 1 << 24
"""Values whose chunks `encode_all` selects together (64 MiB of magnitudes): large enough that per-call
costs vanish, small enough to be a fraction of a large model."""


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

    @functools.cached_property
    def tail_k(self) -> int:
        """Kept values of the tail: the chunks' density rounded up, so a tail keeps at least one."""
        return min(self.tail, -(-self.k * self.tail // self.chunk))

    @functools.cached_property
    def count(self) -> int:
        return self.full * self.k + self.tail_k

    @functools.cached_property
    def chunks(self) -> int:
        """Number of chunks, tail included."""
        return self.full + (self.tail > 0)

    @functools.cached_property
    def counts(self) -> np.ndarray:
        """Kept values per chunk, tail included (shared: not to be modified)."""
        counts = np.full(self.chunks, self.k, dtype=np.int64)
        counts[self.full :] = self.tail_k
        return counts


class RiceIndices:
    """Gaps between sorted positions, Rice-coded: about log2(e·chunk/k) + 0.1 bits per index.

    Stored as [Rice shift: 1 byte][low bits: shift each][unary high parts: the rest].
    """

    def encode(self, positions: np.ndarray, layout: ChunkLayout) -> np.ndarray:
        shift, low, unary = rice_encode(gaps(positions), total=layout.numel)
        return np.concatenate([np.array([shift], np.uint8), low, unary])

    def decode(self, data: np.ndarray, layout: ChunkLayout) -> np.ndarray:
        require(data.size >= 1, "truncated")
        shift = int(data[0])
        require(shift <= MAX_RICE_SHIFT, "malformed")  # before it sizes the low bits
        low_end = 1 + packed_size(layout.count, shift)
        require(data.size >= low_end, "truncated")
        gaps = rice_decode(shift, data[1:low_end], data[low_end:], layout.count, total=layout.numel)
        return np.cumsum(gaps + 1) - 1

    def estimated_bytes(self, layout: ChunkLayout) -> int:
        # The gaps sum to less than numel; the encoder's shift does at least as well as the bound's best.
        return 1 + rice_bytes(layout.count, layout.numel, rice_bound_shift(layout.count, layout.numel))


class FixedIndices:
    """Each index's offset inside its chunk in ceil(log2(chunk)) bits: 12 for 4096, as Templar packs them."""

    def encode(self, positions: np.ndarray, layout: ChunkLayout) -> np.ndarray:
        return pack(positions % layout.chunk, self._width(layout))

    def decode(self, data: np.ndarray, layout: ChunkLayout) -> np.ndarray:
        offsets = unpack(data, self._width(layout), layout.count)
        starts = np.arange(layout.chunks, dtype=np.int64) * layout.chunk
        return offsets + np.repeat(starts, layout.counts)

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
    blob: ClassVar[bool] = True
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
        return _layout(numel, self.chunk, self.k)

    def encode(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        return next(self.encode_all([tensor]))

    def encode_all(self, tensors: Iterable[torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
        """`encode` of each tensor, selecting the top-k of up to `BATCH_VALUES` values' chunks at once:
        per-call costs, not values, dominated the selection of a model's many small tensors."""
        batch: list[torch.Tensor] = []
        size = 0
        for tensor in tensors:
            batch.append(tensor.detach().float().flatten())
            size += batch[-1].numel()
            if size >= BATCH_VALUES:
                yield from self._encode_batch(batch)
                batch, size = [], 0
        if batch:
            yield from self._encode_batch(batch)

    def _encode_batch(self, flats: list[torch.Tensor]) -> Iterator[dict[str, torch.Tensor]]:
        layouts = [self.layout(flat.numel()) for flat in flats]
        coefficients = [c.numpy() for c in self._transform_all(flats, layouts)]
        for values, positions, layout in zip(coefficients, self._select(coefficients, layouts), layouts):
            table, codes = quantize(values[positions], self.value_bits)
            blob = np.concatenate(
                [
                    table.astype("<f4").view(np.uint8),
                    pack(codes, self.value_bits),
                    INDEX_CODINGS[self.index_coding].encode(positions, layout),
                ]
            )
            yield {"": torch.from_numpy(blob)}

    def parse(self, stored: dict[str, torch.Tensor], shape: torch.Size) -> Parsed:
        blob = single_tensor(stored, torch.uint8)
        require(blob.dim() == 1, "malformed")
        data, layout = blob.numpy(), self.layout(shape.numel())
        table_end = 4 * (1 << (self.value_bits - 1))
        codes_end = table_end + packed_size(layout.count, self.value_bits)
        require(data.size >= codes_end, "truncated")
        table = data[:table_end].view("<f4").astype(np.float32)
        require(bool(np.isfinite(table).all()), "non_finite")
        # A value of an inverse DCT sums k coefficients times basis entries of at most 1: below this
        # bound neither it nor any partial sum can overflow, so finite coefficients are finite values.
        require(not self.dct or self.k * float(np.abs(table).max()) < _FLOAT32_MAX / 2, "non_finite")
        codes = unpack(data[table_end:codes_end], self.value_bits, layout.count)
        positions = INDEX_CODINGS[self.index_coding].decode(data[codes_end:], layout)
        _check_positions(positions, layout)
        values = dequantize(table, codes)
        return Parsed(
            functools.partial(self._expand, positions, values, shape), squared_norm(torch.from_numpy(values))
        )

    def _expand(self, positions: np.ndarray, values: np.ndarray, shape: torch.Size) -> torch.Tensor:
        """The dense tensor of `shape` holding `values` at `positions` (of the DCT coefficients with `dct`)."""
        layout = self.layout(shape.numel())
        dense = torch.zeros(layout.numel)
        positions, values = torch.from_numpy(positions), torch.from_numpy(values)
        if self.dct and layout.full:
            # Every full chunk holds exactly k positions, first in the sorted order: k basis tiles each.
            kept, full = layout.full * self.k, layout.full * self.chunk
            within = (positions[:kept] % self.chunk).view(layout.full, self.k)
            tiles = inverse_sparse(within, values[:kept].view(layout.full, self.k), math.isqrt(self.chunk))
            dense[:full] = tiles.flatten()
            positions, values = positions[kept:], values[kept:]
        dense[positions] = values
        return dense.view(shape)

    def estimated_bytes(self, shape: torch.Size) -> int:
        layout = self.layout(shape.numel())
        table = 4 * (1 << (self.value_bits - 1))
        coding = INDEX_CODINGS[self.index_coding]
        return table + packed_size(layout.count, self.value_bits) + coding.estimated_bytes(layout)

    def _transform_all(self, flats: list[torch.Tensor], layouts: list[ChunkLayout]) -> list[torch.Tensor]:
        """The DCT of every full chunk of every tensor (one batched transform) followed by each tensor's
        untouched tail; the tensors themselves without `dct`."""
        if not self.dct:
            return flats
        side = math.isqrt(self.chunk)
        fulls = [layout.full * self.chunk for layout in layouts]
        tiles = dct_chunks(torch.cat([flat[:full] for flat, full in zip(flats, fulls)]).view(-1, side, side))
        parts = tiles.flatten().split(fulls)
        return [torch.cat([part, flat[full:]]) for part, flat, full in zip(parts, flats, fulls)]

    def _select(self, coefficients: list[np.ndarray], layouts: list[ChunkLayout]) -> list[np.ndarray]:
        """Per tensor, the sorted flat positions of the top-k magnitudes of each of its chunks.

        Every chunk of every tensor is one row of a single matrix of magnitudes, the last chunk of a
        tensor padded with −1, which is below any magnitude.
        """
        starts = np.cumsum([0] + [layout.chunks * self.chunk for layout in layouts])
        magnitudes = np.empty(starts[-1], np.float32)
        for values, start, end in zip(coefficients, starts, starts[1:]):
            np.abs(values, out=magnitudes[start : start + values.size])
            magnitudes[start + values.size : end] = -1
        counts = [layout.counts for layout in layouts]
        columns = top_k_per_row(torch.from_numpy(magnitudes).view(-1, self.chunk), np.concatenate(counts))
        # A column of a tensor's j-th chunk is at position j·chunk + column of the tensor.
        chunk_starts = [np.repeat(np.arange(c.size) * self.chunk, c) for c in counts]
        ends = np.cumsum([layout.count for layout in layouts])
        return [part + start for part, start in zip(np.split(columns, ends[:-1]), chunk_starts)]


@functools.lru_cache(maxsize=1024)
def _layout(numel: int, chunk: int, k: int) -> ChunkLayout:
    """One layout per tensor size, so that its derived counts are computed once per run."""
    return ChunkLayout(numel, chunk, k)


def _check_positions(positions: np.ndarray, layout: ChunkLayout) -> None:
    """Positions must be strictly increasing, inside the tensor, and exactly `layout.counts` per chunk."""
    require(positions.size == layout.count, "bad_count")
    require(bool((positions[1:] > positions[:-1]).all()), "malformed")
    require(positions.size == 0 or (positions[0] >= 0 and positions[-1] < layout.numel), "index_out_of_range")
    per_chunk = np.bincount(positions // layout.chunk, minlength=layout.chunks)
    require(np.array_equal(per_chunk, layout.counts), "bad_count")
