"""What a benchmark of the round protocol runs: its scale, its runs and their miners' hotkeys.

`distrain bench convergence` runs the plan as real swarms, `distrain bench rounds` as the round's
arithmetic in one process; both take the same options (`add_plan_arguments`) and give their runs the
same names, recipes and hotkeys, so a figure from one can be checked against the other. Runs differ
only in how often miners exchange (H, inner steps per round) and how:

    ddp              H = 1, fp32, outer step = plain averaging (lr 1, no momentum): each miner's AdamW
                     step is averaged after every step, the DDP-equivalent of this protocol
    diloco-h{H}      H inner steps, fp32, the recipe's Nesterov outer step (uncompressed DiLoCo)
    diloco-h{H}-avg  the same at the codecs' H with plain averaging, which does better in short runs:
                     the codecs are held to the better of the two
    {codec}          DiLoCo with each compression preset at the codecs' H: the one the recommended
                     preset was measured at (`PRESET_INNER_STEPS`: topk-sign's 16), or --codec-steps.
                     The recommended one is named `recommended`, and `recommended-h{H}` runs it at
                     the largest H as well. Sparse presets run with the outer step they are meant for
                     (plain SGD at `SPARSE_OUTER_LR`: their error feedback stands in for outer momentum)

Every codec runs at the recommended preset's H so that the targets compare it with uncompressed DiLoCo
and templar's configuration at equal H: with the same tokens, every codec measured ended lower at H = 16
than at 24 (docs/performance.md).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

from distrain.compression import CODECS, PRESET_INNER_STEPS, RECOMMENDED, outer_overrides
from distrain.config import Recipe, RecipeError, derive_recipe, load_recipe
from distrain.keys import seeded_hotkey_address

UNCOMPRESSED = "fp32"
PLAIN_AVERAGING = {"outer.lr": 1.0, "outer.momentum": 0.0, "outer.nesterov": False}
KEY_SEED = "bench"
"""Every run's wallets derive from this seed: the same hotkeys, hence the same pages and batches."""


def bench_hotkeys(miners: int) -> list[str]:
    """The hotkeys of a benchmark swarm's miners, in order: a swarm names its miners' wallets miner-0,
    miner-1, ... and derives their keys from `KEY_SEED`."""
    return [seeded_hotkey_address(KEY_SEED, f"miner-{i}") for i in range(miners)]


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
    """Dotted recipe overrides applied before everything else (the model size of the bigger scales)."""


SCALES = {
    "cpu": Scale(miners=2, steps=192, diloco_steps=(12, 24, 48)),
    "mid": Scale(
        miners=2,
        steps=192,
        diloco_steps=(12, 24, 48),
        recipe_overrides=["--model.d_model", "256", "--model.n_layers", "4", "--model.n_heads", "4"],
    ),
    "gpu": Scale(
        miners=4,
        steps=576,
        diloco_steps=(24, 48),
        recipe_overrides=[
            *("--model.d_model", "512", "--model.n_layers", "8", "--model.n_heads", "8"),
            *("--model.context", "256", "--inner.batch_size", "32", "--data.max_corpus_mb", "64"),
            *("--run.max_payload_mb", "128"),  # the fp32 runs' payloads are 97 MiB
        ],
    ),
}
"""`cpu`: the default 435K-parameter model, about ten minutes on 2 cores. `mid`: the same data and tokens with
3.2M parameters, 6× the compute of `cpu` (about 2.3 minutes a run on 2 cores). `gpu`: a 25M-parameter model, 4
miners of 576 steps (36 rounds at the codecs' H of 16, 24 at H = 24), for a machine with a GPU: the settings
of every 25M figure in docs/performance.md. On one H100 a sparse codec's swarm took about 2 minutes; the dense
runs' 97 MiB payloads make their rounds several times longer, and ddp's 576 rounds the longest run."""


@dataclass
class BenchRun:
    """One swarm of the benchmark."""

    name: str
    inner_steps: int
    codec: str
    overrides: dict = field(default_factory=dict)
    """Recipe overrides of this run (its outer step)."""
    fixed: frozenset[str] = frozenset()
    """Keys of `overrides` that define the run, which `--set` leaves alone: the plain averaging of ddp
    and diloco-h{H}-avg (with `--set outer.lr=5` they would be neither, and the codecs' targets are
    checked against them)."""

    def with_settings(self, settings: dict[str, str]) -> BenchRun:
        """This run with `--set` overrides applied after its own, its `fixed` keys excepted."""
        moved = {key: value for key, value in settings.items() if key not in self.fixed}
        return dataclasses.replace(self, overrides={**self.overrides, **moved})


def _plain_averaging(name: str, inner_steps: int) -> BenchRun:
    """An uncompressed run whose outer step, plain averaging, defines it: `--set` cannot move it."""
    return BenchRun(name, inner_steps, UNCOMPRESSED, PLAIN_AVERAGING, frozenset(PLAIN_AVERAGING))


def plan_runs(
    scale: Scale,
    codec_steps: int,
    codecs: list[str],
    only: list[str] | None = None,
) -> list[BenchRun]:
    """ddp, uncompressed DiLoCo at each H (and with plain averaging at the codecs' H), each codec at
    `codec_steps`, the recommended one at the largest H too; of these, the runs named in `only` if it
    is given."""
    runs = [_plain_averaging("ddp", 1)]
    runs += [BenchRun(f"diloco-h{h}", h, UNCOMPRESSED) for h in sorted({*scale.diloco_steps, codec_steps})]
    runs.append(_plain_averaging(f"diloco-h{codec_steps}-avg", codec_steps))
    for codec in codecs:
        if codec != UNCOMPRESSED:
            name = "recommended" if codec == RECOMMENDED else codec
            runs.append(BenchRun(name, codec_steps, codec, outer_overrides(codec)))
    if RECOMMENDED in codecs and max(scale.diloco_steps) > codec_steps:
        longest = max(scale.diloco_steps)
        runs.append(BenchRun(f"recommended-h{longest}", longest, RECOMMENDED, outer_overrides(RECOMMENDED)))
    if only is not None:
        unknown = sorted(set(only) - {run.name for run in runs})
        if unknown:
            planned = ", ".join(run.name for run in runs)
            raise RecipeError(f"--only names runs not in the plan: {unknown}; the plan has: {planned}")
        runs = [run for run in runs if run.name in only]
    for run in runs:
        if scale.steps % run.inner_steps:
            raise RecipeError(f"{run.name}: H={run.inner_steps} does not divide --steps {scale.steps}")
    return runs


PLANNED_KEYS = {
    "inner.steps": "--codec-steps, --diloco-steps",
    "compression.codec": "--codecs",
    "run.run_id": None,
    "run.round_seconds": None,
    "run.publish_fraction": None,
}
"""Recipe keys a benchmark sets for each run (and sizes its rounds by), with the options that move them."""


def settings_from_args(args: argparse.Namespace) -> dict[str, str]:
    """`--set KEY=VALUE` options as recipe overrides; keys in `PLANNED_KEYS` are refused."""
    malformed = [item for item in args.set if "=" not in item]
    if malformed:
        raise RecipeError(f"--set takes KEY=VALUE, got {malformed}")
    settings = dict(item.split("=", 1) for item in args.set)
    for key in sorted(settings.keys() & PLANNED_KEYS.keys()):
        instead = f"; use {PLANNED_KEYS[key]}" if PLANNED_KEYS[key] else ""
        raise RecipeError(f"--set {key}: the benchmark sets it for each run{instead}")
    return settings


def plan_from_args(args: argparse.Namespace) -> tuple[Recipe, Scale, list[BenchRun], dict[str, str]]:
    """The base recipe, the scale, the runs and the `--set` overrides that `add_plan_arguments`' options
    ask for; the overrides apply to the base and to every run after the run's own (`BenchRun.with_settings`)."""
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
    settings = settings_from_args(args)
    base = derive_recipe(load_recipe(args.recipe, scale.recipe_overrides), settings)
    codec_steps = args.codec_steps or PRESET_INNER_STEPS.get(RECOMMENDED, base.inner.steps)
    base = derive_recipe(base, {"inner.steps": codec_steps})
    only = args.only.split(",") if args.only else None
    runs = [run.with_settings(settings) for run in plan_runs(scale, codec_steps, codecs, only=only)]
    return base, scale, runs, settings


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
        help="H of every codec run (default: the H the recommended preset was measured at)",
    )
    parser.add_argument("--only", default=None, help="comma-separated run names to run (default: all)")
    parser.add_argument("--codecs", default=None, help="comma-separated codecs (default: every preset)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override for every run, after the run's own (e.g. outer.lr=5 moves a sparse codec's); "
        "ddp's and diloco-h*-avg's plain averaging stays",
    )
