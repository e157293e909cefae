"""`distrain bench rounds`: the arithmetic of the round protocol in one process, for quick sweeps.

Each run trains like a swarm of the same recipe: every miner is an `InnerTrainer` fed the pages and
batch seeds a swarm miner would get (the same seeded hotkeys as `bench convergence`), sends its
pseudo-gradient through error feedback and its codec's real bytes, and θ moves by the clipped average
and the outer step of `distrain.training.outer`. What a swarm adds is left out: processes, P2P, DHT,
clocks and deadlines, the validator's checks and scores. Every miner finishes all H steps and every
delta is averaged, so a run is what `bench convergence` measures when nothing goes wrong, in seconds
rather than a minute on the tiny model. It needs neither hivemind nor the bittensor SDK (only its key
binding, for the hotkeys), so it runs on a bare GPU image at the `gpu` scale (25M parameters), where
the miners train and the model is evaluated on the GPU. It is for sweeping settings; `bench
convergence` remains the measurement of record.

    distrain bench rounds --only diloco-h16,diloco-h16-avg,recommended,templar
    distrain bench rounds --only recommended --set outer.lr=2 --set compression.error_decay=0.9
    distrain bench rounds --only recommended --seed 0,1,2       # each seed, then their mean
    distrain bench rounds --scale gpu --json --seed 1
    distrain bench rounds --only recommended,templar --seed 0,1 --out runs/rounds   # + JSON and PNG
    python -m distrain.bench.rounds --scale gpu ...   # the same, where the distrain CLI's deps are missing

The runs and their names are those of `bench convergence` (see its plan); `--set` applies to every
run after the run's own settings, so it can move a sparse codec's outer learning rate (the plain
averaging of ddp and diloco-h{H}-avg, which define them, stays).
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from distrain.bench.plan import BenchRun, Scale, add_plan_arguments, bench_hotkeys, plan_from_args
from distrain.compression import RECOMMENDED, ErrorFeedback
from distrain.config import Recipe, derive_recipe
from distrain.data import PageBook, load_corpus
from distrain.models import build_model, mean_loss
from distrain.training import InnerTrainer, OuterOptimizer, aggregate, pseudo_gradient
from distrain.training.cluster import Cluster
from distrain.training.outer import snapshot
from distrain.training.plan import Plan, round_seed, train


@dataclass
class RoundsResult:
    """One run with one seed; the JSON output's `runs` is a list of these."""

    name: str
    inner_steps: int
    codec: str
    seed: int
    """What `--seed` shifted the miners' batch seeds by."""
    final_loss: float
    """Validation loss of θ after the last round (the validator's fixed validation pages)."""
    bits_per_param: float
    """Mean payload size over miners and rounds, in bits per parameter (wire bytes, header included)."""
    seconds: float
    curve: list[float]
    """Validation loss after each round, from the initial model's."""
    finished: bool = True
    """False for a run stopped by SIGTERM or Ctrl-C: its figures end at its last whole round."""


SIGTERM_RECEIVED = threading.Event()
"""Set by SIGTERM (`timeout`, a job scheduler's time limit). Runs check it between rounds rather than
being interrupted inside torch, which wraps a foreign exception raised mid-call (`load_state_dict` did):
the run under way ends after its current round and the report keeps every run so far."""


class Stopped(Exception):
    """A run or the whole benchmark ends early because SIGTERM arrived."""


def run_rounds(
    recipe: Recipe,
    run: BenchRun,
    scale: Scale,
    book: PageBook,
    cluster: Cluster,
    seed: int,
    echo: Callable[[str], None] = print,
) -> RoundsResult:
    """`scale.steps // run.inner_steps` rounds of `scale.miners` miners, all in this process; `echo`
    gets a progress line at most ten times a run (a ddp run at the gpu scale takes minutes)."""
    started = time.time()
    theta = build_model(recipe.model, recipe.run.seed)
    shapes = {name: param.shape for name, param in theta.named_parameters()}
    outer = OuterOptimizer(theta, recipe.outer)
    hotkeys = bench_hotkeys(scale.miners)
    trainers = [
        InnerTrainer(build_model(recipe.model, recipe.run.seed), recipe.inner, cluster) for _ in hotkeys
    ]
    # θ is evaluated where the miners train: on a GPU, a CPU evaluation of 25M parameters would dominate.
    scorer = build_model(recipe.model, recipe.run.seed).to(trainers[0].accelerator.device)
    val_sequences = book.sequences(book.validation_pages(recipe.validator.val_pages))

    def val_loss() -> float:
        scorer.load_state_dict(theta.state_dict())
        return mean_loss(scorer, val_sequences)

    feedbacks = [ErrorFeedback(recipe.compression.error_decay) for _ in hotkeys]
    trained = build_model(recipe.model, recipe.run.seed)  # θ_i of the miner being processed
    curve, payload_bytes, finished = [val_loss()], 0, True
    rounds = scale.steps // run.inner_steps
    try:
        for round_ in range(rounds):
            if SIGTERM_RECEIVED.is_set():
                raise Stopped
            base, deltas, round_bytes = snapshot(theta), [], 0
            for hotkey, trainer, feedback in zip(hotkeys, trainers, feedbacks):
                trainer.start_from(theta)
                pages = book.assignment(hotkey, round_)
                train(
                    trainer,
                    book,
                    Plan(round_, pages, round_seed(recipe.run.seed + seed, hotkey, round_), math.inf),
                )
                trainer.copy_into(trained)
                meta = {"hotkey": hotkey, "round": round_, "tokens": 0}
                _, payload, sent = feedback.send(
                    pseudo_gradient(base, trained), recipe.compression.codec, meta, shapes
                )
                round_bytes += len(payload)
                deltas.append(sent)
            outer.step(base, aggregate(deltas, recipe.outer.average))
            loss = val_loss()
            curve.append(loss)
            payload_bytes += round_bytes
            if (round_ + 1) % -(-rounds // 10) == 0 and round_ + 1 < rounds:
                echo(
                    f"{run.name}: round {round_ + 1}/{rounds}, loss {loss:.4f}, {time.time() - started:.0f} s"
                )
    except (Stopped, KeyboardInterrupt):
        finished = False
        echo(f"{run.name}: stopped after {len(curve) - 1} of {rounds} rounds")
    parameters = sum(shape.numel() for shape in shapes.values())
    return RoundsResult(
        name=run.name,
        inner_steps=run.inner_steps,
        codec=run.codec,
        seed=seed,
        final_loss=curve[-1],
        bits_per_param=8 * payload_bytes / (max(len(curve) - 1, 1) * len(hotkeys) * parameters),
        seconds=time.time() - started,
        curve=curve,
        finished=finished,
    )


def cmd_rounds(args: argparse.Namespace) -> int:
    """Every planned run with every seed; 1 if SIGTERM or Ctrl-C stopped them, after reporting what ran."""
    base, scale, runs, settings = plan_from_args(args)
    book = PageBook(load_corpus(base.data), base.data, base.run.seed, base.model.context)
    cluster = Cluster.start()
    echo = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else print
    SIGTERM_RECEIVED.clear()
    default_sigterm = signal.signal(signal.SIGTERM, lambda signum, frame: SIGTERM_RECEIVED.set())
    results, means, spreads, complete = [], {}, {}, True
    try:
        for run in runs:
            recipe = derive_recipe(
                base, {"inner.steps": run.inner_steps, "compression.codec": run.codec, **run.overrides}
            )
            losses = []
            for seed in args.seed:
                r = run_rounds(recipe, run, scale, book, cluster, seed, echo)
                results.append(r)
                if not r.finished:
                    raise Stopped
                losses.append(r.final_loss)
                echo(f"{r.name:18s} H={r.inner_steps:<3d} {r.codec:9s} seed {seed}  final loss {r.final_loss:.4f}  "
                     f"{r.bits_per_param:8.4f} bits/param  {r.seconds:.0f} s")  # fmt: skip
            means[run.name] = statistics.fmean(losses)
            spreads[run.name] = statistics.stdev(losses) if len(losses) > 1 else 0.0
            if len(losses) > 1:
                echo(
                    f"{run.name:18s} mean of {len(losses)} seeds: {means[run.name]:.4f} ± {spreads[run.name]:.4f} (sd)"
                )
    except (Stopped, KeyboardInterrupt):  # in a run (after its partial result) or while one was being built
        complete = False
    signal.signal(signal.SIGTERM, default_sigterm)
    report = {"runs": [asdict(r) for r in results], "mean_final_loss": means, "sd_final_loss": spreads}
    report.update(recommended=RECOMMENDED, set=settings)
    if args.json:
        print(json.dumps(report))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "rounds.json").write_text(json.dumps(report, indent=1))
        from distrain.plots import plot_rounds  # matplotlib only where a picture is asked for

        plot_rounds(report["runs"], out / "rounds.png")
        echo(f"rounds.json and rounds.png in {out.resolve()}")
    return 0 if complete else 1


def add_rounds_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rounds",
        help="the round protocol's arithmetic in one process: quick sweeps of codecs and outer steps",
    )
    add_rounds_arguments(parser)
    parser.set_defaults(func=cmd_rounds)


def add_rounds_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help='print one JSON object {"runs": [...]}')
    parser.add_argument(
        "--out",
        default=None,
        help="also write rounds.json and rounds.png (loss against steps) to this folder",
    )
    add_plan_arguments(parser)
    parser.add_argument(
        "--seed",
        type=seed_list,
        default=[0],
        help="shifts every miner's batch seeds (0: a swarm's); a comma-separated list runs each run once "
        "per seed and prints the mean",
    )


def seed_list(text: str) -> list[int]:
    """`--seed`'s value: one integer or several, comma-separated, each at most once."""
    try:
        seeds = [int(item) for item in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got '{text}'") from None
    if len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"a seed appears twice in '{text}'")
    return seeds


def main(argv: list[str] | None = None) -> int:
    """`python -m distrain.bench.rounds ...`: this command alone, importing nothing of the swarm."""
    parser = argparse.ArgumentParser(prog="distrain bench rounds", description=__doc__.splitlines()[0])
    add_rounds_arguments(parser)
    return cmd_rounds(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
