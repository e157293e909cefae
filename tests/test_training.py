"""Outer step, aggregation, fingerprints, payload round trips, and the model registry."""

import pytest
import safetensors.torch
import torch

from distrain.compression import PayloadError, decode_payload, encode_payload
from distrain.config import ModelConfig, OuterConfig, RecipeError
from distrain.models import build_model, causal_lm_loss
from distrain.training import OuterOptimizer, aggregate, fingerprint, fingerprints_match, pseudo_gradient
from distrain.training.outer import snapshot

SMALL = ModelConfig(context=16, d_model=32, n_layers=1, n_heads=2)


def test_same_seed_same_model_same_fingerprint():
    a, b, c = build_model(SMALL, 1), build_model(SMALL, 1), build_model(SMALL, 2)
    assert fingerprints_match(fingerprint(a), fingerprint(b))
    assert not fingerprints_match(fingerprint(a), fingerprint(c))


@pytest.mark.parametrize("which", ["largest", "smallest"])  # a matrix of whole rows, a vector of a tail
def test_fingerprint_shows_a_change_of_one_value(which):
    model = build_model(SMALL, 1)
    before = fingerprint(model)
    params = sorted(model.parameters(), key=lambda p: p.numel())
    param = params[-1] if which == "largest" else params[0]
    with torch.no_grad():
        param.view(-1)[param.numel() // 2] += 1.0
    assert not fingerprints_match(before, fingerprint(model))


def test_aggregate_clips_to_median_norm_then_averages():
    shapes = {"w": torch.Size([4])}
    deltas = [
        decode_payload(encode_payload({"w": scale * torch.ones(4)}, "fp32", {}), shapes, "fp32")[1]
        for scale in (1, 2, 100)  # norms 2, 4, 200
    ]
    # Median norm is 4: the outlier is scaled down to norm 4, the others pass unchanged.
    expected = (1 + 2 + 2) / 3
    assert torch.allclose(aggregate(deltas)["w"], torch.full((4,), expected))


def test_outer_step_is_nesterov_sgd_from_the_base():
    model = torch.nn.Linear(2, 1, bias=False)
    cfg = OuterConfig(lr=0.5, momentum=0.9, nesterov=True)
    outer = OuterOptimizer(model, cfg)
    base = snapshot(model)
    with torch.no_grad():
        model.weight.add_(123.0)  # inner training moved θ; the step must start from θ_r again
    delta = {"weight": torch.tensor([[1.0, -2.0]])}
    outer.step(base, delta)
    # First Nesterov step: buf = g, update = g + momentum·buf = 1.9·g.
    assert torch.allclose(model.weight, base["weight"] - 0.5 * 1.9 * delta["weight"])
    base2 = snapshot(model)
    outer.step(base2, delta)
    # Second: buf = 0.9·g + g = 1.9 g, update = g + 0.9·1.9 g = 2.71 g.
    assert torch.allclose(model.weight, base2["weight"] - 0.5 * 2.71 * delta["weight"])


def test_pseudo_gradient_points_back_to_the_base():
    model = build_model(SMALL, 0)
    base = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.25)
    delta = pseudo_gradient(base, model)
    assert all(torch.allclose(d, torch.full_like(d, -0.25)) for d in delta.values())


@pytest.mark.parametrize("codec", ["fp32", "fp16"])
def test_payload_round_trip(codec):
    model = build_model(SMALL, 0)
    delta = {n: torch.randn_like(p) * 1e-2 for n, p in model.named_parameters()}
    shapes = {n: p.shape for n, p in model.named_parameters()}
    meta, decoded = decode_payload(encode_payload(delta, codec, {"round": 3}), shapes, codec)
    assert meta == {"round": 3, "codec": codec}
    rtol = 0 if codec == "fp32" else 1e-3  # fp16 keeps 11 significant bits
    assert all(torch.allclose(decoded[n], delta[n], rtol=rtol, atol=1e-7) for n in delta)


def test_payload_rejections_have_reason_codes():
    model = build_model(SMALL, 0)
    shapes = {n: p.shape for n, p in model.named_parameters()}
    delta = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    good = encode_payload(delta, "fp16", {})
    cases = {
        "undecodable": b"not a safetensors file at all",
        "malformed": encode_payload({"other": torch.zeros(3)}, "fp16", {}),
    }
    nan = dict(delta)
    first = next(iter(nan))
    nan[first] = torch.full_like(nan[first], float("nan"))
    cases["non_finite"] = encode_payload(nan, "fp16", {})
    cases["undecodable "] = good[: len(good) // 2]
    # The run's codec decodes, whatever a payload names: fp16 bytes are no fp32 payload.
    cases["wrong_codec"] = encode_payload(delta, "fp32", {})
    # No distrain metadata at all: nothing says what the tensors are.
    cases["malformed "] = safetensors.torch.save({n: t.half() for n, t in delta.items()})
    # 'name/' would stand for the same tensor as 'name' (suffix ''), and overwrite it.
    cases["malformed  "] = encode_payload({**delta, f"{first}/": delta[first]}, "fp16", {})
    for reason, data in cases.items():
        with pytest.raises(PayloadError) as error:
            decode_payload(data, shapes, "fp16")
        assert error.value.reason == reason.strip()


def test_tiny_gpt_learns_and_transformers_builds_from_config():
    model = build_model(SMALL, 0)
    tokens = torch.randint(0, 256, (4, 17))
    assert causal_lm_loss(model, tokens).item() == pytest.approx(
        torch.log(torch.tensor(256.0)).item(), abs=0.2
    )
    pytest.importorskip("transformers")
    cfg = ModelConfig(
        arch="transformers",
        context=16,
        hf_config={
            "model_type": "llama",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
        },
    )
    hf = build_model(cfg, 0)
    assert causal_lm_loss(hf, tokens).item() > 0
    with pytest.raises(RecipeError, match="needs a 'model_type'"):
        build_model(ModelConfig(arch="transformers"), 0)
    with pytest.raises(RecipeError, match="'model.arch' is 'gpt-9'"):
        build_model(ModelConfig(arch="gpt-9"), 0)
