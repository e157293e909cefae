"""Aggregation of compressed submissions, one parameter at a time: the old dense result, in bounded memory."""

import json
import os
import subprocess
import sys

import pytest
import torch

from distrain.compression import decode_payload, encode_payload
from distrain.config import OuterConfig
from distrain.training import OuterOptimizer, aggregate
from distrain.training.outer import LeftOut, snapshot

SHAPES = {"w": torch.Size([300, 70]), "b": torch.Size([70]), "e": torch.Size([2 * 4096 + 5])}


def _submissions(count: int, codec: str, seed: int = 0) -> list:
    generator = torch.Generator().manual_seed(seed)
    payloads = [
        encode_payload(
            {name: (i + 1) * torch.randn(shape, generator=generator) for name, shape in SHAPES.items()},
            codec,
            {},
        )
        for i in range(count)
    ]
    return [decode_payload(payload, SHAPES, codec)[1] for payload in payloads]


@pytest.mark.parametrize("codec", ["topk", "int8", "fp16"])
def test_lazy_aggregation_equals_the_dense_average(codec):
    deltas = _submissions(5, codec)  # norms grow with i: the two largest are clipped
    dense = [dict(delta.items()) for delta in deltas]
    norms = [float(torch.sqrt(sum((t.double() ** 2).sum() for t in d.values()))) for d in dense]
    median = sorted(norms)[2]
    expected = {
        name: sum(min(1.0, median / n) * d[name] for n, d in zip(norms, dense)) / len(dense)
        for name in SHAPES
    }
    assert [delta.norm() for delta in deltas] == pytest.approx(norms, rel=1e-6)
    average = dict(aggregate(deltas))
    assert list(average) == list(SHAPES)
    for name in SHAPES:
        assert torch.allclose(average[name], expected[name], rtol=1e-6, atol=1e-6)


def test_senders_average_divides_each_coordinate_by_the_deltas_that_carry_it():
    deltas = _submissions(5, "topk")
    dense = [dict(delta.items()) for delta in deltas]
    clipped = dict(aggregate(deltas))  # the clipped mean over all 5, as above
    senders = dict(aggregate(deltas, "senders"))
    counts = {name: sum((d[name] != 0).int() for d in dense) for name in SHAPES}
    assert int(counts["w"].max()) > 1 and int(counts["w"].min()) == 0  # sets overlap, and miss some
    for name, count in counts.items():
        expected = torch.where(count > 0, clipped[name] * len(dense) / count.clamp(min=1), 0.0)
        assert torch.allclose(senders[name], expected, rtol=1e-5, atol=1e-7)
    # A dense codec carries every coordinate: the two averages agree.
    fp16 = _submissions(3, "fp16")
    for name, tensor in aggregate(fp16, "senders").items():
        assert torch.allclose(tensor, dict(aggregate(fp16))[name], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("codec", ["topk", "fp16"])
def test_left_out_is_the_mean_of_the_other_clipped_deltas(codec):
    deltas = _submissions(5, codec)  # the two largest are clipped to the median norm of all five
    average = aggregate(deltas)
    mean, dense = dict(average), [dict(delta.items()) for delta in deltas]
    for index in (0, 4):
        others = [(s, d) for i, (s, d) in enumerate(zip(average.scales, dense)) if i != index]
        left_out = LeftOut(mean, average, index)
        assert list(left_out) == list(SHAPES)
        for name in SHAPES:
            expected = sum(scale * d[name] for scale, d in others) / 4
            assert torch.allclose(left_out[name], expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="two or more"):
        LeftOut(mean, aggregate(deltas[:1]), 0)
    with pytest.raises(ValueError, match="plain average"):
        LeftOut(mean, aggregate(deltas, "senders"), 0)


@pytest.mark.parametrize(("momentum", "nesterov"), [(0.9, True), (0.9, False), (0.0, False)])
def test_outer_step_matches_torch_sgd_exactly(momentum, nesterov):
    model, reference = torch.nn.Linear(8, 4), torch.nn.Linear(8, 4)
    reference.load_state_dict(model.state_dict())
    outer = OuterOptimizer(model, OuterConfig(lr=0.7, momentum=momentum, nesterov=nesterov))
    sgd = torch.optim.SGD(reference.parameters(), lr=0.7, momentum=momentum, nesterov=nesterov)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        grads = {name: torch.randn(p.shape, generator=generator) for name, p in model.named_parameters()}
        outer.step(snapshot(model), grads)
        for name, param in reference.named_parameters():
            param.grad = grads[name].clone()
        sgd.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), reference.parameters()))


# One outer step in a fresh process, with glibc returning large blocks to the system at once, so that
# the resident set follows the tensors alive; its peak is reset just before the step (Linux: clear_refs).
_MEASURE = r"""
import json, re, sys, torch
from distrain.compression import decode_payload, encode_payload
from distrain.config import OuterConfig
from distrain.training import OuterOptimizer, aggregate
from distrain.training.outer import snapshot

def kib(key):
    return 1024 * int(re.search(key + r":\s+(\d+) kB", open("/proc/self/status").read()).group(1))

torch.set_num_threads(1)
params, numel, submissions = 32, 1 << 19, 8  # 32 tensors of 2 MiB: a 64 MiB model
model = torch.nn.ParameterDict({f"p{i}": torch.nn.Parameter(torch.zeros(numel)) for i in range(params)})
shapes = {name: p.shape for name, p in model.named_parameters()}
payloads = [encode_payload({n: torch.randn(s) for n, s in shapes.items()}, "topk", {}) for _ in range(submissions)]
deltas = [decode_payload(p, shapes, "topk")[1] for p in payloads]
outer, base = OuterOptimizer(model, OuterConfig()), snapshot(model)
outer.step(base, aggregate(deltas))  # the first step allocates the momentum: a model, but not aggregation's
open("/proc/self/clear_refs", "w").write("5")
before = kib("VmRSS")
outer.step(base, aggregate(deltas))
print(json.dumps({"extra": kib("VmHWM") - before, "model": 4 * params * numel, "tensor": 4 * numel}))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's peak RSS reset")
def test_aggregating_eight_submissions_keeps_only_a_few_tensors_dense():
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE], capture_output=True, text=True, env=env, check=True
    )
    measured = json.loads(out.stdout.splitlines()[-1])
    # Densifying the eight submissions would take 8 models (plus an average and its .grad copy); the
    # lazy path holds the running sum, one decoded tensor and the Nesterov temporary: a few tensors.
    assert measured["extra"] < 6 * measured["tensor"] < measured["model"] / 4, measured
