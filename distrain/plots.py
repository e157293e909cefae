"""Pictures a person would rather look at than JSON."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

HONEST, CHEAT = "tab:blue", "tab:red"


def plot_swarm(summary: dict, validator_events: list[dict], path: Path) -> None:
    """Validation loss per round; each miner's weight as the validator set it; final incentive."""
    fig, (loss_ax, weight_ax, incentive_ax) = plt.subplots(
        1, 3, figsize=(15, 4.5), gridspec_kw={"width_ratios": [1.2, 1.2, 1]}
    )
    rounds = [0] + [r["round"] + 1 for r in summary["rounds"]]
    losses = [summary["initial_val_loss"]] + [r["val_loss"] for r in summary["rounds"]]
    loss_ax.plot(rounds, losses, marker="o", color=HONEST)
    loss_ax.set(
        xlabel="rounds completed", ylabel="validation loss (nats/byte)", title="Shared model, held-out pages"
    )

    miners = summary["miners"]
    for miner in miners:
        points = [
            (e["round"] + 1, e["weights"].get(miner["hotkey"], 0.0))
            for e in validator_events
            if e.get("weights")
        ]
        if points:
            honest = miner["role"] == "honest"
            weight_ax.plot(
                *zip(*points),
                marker="o" if honest else "x",
                linestyle="-" if honest else "--",
                color=None if honest else CHEAT,
                label=f"{miner['name']} ({miner['role']})",
            )
    weight_ax.set(xlabel="rounds completed", ylabel="weight set on chain", title="Per-miner weight")
    if weight_ax.lines:  # no weights were set in a run shorter than `weights_interval`
        weight_ax.legend(fontsize=8)

    colours = [HONEST if m["role"] == "honest" else CHEAT for m in miners]
    incentive_ax.bar([m["name"] for m in miners], [m["incentive"] for m in miners], color=colours)
    incentive_ax.set(ylabel="incentive (share of miner emission)", title="Incentive after the last epoch")
    incentive_ax.tick_params(axis="x", rotation=30)

    for ax in (loss_ax, weight_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (loss_ax, weight_ax, incentive_ax):
        ax.grid(alpha=0.3)
    _save(fig, path)


def plot_validator_scores(series: dict[str, list[tuple[int, float, bool]]], path: Path, title: str) -> None:
    """One line per miner: its score after each round; an x on rounds whose submission was refused.

    `series` maps a miner's label to (round, score, refused) points, as `validation.report.score_series`
    builds them from a validator's audit trail.
    """
    fig, ax = plt.subplots(figsize=(10, 5))
    for label, points in series.items():
        rounds, scores, _ = zip(*points)
        (line,) = ax.plot(rounds, scores, marker=".", label=label)
        refused = [(r, s) for r, s, bad in points if bad]
        if refused:
            ax.scatter(*zip(*refused), marker="x", s=45, color=line.get_color(), zorder=3)
    ax.scatter([], [], marker="x", color="black", label="refused that round")
    ax.set(xlabel="round", ylabel="score (EMA of held-out loss gain)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    # Past a screenful of miners the legend would hide the lines it names.
    if len(series) <= 20:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)


def _save(fig, path: Path) -> None:
    """Write `fig` as a PNG at `path` and free it (figures left open pile up in a long process)."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bytes_label(value: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


def _other_colours() -> Iterator:
    """Colours for benchmark runs other than ddp and the recommended ones, which keep black and red."""
    return itertools.cycle(plt.cm.tab20([i / 20 for i in range(20) if i not in (6, 7, 14, 15)]))


def _run_style(name: str, inner_steps: int, codec: str, others: Iterator) -> dict:
    """How a benchmark run is drawn: ddp dashed black, the recommended preset red (dotted at another
    H), every other run the next of `others`."""
    style = {"label": f"{name} (H={inner_steps}, {codec})", "color": next(others)}
    if name == "ddp":
        style.update(color="black", linestyle="--")
    elif name.startswith("recommended"):
        style.update(color=CHEAT, linewidth=2.5, linestyle="-" if name == "recommended" else ":")
    return style


def plot_convergence(results: list, path: Path) -> None:
    """Validation loss against bytes each miner uploaded (log scale), one line per benchmark run.

    Left of a line is cheaper, below is better: the per-step baseline sits far right, and the
    question each compressed run answers is how far left it moves without rising.
    """
    fig, ax = plt.subplots(figsize=(10, 5.5))
    others = _other_colours()
    for result in results:
        points = [(max(x, 1.0), loss) for x, loss in result.curve[1:]]  # log axis: start after round 1
        style = _run_style(result.name, result.inner_steps, result.codec, others)
        ax.plot(*zip(*points), marker=".", **style)
    ax.set_xscale("log")
    # Decades in B/kB/MB/GB; matplotlib's default also labels minor ticks (2×10⁶, 3×10⁶...) until they overlap.
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: _bytes_label(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(
        xlabel="bytes uploaded per miner (cumulative)",
        ylabel="validation loss (nats/byte)",
        title="Loss against communication: the same model, data and token budget in every run",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)


def _steps_and_losses(run: dict) -> list[tuple[int, float]]:
    """(inner steps per miner, validation loss) after each round of a `bench rounds` run."""
    return [(run["inner_steps"] * i, loss) for i, loss in enumerate(run["curve"]) if i > 0]


def _loss_limits(runs: list[dict]) -> tuple[float, float] | None:
    """The loss axis of `plot_rounds`: the losses from the end of the longest first round on, with a
    margin, so ddp's spiking first one-step rounds do not flatten every curve (lines of shorter rounds
    may then enter from the top). None where fewer than two distinct losses remain to span."""
    longest_round = max((run["inner_steps"] for run in runs), default=0)
    shown = [loss for run in runs for step, loss in _steps_and_losses(run) if step >= longest_round]
    if not shown or max(shown) == min(shown):
        return None
    margin = 0.03 * (max(shown) - min(shown))
    return min(shown) - margin, max(shown) + margin


def plot_rounds(runs: list[dict], path: Path) -> None:
    """Validation loss against inner steps per miner, for `distrain bench rounds`: one line per run and
    seed (the seeds of a run share its colour and label), so runs of different H compare at equal
    tokens and a curve shows where a run gains or loses ground. Each line starts after its first
    round: the initial loss would flatten the rest, and so would ddp's first rounds (`_loss_limits`)."""
    fig, ax = plt.subplots(figsize=(10, 5.5))
    others, styles = _other_colours(), {}
    for run in runs:
        name = run["name"]
        style = styles.get(name) or _run_style(name, run["inner_steps"], run["codec"], others)
        styles[name] = {**style, "label": None}  # later seeds: the same colour, no second legend entry
        ax.plot(*zip(*_steps_and_losses(run)), marker=".", markersize=3, **style)
    limits = _loss_limits(runs)
    if limits:
        ax.set_ylim(*limits)
    ax.set(
        xlabel="inner steps per miner (tokens are proportional)",
        ylabel="validation loss (nats/byte)",
        title="Loss against training: the same model, data and token budget in every run",
    )
    ax.grid(alpha=0.3)
    if ax.lines:  # a report stopped before any run's first round has nothing to name
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    _save(fig, path)
