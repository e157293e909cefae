"""Pictures a person would rather look at than JSON."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_swarm(summary: dict, validator_events: list[dict], names: dict[str, str], path: Path) -> None:
    """Left: the shared model's validation loss per round. Right: each miner's weight as it was set."""
    fig, (loss_ax, weight_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
    rounds = [-1] + [r["round"] for r in summary["rounds"]]
    losses = [summary["initial_val_loss"]] + [r["val_loss"] for r in summary["rounds"]]
    loss_ax.plot([r + 1 for r in rounds], losses, marker="o", color="tab:blue")
    loss_ax.set(xlabel="outer steps (rounds completed)", ylabel="validation loss (nats/byte)",
                title="Shared model on held-out pages")
    loss_ax.grid(alpha=0.3)

    roles = {m["hotkey"]: m["role"] for m in summary["miners"]}
    for hotkey, role in roles.items():
        points = [(e["round"] + 1, (e.get("weights") or {}).get(hotkey, 0.0)) for e in validator_events
                  if e.get("weights") is not None]
        if not points:
            continue
        xs, ys = zip(*points)
        style = {"linestyle": "-", "marker": "o"} if role == "honest" else {"linestyle": "--", "marker": "x", "color": "tab:red"}
        weight_ax.plot(xs, ys, label=f"{names.get(hotkey, hotkey[:8])} ({role})", **style)
    weight_ax.set(xlabel="rounds completed", ylabel="weight set on chain", title="Per-miner weight", ylim=(-0.02, None))
    weight_ax.grid(alpha=0.3)
    weight_ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
