"""`distrain bench convergence`: held-out loss against bytes sent, per-step exchange vs DiLoCo vs codecs.

Every run is a real local swarm (`distrain.swarm`): the miner and validator processes, DHT and P2P
transport on 127.0.0.1 that `distrain swarm` starts, on the same model, data, miner count and tokens
per miner. Runs differ only in how often miners exchange (H, inner steps per round) and how:

    ddp              H = 1, fp32, outer step = plain averaging (lr 1, no momentum): each miner's AdamW
                     step is averaged after every step, the DDP-equivalent of this protocol
    diloco-h{H}      H inner steps, fp32, the recipe's Nesterov outer step (uncompressed DiLoCo)
    diloco-h{H}-avg  the same at the recipe's H with plain averaging, which does better in short runs:
                     the codecs are held to the better of the two
    {codec}          DiLoCo at the recipe's H with each compression preset; the recommended one is
                     named `recommended`, and `recommended-h{H}` runs it at the largest H as well.
                     Sparse presets run with the outer step they are meant for (plain SGD at
                     `SPARSE_OUTER_LR`: their error feedback stands in for outer momentum)

Per run: the validator's final loss on its fixed validation pages; bytes each miner uploads (each of
its payloads times the peers that fetch it: the other miners and the validator; DHT records not
counted); wall time from round 0 to the last miner's last round; and compute utilisation, the share of
that time miners spent in inner steps.

Rounds are wall-clock, so each run's round length is sized from an inner step measured before the runs
start: long enough for H steps plus the exchange. Every run uses the same seeded hotkeys, hence the same
page assignments and batches. The validator measures but does not steer: it evaluates few pages and
publishes no aggregation sets (`validator.aggregation_sets: false`), so miners average every submission
that passes the cheap checks — the benchmark compares training, not scoring (with H = 1, successive
AdamW steps of one miner look like replays, and single-step gains are too noisy to judge).

    distrain bench convergence                   # ~10 minutes on 2 CPU cores; a table and a PNG
    distrain bench convergence --json            # {"runs": [{"name", "inner_steps", "codec", ...}]}
    distrain bench convergence --scale gpu       # a bigger model, more miners and tokens
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from distrain.compression import CODECS, RECOMMENDED, outer_overrides
from distrain.config import Recipe, RecipeError, derive_recipe, load_recipe
from distrain.data import PageBook, load_corpus
from distrain.models import build_model
from distrain.swarm import Swarm, SwarmError, SwarmOptions
from distrain.training import InnerTrainer

UNCOMPRESSED = "fp32"
MIN_ROUND_SECONDS = 1.0
"""Shortest round: a DHT announcement, P2P fetches, the outer step and the validator's work must fit."""
EXCHANGE_SECONDS = 0.5
"""Time a round's exchange (gather, outer step, fingerprint) takes from the next round's training."""
PUBLISH_FRACTION = 0.7
BENCH_VALIDATOR = {
    "validator.eval_pages": 2,
    "validator.assignment_pages": 2,
    "validator.aggregation_sets": False,
}
PLAIN_AVERAGING = {"outer.lr": 1.0, "outer.momentum": 0.0, "outer.nesterov": False}
KEY_SEED = "bench"
"""Every run's wallets derive from this seed: the same hotkeys, hence the same pages and batches."""


@dataclass
class Scale:
    """How big a benchmark is: the same comparison at the size a machine can afford."""

    miners: int
    """Honest miners in every run."""
    steps: int
    """Inner steps per miner over a whole run: every run trains the same number of tokens."""
    diloco_steps: tuple[int, ...]
    """The H values of uncompressed DiLoCo runs; each must divide `steps`."""
    recipe_overrides: list[str] = field(default_factory=list)
    """Dotted recipe overrides applied before everything else (the model size of a GPU run)."""


SCALES = {
    "cpu": Scale(miners=2, steps=192, diloco_steps=(12, 24, 48)),
    "gpu": Scale(
        miners=4,
        steps=1536,
        diloco_steps=(32, 128, 512),
        recipe_overrides=[
            *("--model.d_model", "512", "--model.n_layers", "8", "--model.n_heads", "8"),
            *("--model.context", "256", "--inner.batch_size", "32", "--data.max_corpus_mb", "64"),
        ],
    ),
}
"""`cpu`: about ten minutes on 2 cores. `gpu`: a 25M-parameter model, for a machine with a GPU."""


@dataclass
class BenchRun:
    """One swarm of the benchmark."""

    name: str
    inner_steps: int
    codec: str
    overrides: dict = field(default_factory=dict)
    """Recipe overrides of this run (its outer step)."""


@dataclass
class RunResult:
    """What one run measured; the JSON output is a list of these."""

    name: str
    inner_steps: int
    codec: str
    final_loss: float
    """Validation loss (nats per byte) of the shared model after the last round."""
    bytes_per_miner: float
    """Bytes each miner uploaded over the run: its payloads times the peers that fetched them."""
    wall_s: float
    """Seconds from round 0 to the end of the last round."""
    compute_utilisation: float
    """Share of `wall_s` miners spent in inner steps."""
    rounds: int
    round_seconds: float
    tokens_per_miner: float
    """Tokens each miner trained on; equal across runs unless a deadline cut rounds short."""
    averaged_fraction: float
    """Mean share of the miners whose deltas entered each round's average."""
    bytes_served_per_miner: float
    """Bytes the miners' P2P servers counted out (late fetches of the last round may be missing)."""
    initial_loss: float
    curve: list[tuple[float, float]]
    """(cumulative bytes per miner, validation loss) after each round, from (0, initial loss)."""


def plan_runs(scale: Scale, codec_steps: int, codecs: list[str]) -> list[BenchRun]:
    """ddp, uncompressed DiLoCo at each H (and with plain averaging at the codecs' H), each codec at the
    recipe's H, the recommended one at the largest."""
    runs = [BenchRun("ddp", 1, UNCOMPRESSED, PLAIN_AVERAGING)]
    runs += [BenchRun(f"diloco-h{h}", h, UNCOMPRESSED) for h in sorted({*scale.diloco_steps, codec_steps})]
    runs.append(BenchRun(f"diloco-h{codec_steps}-avg", codec_steps, UNCOMPRESSED, PLAIN_AVERAGING))
    for codec in codecs:
        if codec != UNCOMPRESSED:
            name = "recommended" if codec == RECOMMENDED else codec
            runs.append(BenchRun(name, codec_steps, codec, outer_overrides(codec)))
    if RECOMMENDED in codecs and max(scale.diloco_steps) > codec_steps:
        longest = max(scale.diloco_steps)
        runs.append(BenchRun(f"recommended-h{longest}", longest, RECOMMENDED, outer_overrides(RECOMMENDED)))
    for run in runs:
        if scale.steps % run.inner_steps:
            raise RecipeError(f"{run.name}: H={run.inner_steps} does not divide --steps {scale.steps}")
    return runs


def measure_step_seconds(recipe: Recipe, steps: int = 6) -> float:
    """Seconds of one inner step of the recipe on one thread (after as many warm-up steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every swarm peer runs
    try:
        book = PageBook(load_corpus(recipe.data), recipe.data, recipe.run.seed, recipe.model.context)
        model = build_model(recipe.model, recipe.run.seed)
        trainer = InnerTrainer(model, dataclasses.replace(recipe.inner, steps=steps))
        pages, generator = book.assignment("calibration", 0), torch.Generator().manual_seed(0)
        trainer.train_round(book, pages, generator, math.inf)  # AdamW state and allocator warm up
        stats = trainer.train_round(book, pages, generator, math.inf)
        return stats.seconds / stats.steps
    finally:
        torch.set_num_threads(threads)


def round_seconds(inner_steps: int, step_seconds: float, miners: int) -> float:
    """A round long enough for `inner_steps` steps before the publish deadline, with the exchange before
    them, while `miners` processes share the machine (one GPU serialises them; CPUs share cores)."""
    on_cpu = 1.5 * max(1.0, miners / (os.cpu_count() or 1))  # 1.5: a validator and p2pd daemons too
    contention = miners if torch.cuda.is_available() else on_cpu
    needed = (inner_steps * step_seconds * contention + EXCHANGE_SECONDS) / PUBLISH_FRACTION
    return round(max(MIN_ROUND_SECONDS, needed), 2)


def run_one(base: Recipe, run: BenchRun, scale: Scale, step_seconds: float, out: Path, echo) -> RunResult:
    """One swarm, start to summary; the measurements read from its peers' event logs."""
    seconds = round_seconds(run.inner_steps, step_seconds, scale.miners)
    overrides = {
        "run.run_id": f"bench-{run.name}",
        "run.round_seconds": seconds,
        "run.publish_fraction": PUBLISH_FRACTION,
        "inner.steps": run.inner_steps,
        "compression.codec": run.codec,
        **BENCH_VALIDATOR,
        **run.overrides,
    }
    recipe = derive_recipe(base, overrides)
    rounds = scale.steps // run.inner_steps
    # The same seeded hotkeys in every run: the same pages and batches, so runs differ by method only.
    options = SwarmOptions(miners=scale.miners, rounds=rounds, out_dir=str(out / run.name), key_seed=KEY_SEED)
    swarm = Swarm(recipe, options, echo=echo)
    summary = swarm.run()

    miners = [m.events() for m in swarm.members if m.role != "validator"]
    receivers = scale.miners - 1 + options.validators  # everyone else fetches each payload once
    wall = max(e["time"] for events in miners for e in events) - swarm.genesis
    per_miner = {
        key: sum(e[key] for events in miners for e in events) / len(miners)
        for key in ("payload_bytes", "bytes_sent", "tokens", "inner_seconds", "averaged")
    }
    uploaded_by_round = [0.0] * rounds
    for event in (e for events in miners for e in events):
        uploaded_by_round[event["round"]] += event["payload_bytes"] * receivers / len(miners)
    losses = [summary["initial_val_loss"]] + [entry["val_loss"] for entry in summary["rounds"]]
    return RunResult(
        name=run.name,
        inner_steps=run.inner_steps,
        codec=run.codec,
        final_loss=summary["final_val_loss"],
        bytes_per_miner=per_miner["payload_bytes"] * receivers,
        wall_s=wall,
        compute_utilisation=per_miner["inner_seconds"] / wall,
        rounds=rounds,
        round_seconds=seconds,
        tokens_per_miner=per_miner["tokens"],
        averaged_fraction=per_miner["averaged"] / rounds / scale.miners,
        bytes_served_per_miner=per_miner["bytes_sent"],
        initial_loss=summary["initial_val_loss"],
        curve=[(sum(uploaded_by_round[:i]), loss) for i, loss in enumerate(losses)],
    )


def target_checks(results: list[RunResult], codec_steps: int) -> list[dict]:
    """The issue's targets, each with the figures it compares and whether this run met it."""
    by_name = {r.name: r for r in results}
    checks = []

    def check(claim: str, ok: bool, **figures) -> None:
        checks.append({"target": claim, "met": ok, **{k: round(v, 4) for k, v in figures.items()}})

    recommended, ddp, templar = by_name.get("recommended"), by_name.get("ddp"), by_name.get("templar")
    diloco = [by_name[n] for n in (f"diloco-h{codec_steps}", f"diloco-h{codec_steps}-avg") if n in by_name]
    if recommended and diloco:
        uncompressed = min(diloco, key=lambda r: r.final_loss)
        gap = recommended.final_loss / uncompressed.final_loss - 1
        check(f"recommended within 2% of {uncompressed.name}", gap <= 0.02, loss_gap=gap)
    if recommended and templar:
        check("recommended no worse than templar", recommended.final_loss <= templar.final_loss,
              recommended=recommended.final_loss, templar=templar.final_loss)  # fmt: skip
    for run in (r for r in results if r.name.startswith("recommended") and ddp):
        gap, fewer = run.final_loss / ddp.final_loss - 1, ddp.bytes_per_miner / run.bytes_per_miner
        check(f"{run.name} within 3% of ddp", gap <= 0.03, loss_gap=gap)
        check(f"{run.name} sends >= 10,000x fewer bytes than ddp", fewer >= 1e4, fewer_bytes=fewer)
    return checks


def format_table(results: list[RunResult]) -> str:
    headers = ["run", "H", "codec", "final loss", "MB/miner", "x fewer", "wall s", "compute", "averaged"]
    ddp = next((r for r in results if r.name == "ddp"), None)
    rows = [
        [
            r.name,
            str(r.inner_steps),
            r.codec,
            f"{r.final_loss:.4f}",
            f"{r.bytes_per_miner / 1e6:.3f}",
            f"{ddp.bytes_per_miner / r.bytes_per_miner:,.0f}" if ddp else "-",
            f"{r.wall_s:.0f}",
            f"{r.compute_utilisation:.0%}",
            f"{r.averaged_fraction:.0%}",
        ]
        for r in results
    ]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]
    return "\n".join(
        "  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
        for line in [headers, *rows]
    )


def run_convergence(base: Recipe, scale: Scale, runs: list[BenchRun], out: Path, echo) -> dict:
    """The runs one after the other; the report is rewritten after each run, so an interrupted benchmark
    keeps what it measured."""
    from distrain.plots import plot_convergence

    out.mkdir(parents=True, exist_ok=True)
    step_seconds = measure_step_seconds(base)
    setup = {
        "miners": scale.miners,
        "steps_per_miner": scale.steps,
        "tokens_per_step": base.inner.batch_size * base.model.context,
        "parameters": sum(p.numel() for p in build_model(base.model, base.run.seed).parameters()),
        "step_seconds": step_seconds,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "recipe_hash": base.hash(),
    }
    echo(
        f"inner step {step_seconds * 1e3:.0f} ms; {len(runs)} runs of {scale.miners} miners x {scale.steps} steps"
    )
    results: list[RunResult] = []
    report = {}
    for index, run in enumerate(runs, 1):
        started = time.time()
        echo(
            f"[{index}/{len(runs)}] {run.name}: H={run.inner_steps}, {run.codec}, {scale.steps // run.inner_steps} rounds"
        )
        results.append(run_one(base, run, scale, step_seconds, out, lambda _line: None))
        r = results[-1]
        echo(
            f"    final loss {r.final_loss:.4f}, {r.bytes_per_miner / 1e6:.3f} MB/miner, "
            f"compute {r.compute_utilisation:.0%}, {time.time() - started:.0f} s"
        )
        report = {
            "runs": [dataclasses.asdict(r) for r in results],
            "targets": target_checks(results, base.inner.steps),
            "setup": setup,
        }
        (out / "convergence.json").write_text(json.dumps(report, indent=2))
        plot_convergence(results, out / "convergence.png")
    return report


def plan_from_args(args: argparse.Namespace) -> tuple[Recipe, Scale, list[BenchRun]]:
    """The base recipe, the scale and the runs that `add_plan_arguments`' options ask for."""
    scale = dataclasses.replace(SCALES[args.scale])
    for name in ("miners", "steps"):
        if getattr(args, name) is not None:
            setattr(scale, name, getattr(args, name))
    if args.diloco_steps:
        scale.diloco_steps = tuple(int(h) for h in args.diloco_steps.split(","))
    codecs = args.codecs.split(",") if args.codecs else list(CODECS)
    unknown = sorted(set(codecs) - set(CODECS))
    if unknown:
        raise RecipeError(f"unknown codecs {unknown}, expected names from {sorted(CODECS)}")
    base = load_recipe(args.recipe, scale.recipe_overrides)
    if args.codec_steps:
        base = derive_recipe(base, {"inner.steps": args.codec_steps})
    runs = plan_runs(scale, base.inner.steps, codecs)
    if args.only:
        only = args.only.split(",")
        unknown = sorted(set(only) - {run.name for run in runs})
        if unknown:
            raise RecipeError(f"--only names runs not in the plan: {unknown}")
        runs = [run for run in runs if run.name in only]
    return base, scale, runs


def cmd_convergence(args: argparse.Namespace) -> int:
    base, scale, runs = plan_from_args(args)
    out = Path(args.out)
    echo = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    try:
        report = run_convergence(base, scale, runs, out, echo)
    except SwarmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table([RunResult(**r) for r in report["runs"]]))
        for check in report["targets"]:
            print(f"{'met   ' if check['met'] else 'missed'}  {check['target']}")
        print(f"convergence.json and convergence.png in {out.resolve()}")
    return 0


def add_convergence_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convergence", help="final loss against bytes sent: per-step exchange, DiLoCo, every codec"
    )
    parser.add_argument("--json", action="store_true", help='print one JSON object {"runs": [...]}')
    parser.add_argument("--out", default="runs/bench-convergence", help="folder for the swarms, JSON and PNG")
    add_plan_arguments(parser)
    parser.set_defaults(func=cmd_convergence)


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose a benchmark's runs (`plan_from_args`), shared with `bench rounds`."""
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="size of the benchmark")
    parser.add_argument("--recipe", default=None, help="base recipe (default: the embedded tiny-gpt)")
    parser.add_argument("--miners", type=int, default=None, help="miners per run (default: the scale's)")
    parser.add_argument("--steps", type=int, default=None, help="inner steps per miner per run")
    parser.add_argument("--diloco-steps", default=None, help="comma-separated H of uncompressed DiLoCo runs")
    parser.add_argument(
        "--codec-steps",
        type=int,
        default=None,
        help="H of the codec runs (default: the recipe's inner.steps)",
    )
    parser.add_argument("--only", default=None, help="comma-separated run names to run (default: all)")
    parser.add_argument("--codecs", default=None, help="comma-separated codecs (default: every preset)")
