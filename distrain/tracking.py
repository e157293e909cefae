"""Experiment tracking: each round's event record, as namespaced metrics, in wandb or TensorBoard.

Nodes already write one record per round to `events.jsonl` (`distrain.node.EventLog`). The tracker is
fed that same dict and only renames its keys (`METRICS`), so the dashboard shows exactly what the event
file holds and nothing is measured twice:

    train/*  loss, steps, optimizer_steps, tokens, tokens_per_s, inner_seconds,
             start_seconds (how far into the round the steps began)                   (miners)
    comm/*   payload_bytes, compression_ratio (fp32 bytes / payload bytes), bytes_sent,
             bytes_received, averaged, resynced, rejected/<reason>                    (both roles)
             exchange_seconds/<part> (follow, gather, outer, checkpoint, fingerprint)  (miners)
             gather_seconds                                                           (validators)
    val/*    loss, submissions, rejected/<reason>, gain/<hotkey>, score/<hotkey>,
             evaluate_seconds (the losses behind scores and the proof of work)      (validators)
    chain/*  round, block, weights_set, weight/<hotkey>, incentive/<hotkey>         (validators)

The step of a metric is `round + 1`: the number of outer steps behind the θ it describes, so the
validator's loss of the initial θ (its record of round −1) sits at step 0.

The trackers are accelerate's own (`accelerate.tracking`), the classes `Accelerator(log_with=...)` builds;
they are used directly because a validator has no Accelerator. They start on the first record, when the
miner's Accelerator already exists, and only on the main process of a multi-process miner. The tracker's
run id is kept in the node's `--out` folder, so a restarted node continues the same run.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelerate.tracking import GeneralTracker

    from distrain.config import TrackingConfig

log = logging.getLogger("distrain.tracking")

WANDB_MODES = ("", "offline", "online", "disabled")
"""Values of `tracking.mode` (empty: `WANDB_MODE`, else offline)."""

RUN_ID_FILE = "tracker-run-id"
"""File in the node's `--out` folder that keeps the tracker run's id across restarts."""


class TrackingError(Exception):
    """A tracker that cannot start (its package is missing); the message is one line for the user."""


# -- event record -> metrics ------------------------------------------------------------------------------


def _scalar(name: str) -> Callable[[Any], dict[str, float]]:
    return lambda value: {} if value is None else {name: float(value)}


def _per_key(prefix: str) -> Callable[[dict | None], dict[str, float]]:
    return lambda values: {f"{prefix}/{key}": float(value) for key, value in (values or {}).items()}


def _reasons(prefix: str) -> Callable[[dict], dict[str, float]]:
    """Rejections counted by reason, from `{hotkey: reason}`."""
    return lambda rejected: {f"{prefix}/{reason}": n for reason, n in Counter(rejected.values()).items()}


def _submissions(submissions: dict[str, dict]) -> dict[str, float]:
    """A validator's `{hotkey: {"reason": ..., "heldout_gain": ...}}`."""
    rejected = {hotkey: s["reason"] for hotkey, s in submissions.items() if s.get("reason")}
    gains = {hotkey: s["heldout_gain"] for hotkey, s in submissions.items() if "heldout_gain" in s}
    return {
        "val/submissions": len(submissions),
        **_reasons("val/rejected")(rejected),
        **_per_key("val/gain")(gains),
    }


def _weights(weights: dict[str, float] | None) -> dict[str, float]:
    """None in a round where no weights went on chain; 0 then makes the gaps visible."""
    return {"chain/weights_set": float(weights is not None), **_per_key("chain/weight")(weights)}


METRICS: dict[str, Callable[[Any], dict[str, float]]] = {
    "round": _scalar("chain/round"),
    # miners
    "train_loss": _scalar("train/loss"),
    "inner_steps": _scalar("train/steps"),
    "optimizer_steps": _scalar("train/optimizer_steps"),
    "tokens": _scalar("train/tokens"),
    "tokens_per_second": _scalar("train/tokens_per_s"),
    "inner_seconds": _scalar("train/inner_seconds"),
    "train_start_seconds": _scalar("train/start_seconds"),
    "payload_bytes": _scalar("comm/payload_bytes"),
    "compression_ratio": _scalar("comm/compression_ratio"),
    "resynced": _scalar("comm/resynced"),
    "rejected": _reasons("comm/rejected"),
    # both roles
    "bytes_sent": _scalar("comm/bytes_sent"),
    "bytes_received": _scalar("comm/bytes_received"),
    "gather_seconds": _scalar("comm/gather_seconds"),
    "exchange_seconds": _per_key("comm/exchange_seconds"),
    "averaged": _scalar("comm/averaged"),
    # validators
    "val_loss": _scalar("val/loss"),
    "evaluate_seconds": _scalar("val/evaluate_seconds"),
    "submissions": _submissions,
    "scores": _per_key("val/score"),
    "trust": _per_key("val/trust"),
    "weights": _weights,
    "block": _scalar("chain/block"),
    "incentive": _per_key("chain/incentive"),
}
"""Event record key -> the metrics it becomes; keys not listed (fingerprints, roles) are not tracked."""


def metrics(record: dict) -> dict[str, float]:
    """The namespaced metrics of one event record."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in METRICS:
            out.update(METRICS[key](value))
    return out


# -- backends -----------------------------------------------------------------------------------------


def _wandb(
    cfg: TrackingConfig, folder: Path, run_id: str, name: str, group: str, config: dict
) -> GeneralTracker:
    import wandb
    from accelerate.tracking import WandBTracker

    return WandBTracker(
        cfg.project,
        id=run_id,
        resume="allow",
        name=name,
        group=group,
        config=config,
        dir=str(folder),
        mode=cfg.mode or os.environ.get("WANDB_MODE") or "offline",
        # The node's own log already goes to a terminal, pm2 or journald: wandb need not copy it.
        settings=wandb.Settings(console="off", quiet=True),
    )


def _tensorboard(
    cfg: TrackingConfig, folder: Path, run_id: str, name: str, group: str, config: dict
) -> GeneralTracker:
    from accelerate.tracking import TensorBoardTracker

    return TensorBoardTracker(run_id, folder / "tensorboard")


@dataclass(frozen=True)
class Backend:
    package: str
    """The module the tracker needs: checked when the node starts, not at its first round."""
    make: Callable[..., GeneralTracker]
    """(cfg, folder, run_id, name, group, config) -> an accelerate tracker, not yet started."""


TRACKERS: dict[str, Backend] = {
    "wandb": Backend("wandb", _wandb),
    "tensorboard": Backend("tensorboard", _tensorboard),
}
"""Values of `tracking.backend` besides `none`."""


class Tracker:
    """One node's tracker run; it starts on the first record, and only on the main process."""

    def __init__(self, tracker: GeneralTracker, run_id: str):
        self.tracker, self.run_id = tracker, run_id
        self.main: bool | None = None
        """Whether this process logs; None until the first record."""

    def log(self, record: dict) -> None:
        if self.main is None:
            from accelerate import PartialState

            # Every rank of a multi-process miner sees the same rounds: one run, not one per GPU.
            self.main = PartialState().is_main_process
            if self.main:
                self.tracker.start()
                log.info("tracking to %s, run %s", self.tracker.name, self.run_id)
        if self.main:
            self.tracker.log(metrics(record), step=record["round"] + 1)

    def close(self) -> None:
        if self.main:
            self.tracker.finish()
        self.main = False


def open_tracker(cfg: TrackingConfig, out_dir: Path, name: str, group: str, config: dict) -> Tracker | None:
    """The tracker `cfg` asks for (None for `none`), continuing the run recorded in `out_dir` if there is one.

    :param name: the run's display name (role and hotkey); its id adds a random suffix
    :param group: the runs of one training run group together (its `run_id`)
    :raises TrackingError: if the backend's package is not installed
    """
    if cfg.backend == "none":
        return None
    backend = TRACKERS[cfg.backend]
    if importlib.util.find_spec(backend.package) is None:
        raise TrackingError(
            f"tracking.backend '{cfg.backend}' needs the {backend.package} package: pip install {backend.package}"
        )
    id_file = out_dir / RUN_ID_FILE
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        run_id = f"{name}-{secrets.token_hex(4)}"
        out_dir.mkdir(parents=True, exist_ok=True)
        id_file.write_text(run_id + "\n")
    folder = Path(cfg.dir) if cfg.dir else out_dir
    folder.mkdir(parents=True, exist_ok=True)
    return Tracker(backend.make(cfg, folder, run_id, name, group, config), run_id)
