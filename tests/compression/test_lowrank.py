"""The low-rank codec: ranks from the bit budget, fidelity on low-rank input, and decoders that reject lies."""

import pytest
import torch

from distrain.compression import CODECS
from distrain.compression.lowrank import LowRank

CODEC: LowRank = CODECS["lowrank"]


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("shape", "rank"), [((128, 512), 1), ((768, 768), 4), ((4096, 4096), 25)])
def test_rank_follows_the_bit_budget(shape, rank):
    assert CODEC.rank(torch.Size(shape)) == rank
    rows, cols = shape
    assert (rows + cols) * rank * 8 <= max(0.1 * rows * cols, (rows + cols) * 8)


def test_a_low_rank_matrix_survives_up_to_int8_rounding():
    g = _generator()
    matrix = torch.randn(300, 1, generator=g) @ torch.randn(1, 200, generator=g)
    restored = CODEC.decode(CODEC.encode(matrix), matrix.shape)
    assert float((restored - matrix).norm() / matrix.norm()) < 0.02


def test_higher_dims_are_factored_as_rows_by_the_rest():
    g = _generator(1)
    tensor = (torch.randn(64, 1, generator=g) @ torch.randn(1, 48, generator=g)).view(64, 6, 8)
    stored = CODEC.encode(tensor)
    assert stored[""].numel() == 2 * 4 * 1 + (64 + 48) * 1  # two fp32 scales, then the int8 factors
    assert float((CODEC.decode(stored, tensor.shape) - tensor).norm() / tensor.norm()) < 0.02


def test_vectors_and_tiny_matrices_travel_as_int8():
    for shape in [(128,), (1, 300), (4, 4)]:
        x = torch.randn(shape, generator=_generator())
        assert not LowRank.factorable(torch.Size(shape))
        assert float((CODEC.decode(CODEC.encode(x), x.shape) - x).norm() / x.norm()) < 0.01


def test_the_same_delta_gives_the_same_bytes():
    x = torch.randn(96, 80, generator=_generator(2))
    assert torch.equal(CODEC.encode(x)[""], CODEC.encode(x.clone())[""])


def test_parsed_norm_matches_the_expanded_matrix_without_expanding_it():
    x = torch.randn(96, 80, generator=_generator(3))
    parsed = CODEC.parse(CODEC.encode(x), x.shape)
    assert parsed.squared_norm == pytest.approx(float(parsed.dense().double().square().sum()), rel=1e-6)


def _scales(blob: torch.Tensor, rank: int = 1) -> torch.Tensor:
    """The fp32 scales at the head of a factor blob, as a writable view."""
    return blob[: 8 * rank].view(torch.float32)


@pytest.mark.parametrize(
    ("scale", "reason"), [(float("nan"), "non_finite"), (1e36, "non_finite"), (-1.0, "malformed")]
)
def test_bad_scales_are_rejected(scale, reason):
    x = torch.randn(96, 80, generator=_generator(4))
    blob = CODEC.encode(x)[""].clone()
    _scales(blob)[:] = scale  # 1e36: each factor is finite, their product overflows float32
    with pytest.raises(ValueError, match=f"^{reason}$"):
        CODEC.decode({"": blob}, x.shape)


def test_a_blob_of_the_wrong_length_is_truncated():
    x = torch.randn(96, 80, generator=_generator(5))
    blob = CODEC.encode(x)[""]
    for wrong in (blob[:-1], torch.cat([blob, blob[:3]])):
        with pytest.raises(ValueError, match="^truncated$"):
            CODEC.decode({"": wrong}, x.shape)
