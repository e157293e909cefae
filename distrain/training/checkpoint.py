"""A miner's own checkpoint, committed at the end of every round, so that a restart resumes its training.

    OUT/checkpoint/
      round-<r>/           accelerate's `save_state` of every rank: the inner AdamW (sharded under
                           FSDP), the grad scaler, the RNGs; and `global.safetensors`: θ_{r+1}, the
                           outer momentum and the error-feedback residual, from rank 0
      latest.json          the commit point, {"round": r, "folder": "round-<r>"}, replaced atomically

`kill -9` at any moment leaves `latest.json` naming a complete folder, the new one or the previous one;
a folder that a crash left half-written is never named and is overwritten or removed later. The data
position needs no saving: each round's batches are drawn from a seed of (hotkey, round, rank).

Rank 0 writes its part and the commit in a background thread, while the next round trains: at 25M
parameters that is 200 MB flushed to disk each round, which four miners on one machine did at the same
moment, and the steps of the next round waited on it. The thread writes straight from θ, the momentum and
the residual, without a copy of them (12 GB for 1B parameters), so the miner waits for it before it
changes them. A crash before the thread is done resumes from the round before, whose folder is only
removed once the new one is committed.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import safetensors.torch
import torch
import torch.nn as nn

from distrain.compression import ErrorFeedback
from distrain.files import atomic_path, write_atomically
from distrain.training.cluster import Cluster
from distrain.training.outer import OuterOptimizer
from distrain.training.state import load_state, state_tensors

GLOBAL = "global.safetensors"
FEEDBACK = "feedback/"
"""Prefix of the error-feedback residuals among the global state's extra tensors."""


def global_tensors(
    model: nn.Module, outer: OuterOptimizer, feedback: ErrorFeedback
) -> dict[str, torch.Tensor]:
    """Rank 0's part of the checkpoint: θ, the outer momentum and the residual, by their names in
    `global.safetensors`. Views, not copies: they must not change until `MinerCheckpoint.wait` returns."""
    residuals = {FEEDBACK + name: t.contiguous() for name, t in feedback.state_dict().items()}
    return state_tensors(model, outer, residuals)


def load_global(data: bytes, model: nn.Module, outer: OuterOptimizer, feedback: ErrorFeedback) -> None:
    """Restore what `global_tensors` saved."""
    extra = load_state(data, model, outer)
    feedback.load_state_dict(
        {name.removeprefix(FEEDBACK): t for name, t in extra.items() if name.startswith(FEEDBACK)}
    )


class MinerCheckpoint:
    """Save and restore what only this miner knows; every method is collective (call it on every rank)."""

    def __init__(self, folder: Path, cluster: Cluster):
        self.folder, self.cluster = folder, cluster
        self.latest = folder / "latest.json"
        self._commit: threading.Thread | None = None
        self._commit_error: BaseException | None = None
        # The replica's weights are θ_{r+1} by the time a round is saved, and θ is in global.safetensors
        # already: leave them out of accelerate's part (FSDP saves its shards regardless).
        cluster.accelerator.register_save_state_pre_hook(lambda models, weights, folder: weights.clear())
        cluster.accelerator.register_load_state_pre_hook(lambda models, folder: models.clear())
        # accelerate logs every file it writes at INFO: once a round, that would bury the miner's own line.
        logging.getLogger("accelerate").setLevel(logging.WARNING)

    def save(self, round_: int, global_state: dict[str, torch.Tensor] | None) -> None:
        """Commit the state after `round_`; `global_state` is rank 0's (`global_tensors`), None elsewhere.

        Returns once every rank's accelerate state is on disk; rank 0's global state and the commit follow
        in the background, straight from its tensors, which must not change before `wait` returns."""
        self.wait()  # one commit at a time, in order
        self.cluster.barrier()  # and no rank writes the new folder while rank 0 still cleans up
        folder = self.folder / f"round-{round_}"
        self.cluster.accelerator.save_state(str(folder), safe_serialization=True)
        self.cluster.barrier()  # every rank's part is on disk before rank 0 names the folder
        if self.cluster.is_main:
            self._commit = threading.Thread(
                target=self._write_and_commit, args=(round_, folder, global_state), name="checkpoint"
            )
            self._commit.start()

    def wait(self) -> None:
        """Block until the last `save` is committed; raise what its background write raised, if anything."""
        if self._commit is not None:
            self._commit.join()
            self._commit = None
        if self._commit_error is not None:
            error, self._commit_error = self._commit_error, None
            raise error

    def _write_and_commit(self, round_: int, folder: Path, global_state: dict[str, torch.Tensor]) -> None:
        try:
            with atomic_path(folder / GLOBAL) as path:
                safetensors.torch.save_file(global_state, path)  # releases the GIL: the steps go on
            write_atomically(self.latest, json.dumps({"round": round_, "folder": folder.name}))
        except BaseException as error:  # re-raised on the main thread by `wait`
            self._commit_error = error
            return
        for old in self.folder.glob("round-*"):
            number = old.name.removeprefix("round-")
            if number.isdigit() and int(number) < round_:
                shutil.rmtree(old, ignore_errors=True)

    def load(self) -> tuple[int, bytes | None] | None:
        """Restore every rank's inner state from the last commit: (its round, rank 0's global state), or None."""
        latest = None
        if self.cluster.is_main and self.latest.exists():
            latest = json.loads(self.latest.read_text())
        latest = self.cluster.broadcast(latest)  # rank 0's commit decides what every rank loads
        if latest is None:
            return None
        folder = self.folder / latest["folder"]
        self.cluster.accelerator.load_state(str(folder))
        return latest["round"], (folder / GLOBAL).read_bytes() if self.cluster.is_main else None
