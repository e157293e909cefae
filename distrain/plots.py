"""Pictures a person would rather look at than JSON."""

from __future__ import annotations

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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bytes_label(value: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:g} {unit}"
    return f"{value:g} B"


def plot_convergence(results: list, path: Path) -> None:
    """Validation loss against bytes each miner uploaded (log scale), one line per benchmark run.

    Left of a line is cheaper, below is better: the per-step baseline sits far right, and the
    question each compressed run answers is how far left it moves without rising.
    """
    fig, ax = plt.subplots(figsize=(10, 5.5))
    # Red and black are kept for the recommended runs and the ddp baseline.
    others = iter(plt.cm.tab20([i / 20 for i in range(20) if i not in (6, 7, 14, 15)]))
    for result in results:
        points = [(max(x, 1.0), loss) for x, loss in result.curve[1:]]  # log axis: start after round 1
        style = {"marker": ".", "label": f"{result.name} (H={result.inner_steps}, {result.codec})"}
        style["color"] = next(others)
        if result.name == "ddp":
            style.update(color="black", linestyle="--")
        elif result.name.startswith("recommended"):
            style.update(color=CHEAT, linewidth=2.5, linestyle="-" if result.name == "recommended" else ":")
        ax.plot(*zip(*points), **style)
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
