"""Every codec: round trips, error bounds, top-k selection, sizes, and decoders that reject lies."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from distrain.compression import (
    CODECS,
    PRESET_INNER_STEPS,
    RECOMMENDED,
    SPARSE_ASSIGNMENT_MARGIN,
    BlockwiseInt8,
    ChunkedTopK,
    encode_payload,
    estimated_payload_bytes,
    get_codec,
    recipe_advice,
)
from distrain.compression.bitpack import pack
from distrain.compression.dct import dct_chunks, inverse_sparse
from distrain.compression.topk import INDEX_CODINGS, ChunkLayout
from distrain.config import RecipeError, ValidatorConfig, load_recipe
from distrain.models import build_model

SHAPES = [(4096 * 2 + 100,), (300, 70), (128,), (1,)]  # whole chunks + tail, 2-D, 1-D below one chunk


def _random(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _relative_error(x, y):
    return float((x - y).norm() / x.norm())


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize("shape", SHAPES)
def test_every_preset_round_trips_to_float32_of_the_shape(name, shape):
    codec, x = CODECS[name], _random(shape)
    stored = codec.encode(x)
    y = codec.decode(stored, x.shape)
    assert y.dtype == torch.float32 and y.shape == x.shape and torch.isfinite(y).all()
    assert sum(t.numel() * t.element_size() for t in stored.values()) <= codec.estimated_bytes(x.shape)
    assert _relative_error(x, y) <= 1.0  # even top-k never adds energy


@pytest.mark.parametrize(("name", "bound"), [("fp32", 0.0), ("fp16", 1e-3), ("bf16", 8e-3), ("int8", 1e-2)])
def test_dense_and_int8_error_bounds(name, bound):
    x = _random((300, 70))
    assert _relative_error(x, CODECS[name].decode(CODECS[name].encode(x), x.shape)) <= bound


def test_int8_error_is_at_most_half_a_step_of_its_block():
    codec = BlockwiseInt8("int8", block=64)
    x = _random(1000) * torch.linspace(0.01, 100, 1000)  # very different scales along the tensor
    y = codec.decode(codec.encode(x), x.shape)
    block_max = torch.nn.functional.pad(x.abs(), (0, 24)).view(-1, 64).amax(1).repeat_interleave(64)[:1000]
    assert ((x - y).abs() <= block_max / 254 * 1.001).all()


def test_topk_keeps_exactly_the_k_largest_of_every_chunk():
    codec = ChunkedTopK("t", chunk=64, k=5, value_bits=2)
    x = _random((3, 50))  # 150 values: two chunks of 64, a tail of 22 that keeps ceil(5·22/64) = 2
    y = codec.decode(codec.encode(x), x.shape).flatten()
    flat = x.flatten()
    for start, k in [(0, 5), (64, 5), (128, 2)]:
        chunk = flat[start : start + 64]
        expected = set((chunk.abs().topk(k).indices + start).tolist())
        kept = set(torch.nonzero(y[start : start + 64]).flatten().add(start).tolist())
        assert kept == expected
    kept = y != 0
    assert torch.equal(torch.sign(y[kept]), torch.sign(flat[kept]))
    # Bin means keep every bin's (and so the whole) L1 mass of the kept values.
    assert math.isclose(float(y.abs().sum()), float(flat[kept].abs().sum()), rel_tol=1e-5)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_more_value_bits_lower_the_error_of_kept_values(bits):
    codec = ChunkedTopK("t", chunk=256, k=256, value_bits=bits)  # keep everything: only quantisation
    x = _random(4096)
    error = _relative_error(x, codec.decode(codec.encode(x), x.shape))
    assert error < {1: 0.62, 2: 0.4, 4: 0.17, 8: 0.04}[bits]  # sign + mean magnitude: 0.603


def test_sparse_inverse_dct_equals_the_dense_inverse():
    coordinates = torch.stack(
        [torch.randperm(64, generator=torch.Generator().manual_seed(i))[:5] for i in range(7)]
    )
    values = _random((7, 5))
    coefficients = torch.zeros(7, 64).scatter_(1, coordinates, values).view(7, 8, 8)
    assert torch.allclose(
        inverse_sparse(coordinates, values, 8), dct_chunks(coefficients, inverse=True), atol=1e-6
    )


def test_dct_is_orthonormal_and_keeping_every_coefficient_is_near_lossless():
    tiles = _random((5, 8, 8))
    assert torch.allclose(dct_chunks(dct_chunks(tiles), inverse=True), tiles, atol=1e-5)
    assert torch.allclose(dct_chunks(tiles).norm(), tiles.norm())
    codec = ChunkedTopK("t", chunk=64, k=64, value_bits=8, dct=True)
    x = _random(64 * 3 + 10)
    assert _relative_error(x, codec.decode(codec.encode(x), x.shape)) < 0.04  # 8-bit values


def test_dct_finds_smooth_structure_that_plain_topk_misses():
    ramp = torch.linspace(-1, 1, 4096).repeat(4)
    plain, dct = (ChunkedTopK("t", chunk=4096, k=40, value_bits=8, dct=dct) for dct in (False, True))
    assert _relative_error(ramp, dct.decode(dct.encode(ramp), ramp.shape)) < 0.5
    assert _relative_error(ramp, plain.decode(plain.encode(ramp), ramp.shape)) > 0.9


def test_recommended_and_templar_sizes():
    numel = 4096 * 1000
    flat = torch.Size([numel])
    assert CODECS[RECOMMENDED].estimated_bytes(flat) * 8 / numel <= 0.15
    # Templar's configuration packed ideally: 64 · (12 + 2) / 4096 bits per value.
    assert CODECS["templar"].estimated_bytes(flat) * 8 / numel == pytest.approx(64 * 14 / 4096, rel=1e-3)
    x = _random(numel)
    actual = CODECS[RECOMMENDED].encode(x)[""].numel()
    assert (
        0.9 * CODECS[RECOMMENDED].estimated_bytes(flat) <= actual <= CODECS[RECOMMENDED].estimated_bytes(flat)
    )


def test_unknown_codec_and_bad_parameters_are_clear_errors():
    with pytest.raises(RecipeError, match="compression.codec"):
        get_codec("zip")
    with pytest.raises(ValueError, match="invalid k"):
        ChunkedTopK("t", chunk=64, k=65)
    with pytest.raises(ValueError, match="invalid dct"):
        ChunkedTopK("t", chunk=99, k=5, dct=True)


# --- Decoders reject lies, with a reason -----------------------------------------------------------


def _blob(codec: ChunkedTopK, numel: int, positions, table=(1.0, 2.0)) -> dict[str, torch.Tensor]:
    """A hand-made top-k payload claiming `positions`, to say what an honest encoder never would."""
    layout, positions = ChunkLayout(numel, codec.chunk, codec.k), np.array(positions)
    parts = [
        np.array(table, "<f4").view(np.uint8),
        pack(np.zeros(len(positions), np.int64), codec.value_bits),
        INDEX_CODINGS[codec.index_coding].encode(positions, layout),
    ]
    return {"": torch.from_numpy(np.concatenate(parts))}


RICE = ChunkedTopK("t", chunk=16, k=2, value_bits=2, index_coding="rice")  # 40 values keep 2 + 2 + 1
FIXED = ChunkedTopK("t", chunk=16, k=2, value_bits=2, index_coding="fixed")


@pytest.mark.parametrize(
    ("codec", "positions", "table", "reason"),
    [
        (RICE, [0, 5, 17, 20, 33], (1.0, 2.0), None),  # the honest shape, as a control
        (RICE, [0, 1, 2, 20, 33], (1.0, 2.0), "bad_count"),  # three in the first chunk
        # One missing: 5 values' codes take 2 bytes where 4 wrote 1, so the decoder reads the index
        # coding's first byte as a value code and the next, 176, as a Rice shift: above 32, malformed.
        (RICE, [0, 5, 17, 20], (1.0, 2.0), "malformed"),
        (RICE, [0, 5, 17, 20, 40], (1.0, 2.0), "index_out_of_range"),
        (RICE, [0, 5, 17, 20, 33], (1.0, float("nan")), "non_finite"),
        (RICE, [0, 5, 17, 20, 33], (float("inf"), 1.0), "non_finite"),
        (FIXED, [0, 5, 17, 20, 33], (1.0, 2.0), None),
        (FIXED, [5, 5, 17, 20, 33], (1.0, 2.0), "malformed"),  # duplicate index
        (FIXED, [5, 0, 17, 20, 33], (1.0, 2.0), "malformed"),  # unsorted
        (FIXED, [0, 5, 17, 20, 47], (1.0, 2.0), "index_out_of_range"),  # past the 8-value tail
    ],
)
def test_topk_decoder_rejections(codec, positions, table, reason):
    stored = _blob(codec, 40, positions, table)
    if reason is None:
        assert codec.decode(stored, torch.Size([40])).count_nonzero() == 5
    else:
        with pytest.raises(ValueError, match=f"^{reason}$"):
            codec.decode(stored, torch.Size([40]))


@pytest.mark.parametrize("name", sorted(CODECS))
def test_decoders_reject_truncated_mistyped_and_misshapen_input(name):
    codec, x = CODECS[name], _random(5000)
    stored = codec.encode(x)
    with pytest.raises(ValueError):
        codec.decode(stored, torch.Size([10000]))
    with pytest.raises(ValueError, match="malformed"):
        codec.decode({**stored, "extra": torch.zeros(1)}, x.shape)
    with pytest.raises(ValueError, match="malformed"):
        codec.decode({key: t.to(torch.float64) for key, t in stored.items()}, x.shape)
    with pytest.raises(ValueError, match="truncated|malformed|bad_count"):
        codec.decode({key: t[: t.numel() // 2] for key, t in stored.items()}, x.shape)


def test_int8_codes_of_minus_128_are_rejected():
    # The encoder writes ±127 at most; -128·scale is the one value a finite 127·scale does not bound.
    codec = CODECS["int8"]
    stored = codec.encode(_random(512))
    stored["q"] = stored["q"].clone()
    stored["q"][0] = -128
    with pytest.raises(ValueError, match="malformed"):
        codec.decode(stored, torch.Size([512]))


def test_lowrank_factors_whose_products_overflow_are_rejected_though_their_norm_is_small():
    # Two equal columns of P against opposite columns of Q: every entry of P·Qᵀ is x − x = 0 in exact
    # arithmetic, so the norm is 0, but each product, 1.6e64, overflows float32: expanded, inf − inf = NaN.
    codec, shape = CODECS["lowrank"], torch.Size([400, 400])
    rank = codec.rank(shape)
    assert rank == 2
    p = torch.full((400, rank), 127, dtype=torch.int8)
    q = torch.tensor([[127, -127]], dtype=torch.int8).repeat(400, 1)
    scales = torch.full((2, rank), 1e30)
    blob = torch.cat([t.contiguous().flatten().view(torch.uint8) for t in (scales, p, q)])
    with pytest.raises(ValueError, match="non_finite"):
        codec.parse({"": blob}, shape)


@pytest.mark.parametrize("name", ["fp32", "fp16", "bf16", "int8"])
def test_non_finite_values_and_scales_are_rejected(name):
    codec = CODECS[name]
    stored = codec.encode(_random(512))
    key = "scale" if name == "int8" else ""
    stored[key] = stored[key].clone()
    stored[key][1] = float("nan")
    with pytest.raises(ValueError, match="non_finite"):
        codec.decode(stored, torch.Size([512]))


def test_recipe_advice_names_the_measured_settings_of_sparse_codecs():
    assert recipe_advice(load_recipe(None)) == []  # fp16: the recipe's own outer step and margin
    advice = recipe_advice(
        load_recipe(None, ["--compression.codec", "topk", "--compression.error_decay", "0.95"])
    )
    assert len(advice) == 3
    assert "--outer.lr 3.0 --outer.momentum 0.0 --outer.nesterov false" in advice[0]
    assert (
        f"assignment_margin {ValidatorConfig.assignment_margin} flags most honest miners" in advice[1]
        and str(SPARSE_ASSIGNMENT_MARGIN) in advice[1]
    )
    assert "error_decay 0.95 is above 0.85" in advice[2] and "7.0% above the default 0.7" in advice[2]
    # A preset measured at its own H says so where the recipe's differs.
    (preset, steps), *_ = PRESET_INNER_STEPS.items()
    advice = recipe_advice(load_recipe(None, ["--compression.codec", preset]))
    assert sum(f"measured best: --inner.steps {steps}" in line for line in advice) == 1
    # Its payloads are too thin for the loss proof of work: a node says so until the validator reruns.
    assert sum("--validator.proof_of_work rerun" in line for line in advice) == 1
    at_its_h = recipe_advice(load_recipe(None, ["--compression.codec", preset, "--inner.steps", str(steps)]))
    assert len(at_its_h) == len(advice) - 1 and not any("inner.steps" in line for line in at_its_h)
    rerun = ["--validator.proof_of_work", "rerun", "--validator.assignment_margin", "0.04"]
    judged = recipe_advice(load_recipe(None, ["--compression.codec", preset, *rerun]))
    assert not any("proof_of_work" in line or "assignment_margin" in line for line in judged), judged
    # The shipped recipes follow their own advice.
    for path in Path(__file__).parents[2].glob("recipes/*/*.yaml"):
        if path.parent.name != "accelerate_configs":
            assert recipe_advice(load_recipe(path)) == [], path


@pytest.mark.parametrize("name", sorted(CODECS))
@pytest.mark.parametrize("numel", [100, 70_000, 300_000])
def test_an_estimate_is_never_below_the_encoded_size(name, numel):
    # A ramp puts the kept values at even gaps, where the sparse codecs' payloads once came out up to
    # 12% above their estimate; nodes plan payload sizes with it.
    codec, shape = CODECS[name], torch.Size([numel])
    for x in (torch.arange(numel, dtype=torch.float32), _random(numel)):
        assert sum(t.numel() * t.element_size() for t in codec.encode(x).values()) <= codec.estimated_bytes(
            shape
        )


@pytest.mark.parametrize("name", sorted(CODECS))
def test_a_payloads_estimate_bounds_its_size_closely(name):
    # Nodes refuse a recipe whose estimate exceeds run.max_payload_mb: an estimate far above the real
    # size (lowrank's once was 70x) would refuse recipes that work.
    model = build_model(load_recipe(None).model, seed=0)
    delta = {
        n: torch.randn(p.shape, generator=torch.Generator().manual_seed(i))
        for i, (n, p) in enumerate(model.named_parameters())
    }
    shapes = {n: t.shape for n, t in delta.items()}
    data = encode_payload(delta, name, {"round": 0})
    header = 8 + int.from_bytes(data[:8], "little")  # safetensors: a u64 length, then the JSON header
    estimate = estimated_payload_bytes(name, shapes)
    assert len(data) - header <= estimate <= 1.1 * (len(data) - header)
