"""A validator's state on disk, committed atomically once per round.

`kill -9` at any moment leaves either the previous round's state or the new one, never a mix: the
checkpoint (θ, outer momentum, copy-detection sketches) is written under a new name first, then
`state.json` — the commit point — is atomically replaced to name it. The audit trail is cut back to
the committed round on load, so a round that was evaluated but not committed is evaluated again, once.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from distrain.files import append_jsonl, write_atomically


class ValidatorStore:
    """`state.json` + `checkpoint-<round>.safetensors` + `audit.jsonl` in one folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.state_path = folder / "state.json"
        self.audit_path = folder / "audit.jsonl"

    def commit(self, round_: int, state: dict, checkpoint: bytes) -> None:
        """Persist the state after `round_` was evaluated and θ_{round+1} computed."""
        name = f"checkpoint-{round_}.safetensors"
        write_atomically(self.folder / name, checkpoint)
        write_atomically(self.state_path, json.dumps({**state, "round": round_, "checkpoint": name}).encode())
        for old in self.folder.glob("checkpoint-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def load(self) -> tuple[dict, bytes] | None:
        """The last committed (state, checkpoint bytes), or None for a fresh validator."""
        if not self.state_path.exists():
            return None
        state = json.loads(self.state_path.read_text())
        checkpoint = (self.folder / state["checkpoint"]).read_bytes()
        self._truncate_audit(state["round"])
        return state, checkpoint

    def audit(self, records: list[dict]) -> None:
        append_jsonl(self.audit_path, records)

    def _truncate_audit(self, committed_round: int) -> None:
        if not self.audit_path.exists():
            return
        kept = [
            line for line in self.audit_path.read_text().splitlines() if _round_of(line) <= committed_round
        ]
        write_atomically(self.audit_path, "".join(line + "\n" for line in kept).encode())


def _round_of(line: str) -> float:
    """The round of an audit line; a line torn by a crash mid-write counts as uncommitted."""
    try:
        return json.loads(line)["round"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return float("inf")


def sketches_to_tensors(sketches: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"sketch/{hotkey}": sketch.contiguous() for hotkey, sketch in sketches.items()}


def sketches_from_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key.removeprefix("sketch/"): t for key, t in tensors.items() if key.startswith("sketch/")}
