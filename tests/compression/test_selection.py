"""The two-stage top-k selects exactly what a full sort would: ties to the lower position, zeros, padding."""

import numpy as np
import pytest
import torch

from distrain.compression import CODECS, ChunkedTopK
from distrain.compression.bitpack import packed_size
from distrain.compression.selection import top_k_per_row
from distrain.compression.topk import INDEX_CODINGS


def exact(magnitudes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The reference: a stable sort of each row, largest first, so equal values keep their order."""
    rows = [np.sort(np.argsort(-row, kind="stable")[:k]) for row, k in zip(magnitudes, counts)]
    return np.concatenate(rows).astype(np.int64)


def rows_with_ties_and_zeros(n: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = np.abs(rng.standard_normal((n, width), dtype=np.float32))
    rows[0] = 0  # an all-zero chunk
    rows[1] = rng.integers(0, 3, width)  # a handful of distinct values: ties everywhere
    rows[2, : width // 2] = 7.0  # the top values tie across many groups
    return rows


# Two stages where width ≥ GROUP²·k (4096 with 40 or 1, 1024 with 16), one top-k otherwise.
@pytest.mark.parametrize(("width", "k"), [(4096, 40), (4096, 1), (1024, 16), (96, 5), (4096, 4096)])
def test_matches_a_stable_full_sort(width, k):
    rows = rows_with_ties_and_zeros(6, width, seed=width + k)
    counts = np.full(6, k)
    assert np.array_equal(top_k_per_row(torch.from_numpy(rows), counts), exact(rows, counts))


def test_rows_keep_their_own_counts_and_never_padding():
    rows = rows_with_ties_and_zeros(5, 4096, seed=1)
    rows[3, 100:] = -1  # a short last chunk: 100 values, then padding
    rows[4, 3:] = -1  # three values only, one of them kept
    counts = np.array([40, 40, 40, 2, 1])
    columns = top_k_per_row(torch.from_numpy(rows), counts)
    assert np.array_equal(columns, exact(rows, counts))
    assert columns.size == counts.sum() and all(columns[-3:] < [100, 100, 3])


def test_nan_counts_as_the_largest_magnitude():
    rows = np.ones((1, 4096), np.float32)
    rows[0, 4000] = np.nan
    assert 4000 in top_k_per_row(torch.from_numpy(rows), np.array([40]))


def _positions(codec: ChunkedTopK, blob: torch.Tensor, numel: int) -> np.ndarray:
    """The positions a payload carries: its index section, after the magnitude table and the codes."""
    layout = codec.layout(numel)
    start = 4 * (1 << (codec.value_bits - 1)) + packed_size(layout.count, codec.value_bits)
    return INDEX_CODINGS[codec.index_coding].decode(blob.numpy()[start:], layout)


@pytest.mark.parametrize("numel", [3 * 4096 + 1000, 5000, 4096, 100, 1])
def test_the_codec_keeps_each_chunks_largest_at_odd_sizes(numel):
    codec = CODECS["topk"]
    x = torch.from_numpy(np.random.default_rng(numel).integers(-3, 4, numel).astype(np.float32))
    if numel > 4096:
        x[:4096] = 0  # a chunk of zeros
    layout = codec.layout(numel)
    padded = np.full(layout.chunks * codec.chunk, -1, np.float32)
    padded[:numel] = x.abs().numpy()
    expected = exact(padded.reshape(-1, codec.chunk), layout.counts)
    expected += np.repeat(np.arange(layout.chunks) * codec.chunk, layout.counts)
    assert np.array_equal(_positions(codec, codec.encode(x)[""], numel), expected)


def test_batched_encoding_is_the_encoding_of_each_tensor(monkeypatch):
    codec, generator = CODECS["topk"], torch.Generator().manual_seed(0)
    shapes = [(300, 70), (128,), (9000,), (1,), (5, 4096)]  # batches close after the first and the last
    tensors = [torch.randn(shape, generator=generator) for shape in shapes]
    alone = [codec.encode(t)[""] for t in tensors]
    monkeypatch.setattr("distrain.compression.topk.BATCH_VALUES", 10_000)  # several batches
    for batched in (list(codec.encode_all(tensors)), list(CODECS["topk"].encode_all(iter(tensors)))):
        assert all(torch.equal(a, b[""]) for a, b in zip(alone, batched)) and len(batched) == len(alone)
