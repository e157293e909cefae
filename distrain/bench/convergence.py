"""`distrain bench convergence`: held-out loss against bytes sent, per-step exchange vs DiLoCo vs codecs.

Every run is a real local swarm (`distrain.swarm`): the miner and validator processes, DHT and P2P
transport on 127.0.0.1 that `distrain swarm` starts, on the same model, data, miner count and tokens
per miner. The runs (ddp, uncompressed DiLoCo at several H, DiLoCo with each codec) are those of
`distrain.bench.plan`.

Per run: the validator's final loss on its fixed validation pages; bytes each miner uploads (each of
its payloads times the peers that fetch it: the other miners and the validator; DHT records not
counted); wall time from round 0 to the last miner's last round; and compute utilisation, the share of
that time miners spent in inner steps.

Rounds are wall-clock, so each run's round length is sized from an inner step measured before the runs start:
long enough for H steps plus the exchange. The calibration can misjudge how much the peers slow each other
down: a run whose miners trained or were averaged under `SHORT_RUN_FRACTION` runs once more with longer rounds
(`retry_seconds`; `--no-retry` keeps the first try). Every run uses the same seeded hotkeys, hence the same
page assignments and batches. The validator measures but does not steer: it evaluates few pages and publishes
no aggregation sets (`validator.aggregation_sets: false`), so miners average every submission that passes the
cheap checks — the benchmark compares training, not scoring (with H = 1, successive AdamW steps of one miner
look like replays, and single-step gains are too noisy to judge).

    distrain bench convergence                   # ~10 minutes on 2 CPU cores; a table and a PNG
    distrain bench convergence --json            # {"runs": [{"name", "inner_steps", "codec", ...}]}
    distrain bench convergence --scale mid       # 3.2M parameters: ~2 minutes a run on 2 CPU cores
    distrain bench convergence --scale gpu       # 25M parameters, 4 miners, for a GPU: ddp alone ~2 h
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from distrain.bench.plan import KEY_SEED, BenchRun, Scale, add_plan_arguments, plan_from_args
from distrain.bench.threads import one_thread
from distrain.compression import ErrorFeedback, decode_payload
from distrain.config import Recipe, derive_recipe
from distrain.data import PageBook, load_corpus
from distrain.logs import text_table
from distrain.models import build_model, mean_loss
from distrain.swarm import Swarm, SwarmError, SwarmOptions
from distrain.training import InnerTrainer, OuterOptimizer, aggregate, fingerprint, pseudo_gradient
from distrain.training.checkpoint import MinerCheckpoint, global_tensors
from distrain.training.cluster import Cluster
from distrain.training.outer import snapshot

MIN_ROUND_SECONDS = 0.8
"""Shortest round: a DHT announcement, P2P fetches, the outer step and the validator's work must fit."""
EXCHANGE_SECONDS = 0.5
"""Least time a round's exchange (gather, outer step, fingerprint) takes from the next round's training:
0.12 s (0.21 s at most) in a ddp run of the default model, measured; the rest is slack for a busy
machine. Bigger models take what `exchange_seconds` measures."""
LOOPBACK_BYTES_PER_SECOND = 100 * 2**20
"""A payload fetch between two peers' p2pd daemons on 127.0.0.1: 165 MiB/s for one 97 MiB payload on the
2-core machine (29 MiB/s for 1 MiB), less with a swarm busy beside it."""
VALIDATOR_FETCH_SECONDS = 0.1
"""What the validator's round costs besides its page evaluations (fetching and checking submissions);
it overlaps the next round, so a late round delays it without making it miss one."""
PUBLISH_FRACTION = 0.7
SHORT_RUN_FRACTION = 0.9
"""A run whose miners trained or were averaged less than this was cut short by its rounds, not its method."""
RETRY_MARGIN = 1.15
"""A run cut short runs once more with rounds 1/share as long (share: what its miners trained or had
averaged, whichever is less) and this much longer still, as the first try's share does not show how
late its steps began. On the 2-core machine, uncompressed DiLoCo and templar at 3.2M parameters trained
84% and 88% of their steps in 7 s rounds, and all of them in 7.36 s rounds a quarter of an hour later."""
MAX_RETRY_STRETCH = 4.0
"""A second try's rounds are at most this many times the first's: a run that trained next to nothing
failed for another reason than its rounds' length, and a longer run would only take longer to say so."""
PROGRESS_SECONDS = 20.0
"""A run's swarm reports every round (ddp has 192 of them); the benchmark passes one line on this often."""
BENCH_VALIDATOR = {
    "validator.eval_pages": 1,
    "validator.assignment_pages": 1,
    "validator.aggregation_sets": False,
}
"""The validator measures and does not steer: it publishes no aggregation sets, and scores (unused here)
from one page each, which keeps ddp's one-step rounds near the 1 s minimum on the default model (two
pages each made them 1.25 s); every loss reported still comes from its 12 validation pages."""


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
    latest_train_start_s: float | None = None
    """Latest a miner began a round's steps, in seconds into the round: the previous round's exchange ran
    until then. Steps end at `PUBLISH_FRACTION` of the round, so a late start cuts them."""
    exchange_s: float | None = None
    """Median seconds a miner's exchange took, from a round's end (its `exchange_seconds` parts summed):
    what the codec's bytes and the outer step cost in time."""
    first_try: dict | None = None
    """Set when this result is a second try (`retry_seconds`): the first's `round_seconds`, the shares of
    their steps its miners `trained` and of their submissions `averaged`, and its `final_loss`."""


@dataclass
class Calibration:
    """What a swarm peer's work costs on this machine, measured on one thread, as every peer runs."""

    step_seconds: float
    """One inner step of the recipe."""
    page_seconds: float
    """The validator's loss on one page's windows."""
    exchange_seconds: dict[str, float]
    """By codec: a miner's work between two rounds (`exchange_seconds`)."""


def calibrate(recipe: Recipe, codecs: list[str], miners: int, folder: Path, steps: int = 6) -> Calibration:
    """An inner step (after as many warm-up steps), a validator's page evaluation of the recipe, and the
    exchange with each of `codecs` (its checkpoints are written under `folder`, removed afterwards)."""
    with one_thread():
        try:
            book = PageBook(load_corpus(recipe.data), recipe.data, recipe.run.seed, recipe.model.context)
            model = build_model(recipe.model, recipe.run.seed)
            trainer = InnerTrainer(model, dataclasses.replace(recipe.inner, steps=steps))
            pages, generator = book.assignment("calibration", 0), torch.Generator().manual_seed(0)
            trainer.train_round(book, pages, generator, math.inf)  # AdamW state and allocator warm up
            stats = trainer.train_round(book, pages, generator, math.inf)
            started = time.time()
            mean_loss(model, book.sequences(pages))
            page_seconds = (time.time() - started) / len(pages)
            trained = build_model(recipe.model, recipe.run.seed)
            trainer.copy_into(trained)  # θ_i after the steps above: every codec compresses the same delta
            exchange = {
                codec: exchange_seconds(recipe, codec, trained, trainer.cluster, miners, folder)
                for codec in codecs
            }
            return Calibration(stats.seconds / stats.steps, page_seconds, exchange)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def exchange_seconds(
    recipe: Recipe, codec: str, trained: nn.Module, cluster: Cluster, miners: int, folder: Path
) -> float:
    """A miner's work after its round's training (`Miner.run_round`) with `codec`, which delays its next
    round's steps: compress its pseudo-gradient (θ to `trained`), fetch the other miners' payloads
    (estimated at `LOOPBACK_BYTES_PER_SECOND`) and decode them, the outer step, its checkpoint (the part
    that is not written in the background) and the fingerprint of θ_{r+1}.
    0.04 s with the default model; 1-3 s at 25M parameters on the 2-core machine, where the fixed 0.5 s
    it once was left miners no time to train."""
    theta = build_model(recipe.model, recipe.run.seed)
    shapes = {name: param.shape for name, param in theta.named_parameters()}
    outer = OuterOptimizer(theta, recipe.outer)  # Nesterov by default: the costlier outer step
    feedback = ErrorFeedback(recipe.compression.error_decay)
    started = time.perf_counter()
    base = snapshot(theta)
    _, payload, _ = feedback.send(pseudo_gradient(base, trained), codec, {"round": 0}, shapes)
    outer.step(
        base,
        aggregate([decode_payload(payload, shapes, codec)[1] for _ in range(miners)], recipe.outer.average),
    )
    checkpoint = MinerCheckpoint(folder / codec, cluster)
    checkpoint.save(0, global_tensors(theta, outer, feedback))
    fingerprint(theta)  # θ_{r+1}'s, published, and the next round's base
    measured = time.perf_counter() - started  # the commit goes on in the background, beside the steps
    checkpoint.wait()
    shutil.rmtree(folder / codec)  # 0.5 GB at 25M parameters
    # On the generous side: compressing happens before the publish deadline, in the round's own slack.
    return measured + len(payload) * (miners - 1) / LOOPBACK_BYTES_PER_SECOND


def validator_pages(recipe: Recipe, miners: int) -> int:
    """Pages whose loss the validator computes each round: its validation pages, the round's held-out
    pages, and its random pages before and after the round's average delta; per submission its own
    pages before and after the delta and after the others' average, and the held-out and random pages
    after the delta (`Validator.evaluate`)."""
    v = recipe.validator
    per_submission = v.eval_pages + 4 * v.assignment_pages
    return v.val_pages + v.eval_pages + 2 * v.assignment_pages + miners * per_submission


def round_seconds(inner_steps: int, calibration: Calibration, codec: str, miners: int, pages: int) -> float:
    """A round long enough for `inner_steps` steps before the publish deadline, with the exchange before
    them, while `miners` processes share the machine (one GPU serialises them; CPUs share cores); and
    long enough for the validator to evaluate `pages` pages and take in the round, or it falls behind
    the rounds and sees no more submissions: with one step a round (ddp) and 3M parameters it did, at
    1.3 s rounds."""
    on_cpu = 1.5 * max(1.0, miners / (os.cpu_count() or 1))  # 1.5: a validator and p2pd daemons too
    contention = miners if torch.cuda.is_available() else on_cpu
    exchange = calibration.exchange_seconds[codec] * on_cpu
    training = (
        inner_steps * calibration.step_seconds * contention + max(EXCHANGE_SECONDS, exchange)
    ) / PUBLISH_FRACTION
    validating = pages * calibration.page_seconds * on_cpu + max(VALIDATOR_FETCH_SECONDS, exchange)
    return round(max(MIN_ROUND_SECONDS, training, validating), 2)


def retry_seconds(round_seconds: float, share: float) -> float | None:
    """Round length for a second try of a run whose miners trained or had averaged only `share` of their
    steps or submissions, or None if that is enough: the steps end at a fixed share of the round, so
    rounds 1/`share` as long give them the time they lacked, and `RETRY_MARGIN` what the share does not
    show; never more than `MAX_RETRY_STRETCH` times as long."""
    if share >= SHORT_RUN_FRACTION:
        return None
    return round(round_seconds * min(RETRY_MARGIN / max(share, 1e-9), MAX_RETRY_STRETCH), 2)


def run_one(
    base: Recipe,
    run: BenchRun,
    scale: Scale,
    calibration: Calibration,
    out: Path,
    echo,
    seconds: float | None = None,
) -> RunResult:
    """One swarm, start to summary; the measurements read from its peers' event logs. Rounds last
    `seconds`, or what `round_seconds` makes of the calibration."""
    pages = validator_pages(derive_recipe(base, BENCH_VALIDATOR), scale.miners)
    if seconds is None:
        seconds = round_seconds(run.inner_steps, calibration, run.codec, scale.miners, pages)
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
        latest_train_start_s=max(e["train_start_seconds"] for events in miners for e in events),
        exchange_s=statistics.median(
            sum(e["exchange_seconds"].values()) for events in miners for e in events
        ),
    )


def target_checks(results: list[RunResult], codec_steps: int) -> list[dict]:
    """The issue's targets, each with the figures it compares, whether this run met it, and whether the
    runs it compares trained the same tokens (deadlines cut steps when rounds are too short)."""
    by_name = {r.name: r for r in results}
    checks = []

    def check(claim: str, ok: bool, runs: list[RunResult], **figures) -> None:
        equal = len({r.tokens_per_miner for r in runs}) == 1
        checks.append(
            {
                "target": claim,
                "met": ok,
                "equal_tokens": equal,
                **{k: round(v, 4) for k, v in figures.items()},
            }
        )

    recommended, ddp, templar = by_name.get("recommended"), by_name.get("ddp"), by_name.get("templar")
    diloco = [by_name[n] for n in (f"diloco-h{codec_steps}", f"diloco-h{codec_steps}-avg") if n in by_name]
    if recommended and diloco:
        uncompressed = min(diloco, key=lambda r: r.final_loss)
        gap = recommended.final_loss / uncompressed.final_loss - 1
        check(
            f"recommended within 2% of {uncompressed.name}",
            gap <= 0.02,
            [recommended, uncompressed],
            loss_gap=gap,
        )
    if recommended and templar:
        check("recommended no worse than templar", recommended.final_loss <= templar.final_loss, [recommended, templar],
              recommended=recommended.final_loss, templar=templar.final_loss)  # fmt: skip
    if not ddp:
        return checks
    # The ddp target, for the recommended preset at each H it ran.
    for run in (r for r in results if r.name.startswith("recommended")):
        gap, fewer = run.final_loss / ddp.final_loss - 1, ddp.bytes_per_miner / max(run.bytes_per_miner, 1)
        check(f"{run.name} within 3% of ddp", gap <= 0.03, [run, ddp], loss_gap=gap)
        check(
            f"{run.name} sends >= 10,000x fewer bytes than ddp", fewer >= 1e4, [run, ddp], fewer_bytes=fewer
        )
    return checks


def format_table(results: list[RunResult]) -> str:
    headers = [
        "run",
        "H",
        "codec",
        "final loss",
        "MB/miner",
        "x fewer",
        "tokens",
        "wall s",
        "exchange s",
        "compute",
        "averaged",
    ]
    ddp = next((r for r in results if r.name == "ddp"), None)
    rows = [
        [
            r.name,
            str(r.inner_steps),
            r.codec,
            f"{r.final_loss:.4f}",
            f"{r.bytes_per_miner / 1e6:.3f}",
            f"{ddp.bytes_per_miner / r.bytes_per_miner:,.0f}" if ddp else "-",
            f"{r.tokens_per_miner:,.0f}",  # equal in every run, unless deadlines cut steps
            f"{r.wall_s:.0f}",
            "-" if r.exchange_s is None else f"{r.exchange_s:.2f}",
            f"{r.compute_utilisation:.0%}",
            f"{r.averaged_fraction:.0%}",
        ]
        for r in results
    ]
    return text_table(headers, rows, left=(0, 1, 2))


def throttled(echo, seconds: float):
    """`echo`, indented, passing on at most one line per `seconds`."""
    last = -math.inf

    def echo_now_and_then(line: str) -> None:
        nonlocal last
        if time.time() - last >= seconds:
            last = time.time()
            echo(f"    {line}")

    return echo_now_and_then


def run_convergence(
    base: Recipe,
    scale: Scale,
    runs: list[BenchRun],
    out: Path,
    echo,
    settings: dict[str, str] | None = None,
    retry: bool = True,
) -> dict:
    """The runs one after the other, each cut short by its rounds run once more if `retry`; the report is
    rewritten after each run, so an interrupted benchmark keeps what it measured. `settings` (the `--set`
    overrides, already in `base` and `runs`) is recorded in the report's setup."""
    from distrain.plots import plot_convergence

    out.mkdir(parents=True, exist_ok=True)
    calibration = calibrate(base, sorted({run.codec for run in runs}), scale.miners, out / "calibration")
    setup = {
        "miners": scale.miners,
        "steps_per_miner": scale.steps,
        "tokens_per_step": base.inner.batch_size * base.model.context,
        "parameters": sum(p.numel() for p in build_model(base.model, base.run.seed).parameters()),
        "step_seconds": calibration.step_seconds,
        "page_seconds": calibration.page_seconds,
        "device": "cuda" if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "recipe_hash": base.hash(),
        "set": settings or {},
    }
    exchanges = ", ".join(
        f"{codec} {seconds:.2f} s" for codec, seconds in calibration.exchange_seconds.items()
    )
    echo(
        f"inner step {calibration.step_seconds * 1e3:.0f} ms, page evaluation {calibration.page_seconds * 1e3:.0f} ms, "
        f"exchange {exchanges}; {len(runs)} runs of {scale.miners} miners x {scale.steps} steps"
    )
    tokens_due = scale.steps * setup["tokens_per_step"]  # per miner, in every run
    results: list[RunResult] = []
    report = {}
    for index, run in enumerate(runs, 1):
        started = time.time()
        echo(
            f"[{index}/{len(runs)}] {run.name}: H={run.inner_steps}, {run.codec}, {scale.steps // run.inner_steps} rounds"
        )
        progress = throttled(echo, PROGRESS_SECONDS)
        r = run_one(base, run, scale, calibration, out, progress)
        trained = r.tokens_per_miner / tokens_due
        longer = retry_seconds(r.round_seconds, min(trained, r.averaged_fraction)) if retry else None
        if longer is not None:
            echo(
                f"    {r.round_seconds:g} s rounds were too short for this machine: miners trained "
                f"{trained:.0%} of their steps, {r.averaged_fraction:.0%} of submissions were averaged "
                f"(final loss {r.final_loss:.4f}); again with {longer:g} s rounds"
            )
            first_try = out / f"{run.name}.first-try"  # its logs, kept beside the second try's
            shutil.rmtree(first_try, ignore_errors=True)
            (out / run.name).rename(first_try)
            first = {
                "round_seconds": r.round_seconds,
                "trained": trained,
                "averaged": r.averaged_fraction,
                "final_loss": r.final_loss,
            }
            r = dataclasses.replace(
                run_one(base, run, scale, calibration, out, progress, seconds=longer), first_try=first
            )
            trained = r.tokens_per_miner / tokens_due
        results.append(r)
        echo(
            f"    final loss {r.final_loss:.4f}, {r.bytes_per_miner / 1e6:.3f} MB/miner, "
            f"compute {r.compute_utilisation:.0%}, {r.round_seconds:g} s rounds, {time.time() - started:.0f} s"
        )
        if trained < SHORT_RUN_FRACTION:
            echo(
                f"    warning: miners trained {trained:.0%} of their steps (a round's steps began up to "
                f"{r.latest_train_start_s:.2f} s into it and end at {PUBLISH_FRACTION * r.round_seconds:.2f} s): "
                "the rounds were too short for this machine, so this run does not compare with the others"
            )
        if r.averaged_fraction < SHORT_RUN_FRACTION:
            echo(
                f"    warning: {r.averaged_fraction:.0%} of submissions were averaged; the swarm's logs under "
                f"{out / r.name} say why the others were rejected (late, oversized, wrong_base...)"
            )
        report = {
            "runs": [dataclasses.asdict(r) for r in results],
            "targets": target_checks(results, base.inner.steps),
            "setup": setup,
        }
        (out / "convergence.json").write_text(json.dumps(report, indent=2))
        plot_convergence(results, out / "convergence.png")
    return report


def cmd_convergence(args: argparse.Namespace) -> int:
    base, scale, runs, settings = plan_from_args(args)
    out = Path(args.out)
    echo = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    try:
        report = run_convergence(base, scale, runs, out, echo, settings, retry=not args.no_retry)
    except SwarmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print(format_table([RunResult(**r) for r in report["runs"]]))
        for check in report["targets"]:
            caveat = "" if check["equal_tokens"] else " (the runs it compares trained unequal tokens)"
            print(f"{'met   ' if check['met'] else 'missed'}  {check['target']}{caveat}")
        print(f"convergence.json and convergence.png in {out.resolve()}")
    return 0


def add_convergence_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convergence", help="final loss against bytes sent: per-step exchange, DiLoCo, every codec"
    )
    parser.add_argument("--json", action="store_true", help='print one JSON object {"runs": [...]}')
    parser.add_argument("--out", default="runs/bench-convergence", help="folder for the swarms, JSON and PNG")
    parser.add_argument(
        "--no-retry",
        action="store_true",
        help="keep a run whose rounds were too short for its miners' steps (by default it runs once more, "
        "with longer rounds)",
    )
    add_plan_arguments(parser)
    parser.set_defaults(func=cmd_convergence)
