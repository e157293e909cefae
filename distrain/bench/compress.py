"""`distrain bench compress`: size, speed and error of every codec on a real pseudo-gradient.

The input is what a miner sends: Δ = θ_before − θ_after of a round of AdamW steps of the recipe's
model on its assigned pages. A random-normal tensor of the same shapes is the control: it has no
structure for a codec to exploit. hivemind's own fp16 compression runs in the same process as the
baseline. Sizes are those of the real wire bytes (`encode_payload`, header and metadata included);
speeds are MB of fp32 input per second on one thread, best of `--repeat`.

    distrain bench compress                # an aligned table
    distrain bench compress --json         # {"codecs": [{"codec", "bits_per_param", ...}, ...]}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from distrain.bench.threads import one_thread
from distrain.compression import CODECS, RECOMMENDED, decode_payload, encode_payload
from distrain.config import Recipe, load_recipe
from distrain.data import PageBook, load_corpus
from distrain.logs import text_table
from distrain.models import build_model
from distrain.training import InnerTrainer, pseudo_gradient
from distrain.training.outer import snapshot

Delta = dict[str, torch.Tensor]
Wire = list[bytes]

# The metadata of a real payload, so that its bytes count as they would on the wire.
_META = {"hotkey": "5" * 48, "round": 1000, "tokens": 1_000_000}


@dataclass
class Result:
    """One codec's measurements; the JSON output is a list of these."""

    codec: str
    bits_per_param: float
    ratio_vs_fp32: float
    compress_mb_s: float
    """MB (10**6 bytes) of fp32 input compressed per second, one thread."""
    decompress_mb_s: float
    """MB of fp32 output restored (decoded and validated) per second, one thread."""
    rel_error: float
    """‖Δ − Δ̂‖ / ‖Δ‖ on the pseudo-gradient."""
    rel_error_random: float
    """The same on the random-normal control."""
    recommended: bool


@dataclass
class Candidate:
    """A way to move a delta: to wire bytes and back."""

    name: str
    compress: Callable[[Delta], Wire]
    decompress: Callable[[Wire], Delta]


def distrain_codec(name: str, shapes: dict[str, torch.Size]) -> Candidate:
    return Candidate(
        name,
        compress=lambda delta: [encode_payload(delta, name, _META)],
        # Every parameter decoded to a dense tensor, as a consumer reading the whole delta gets it.
        decompress=lambda wire: dict(decode_payload(wire[0], shapes, name)[1].items()),
    )


def hivemind_fp16(shapes: dict[str, torch.Size]) -> Candidate:
    """hivemind's Float16Compression, one serialised protobuf per tensor (as hivemind sends them)."""
    from hivemind.compression import CompressionInfo, Float16Compression
    from hivemind.proto import runtime_pb2

    codec = Float16Compression()

    def compress(delta: Delta) -> Wire:
        return [codec.compress(t, CompressionInfo.from_tensor(t)).SerializeToString() for t in delta.values()]

    def decompress(wire: Wire) -> Delta:
        return {name: codec.extract(runtime_pb2.Tensor.FromString(m)) for name, m in zip(shapes, wire)}

    return Candidate("hivemind-fp16", compress, decompress)


def trained_delta(recipe: Recipe, steps: int) -> Delta:
    """The pseudo-gradient of `steps` AdamW steps of the recipe's model, from its initial parameters."""
    model = build_model(recipe.model, recipe.run.seed)
    book = PageBook(load_corpus(recipe.data), recipe.data, recipe.run.seed, recipe.model.context)
    trainer = InnerTrainer(model, dataclasses.replace(recipe.inner, steps=steps))
    base = snapshot(model)
    pages = book.assignment("bench", 0)
    trainer.train_round(book, pages, torch.Generator().manual_seed(recipe.run.seed), deadline=math.inf)
    return pseudo_gradient(base, model)


def relative_error(delta: Delta, restored: Delta) -> float:
    error = sum(float(((delta[n] - restored[n]) ** 2).sum()) for n in delta)
    return math.sqrt(error / sum(float((t**2).sum()) for t in delta.values()))


def _best_time(function: Callable, argument, repeat: int):
    """`(result, seconds)` of the fastest of `repeat` calls: the least disturbed by the rest of the machine."""
    best = math.inf
    for _ in range(repeat):
        started = time.perf_counter()
        result = function(argument)
        best = min(best, time.perf_counter() - started)
    return result, best


def measure(candidate: Candidate, delta: Delta, control: Delta, repeat: int) -> Result:
    numel = sum(t.numel() for t in delta.values())
    megabytes = 4 * numel / 1e6
    wire, compress_s = _best_time(candidate.compress, delta, repeat)
    restored, decompress_s = _best_time(candidate.decompress, wire, repeat)
    bits = 8 * sum(map(len, wire)) / numel
    return Result(
        codec=candidate.name,
        bits_per_param=bits,
        ratio_vs_fp32=32 / bits,
        compress_mb_s=megabytes / compress_s,
        decompress_mb_s=megabytes / decompress_s,
        rel_error=relative_error(delta, restored),
        rel_error_random=relative_error(control, candidate.decompress(candidate.compress(control))),
        recommended=candidate.name == RECOMMENDED,
    )


def run_bench(recipe: Recipe, steps: int, repeat: int) -> list[Result]:
    """Every codec preset and hivemind's fp16, on the recipe's pseudo-gradient and a random control."""
    delta = trained_delta(recipe, steps)
    shapes = {name: t.shape for name, t in delta.items()}
    generator = torch.Generator().manual_seed(0)
    control = {name: torch.randn(t.shape, generator=generator) for name, t in delta.items()}
    candidates = [hivemind_fp16(shapes)] + [distrain_codec(name, shapes) for name in CODECS]
    with one_thread():
        return [measure(candidate, delta, control, repeat) for candidate in candidates]


def format_table(results: list[Result]) -> str:
    headers = [
        "codec",
        "bits/param",
        "x fp32",
        "comp MB/s",
        "decomp MB/s",
        "both MB/s",
        "rel err",
        "rel err rnd",
    ]
    rows = [
        [
            r.codec + (" *" if r.recommended else ""),
            f"{r.bits_per_param:.4f}",
            f"{r.ratio_vs_fp32:.1f}",
            f"{r.compress_mb_s:.0f}",
            f"{r.decompress_mb_s:.0f}",
            f"{1 / (1 / r.compress_mb_s + 1 / r.decompress_mb_s):.0f}",
            f"{r.rel_error:.4f}",
            f"{r.rel_error_random:.4f}",
        ]
        for r in results
    ]
    legend = "* recommended; 'both': compress then decompress, MB of fp32 per second"
    return text_table(headers, rows) + "\n" + legend


def cmd_compress(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    steps = args.steps or recipe.inner.steps
    results = run_bench(recipe, steps, args.repeat)
    if args.json:
        print(json.dumps({"codecs": [dataclasses.asdict(r) for r in results]}))
    else:
        params = sum(t.numel() for t in build_model(recipe.model, recipe.run.seed).parameters())
        print(
            f"pseudo-gradient of {steps} AdamW steps of {recipe.model.arch} ({params:,} parameters); "
            f"one thread, best of {args.repeat}"
        )
        print(format_table(results))
    return 0


def add_compress_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compress", help="bits per parameter, speed and error of every codec")
    parser.add_argument("--json", action="store_true", help='print one JSON object {"codecs": [...]}')
    parser.add_argument(
        "--recipe", default=None, help="YAML recipe of the model (default: the embedded tiny-gpt)"
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="AdamW steps (default: the recipe's inner.steps)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions; the fastest counts")
    parser.set_defaults(func=cmd_compress)
