"""Vectorised bit packing: fixed-width unsigned integers and Rice codes, little-endian bit order.

Everything here works on whole numpy arrays (no per-element Python) and every decoder checks the
buffer it is given against the size it derives itself.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from distrain.compression.base import require

MAX_RICE_SHIFT = 32
"""Largest Rice parameter a decoder accepts: gaps inside one tensor stay far below 2**32, and a larger
shift could overflow int64 when high parts are shifted back."""


def packed_size(count: int, width: int) -> int:
    """Bytes holding `count` integers of `width` bits."""
    return (count * width + 7) // 8


def pack(values: np.ndarray, width: int) -> np.ndarray:
    """Pack non-negative integers below 2**width into `packed_size(len(values), width)` bytes."""
    as_bytes = values.astype("<u8").view(np.uint8).reshape(-1, 8)
    return np.packbits(np.unpackbits(as_bytes, axis=1, count=width, bitorder="little"), bitorder="little")


def unpack(data: np.ndarray, width: int, count: int) -> np.ndarray:
    """The `count` integers (int64) of `width` bits that `pack` stored in exactly `data`."""
    require(data.size == packed_size(count, width), "truncated")
    bits = np.unpackbits(data, count=count * width, bitorder="little").reshape(count, width)
    return bits.astype(np.int64) @ (np.int64(1) << np.arange(width, dtype=np.int64))


def gaps(ascending: np.ndarray) -> np.ndarray:
    """`v[i] − v[i−1] − 1` with `v[−1] = −1`: how many integers lie strictly between consecutive values."""
    result = ascending.astype(np.int64)  # a copy
    result[1:] -= ascending[:-1] + 1
    return result


def rice_bytes(count: int, total: int, shift: int) -> int:
    """At most how many bytes `rice_encode` writes at `shift` for `count` values summing to at most
    `total`: `shift` low bits each, and unary high parts of at most total >> shift 0 bits plus a 1 each."""
    return packed_size(count, shift) + packed_size((total >> shift) + count, 1)


@functools.lru_cache(maxsize=4096)
def rice_bound_shift(count: int, total: int) -> int:
    """The shift whose `rice_bytes` bound is the lowest. Cached: a model's shapes recur every round, and
    33 bounds in Python cost more than the encoding of a small tensor."""
    return min(range(MAX_RICE_SHIFT + 1), key=lambda shift: rice_bytes(count, total, shift))


def rice_encode(values: np.ndarray, total: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Rice-code non-negative integers that sum to at most `total`: `(shift, low bits, unary high parts)`.

    Each value v is split into its `shift` low bits, packed at a fixed width, and its high part
    v >> shift, written in unary as that many 0 bits followed by a 1 in a second stream. Keeping the
    streams apart lets the decoder find every value's end with one `flatnonzero` over the unary bits.
    For geometrically distributed values (gaps between random positions) this is within a few
    percent of their entropy.

    The shift is the better of the one near-optimal for geometric values of mean m, floor(log2(m·ln 2)),
    and `rice_bound_shift`: so the output is never larger than `rice_bytes` promises at the best shift,
    which is what payload size estimates rely on (evenly spaced positions came out above it with the
    first alone).
    """
    if values.size == 0:
        return 0, np.empty(0, np.uint8), np.empty(0, np.uint8)
    values = values.astype(np.int64)
    shift = max(int(values.mean() * math.log(2)).bit_length() - 1, 0)
    bound_shift = rice_bound_shift(values.size, total)
    if bound_shift != shift:  # mostly they agree, and there is nothing to compare
        shift = min(  # the fewer bytes
            {shift, bound_shift},
            key=lambda s: (
                packed_size(values.size, s) + packed_size(int((values >> s).sum()) + values.size, 1)
            ),
        )
    ends = np.cumsum((values >> shift) + 1) - 1
    unary = np.zeros(int(ends[-1]) + 1, np.uint8)
    unary[ends] = 1
    return shift, pack(values & ((1 << shift) - 1), shift), np.packbits(unary, bitorder="little")


def rice_decode(shift: int, low: np.ndarray, unary: np.ndarray, count: int, total: int) -> np.ndarray:
    """Invert `rice_encode` for `count` values whose sum is at most `total` (bounds the unary stream)."""
    require(0 <= shift <= MAX_RICE_SHIFT, "malformed")
    # The high parts sum to at most total >> shift, plus one terminating 1 per value: anything longer
    # is padding an attacker added to make us unpack (8x) more memory.
    require(unary.size <= packed_size((total >> shift) + count, 1), "malformed")
    ends = np.flatnonzero(np.unpackbits(unary, bitorder="little"))
    require(ends.size == count, "bad_count")
    return (gaps(ends) << shift) | unpack(low, shift, count)
