"""Bit packing and Rice codes: exact round trips at odd sizes, rejections of lying buffers."""

import numpy as np
import pytest

from distrain.compression.bitpack import (
    gaps,
    pack,
    packed_size,
    rice_bound_shift,
    rice_bytes,
    rice_decode,
    rice_encode,
    unpack,
)


@pytest.mark.parametrize("width", [0, 1, 2, 3, 7, 8, 12, 13, 31])
@pytest.mark.parametrize("count", [0, 1, 5, 77])
def test_fixed_width_round_trip(width, count):
    values = np.random.default_rng(width * 100 + count).integers(0, 2**width, count)
    data = pack(values, width)
    assert data.dtype == np.uint8 and data.size == packed_size(count, width)
    assert np.array_equal(unpack(data, width, count), values)


def test_unpack_rejects_a_buffer_of_the_wrong_size():
    data = pack(np.arange(10), 4)
    for wrong in (data[:-1], np.concatenate([data, data[:1]])):
        with pytest.raises(ValueError, match="truncated"):
            unpack(wrong, 4, 10)


@pytest.mark.parametrize("values", [[0], [5], [0, 0, 0], [1, 200, 3, 0, 70000, 9], list(range(1, 300, 7))])
def test_rice_round_trip(values):
    values = np.array(values)
    shift, low, unary = rice_encode(values, total=int(values.sum()))
    assert np.array_equal(rice_decode(shift, low, unary, len(values), total=int(values.sum())), values)


def test_rice_is_near_the_entropy_of_random_gaps():
    positions = np.sort(np.random.default_rng(0).choice(1 << 20, 10_000, replace=False))
    shift, low, unary = rice_encode(np.diff(positions, prepend=-1) - 1, total=1 << 20)
    bits_per_gap = 8 * (low.size + unary.size) / positions.size
    assert bits_per_gap < np.log2(np.e * (1 << 20) / 10_000) + 0.2  # ~8.9 bits; 20 for plain indices


@pytest.mark.parametrize("kind", ["even", "random", "clustered"])
def test_rice_never_writes_more_than_its_bound_at_the_best_shift(kind):
    # Payload size estimates add up `rice_bytes` at `rice_bound_shift`: the encoder must stay below.
    total, count = 70_000, 960
    positions = {
        "even": np.arange(count) * (total // count),  # equal gaps: the mean's shift alone overshot
        "random": np.sort(np.random.default_rng(1).choice(total, count, replace=False)),
        "clustered": np.arange(count) + total - count,  # one long gap, then none
    }[kind]
    shift, low, unary = rice_encode(gaps(positions), total=total)
    assert low.size + unary.size <= rice_bytes(count, total, rice_bound_shift(count, total))
    assert np.array_equal(np.cumsum(rice_decode(shift, low, unary, count, total) + 1) - 1, positions)


def test_rice_decode_rejects_lies():
    shift, low, unary = rice_encode(np.array([3, 9, 1, 4]), total=17)
    with pytest.raises(ValueError, match="bad_count"):
        rice_decode(shift, low, unary, 5, total=17)  # one value fewer than declared
    with pytest.raises(ValueError, match="malformed"):
        rice_decode(shift, low, np.concatenate([unary, np.zeros(100, np.uint8)]), 4, total=17)  # padding
    with pytest.raises(ValueError, match="malformed"):
        rice_decode(200, low, unary, 4, total=17)
    with pytest.raises(ValueError, match="truncated"):
        rice_decode(shift, low[:-1], unary, 4, total=17)
