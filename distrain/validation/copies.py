"""Copy and replay detection: submissions that point the same way as another one.

Comparing whole deltas pairwise costs O(n²·params); a **sketch** — the delta's values at a fixed random
set of coordinates — keeps it O(n²·k) with k ≤ 65 536, whatever the model's size, and estimates the
cosine similarity well because copies agree on every coordinate.

Honest miners' deltas do resemble each other (all of them learn the same corpus): on the tiny default
model, pairs reach cosine ≈ 0.87 in the first round and ≈ 0.3–0.6 later. A re-published copy scores
≈ 1.0, so the default threshold is 0.95.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

Delta = Mapping[str, torch.Tensor]
"""A pseudo-gradient by parameter name; a `CompressedDelta` decodes one parameter at a time."""


class Sketcher:
    """Maps a delta to its values at `size` fixed pseudo-random coordinates (the same for every peer)."""

    def __init__(self, shapes: dict[str, torch.Size], size: int = 65_536, seed: int = 0):
        numels = {name: int(torch.Size(shape).numel()) for name, shape in shapes.items()}
        total = sum(numels.values())
        generator = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(total, generator=generator)[: min(size, total)].sort().values
        self.indices: dict[str, torch.Tensor] = {}
        offset = 0
        for name, numel in numels.items():
            inside = chosen[(chosen >= offset) & (chosen < offset + numel)] - offset
            if len(inside):
                self.indices[name] = inside
            offset += numel

    def __call__(self, delta: Delta) -> torch.Tensor:
        return torch.cat([delta[name].flatten()[index].float() for name, index in self.indices.items()])


def similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0, eps=1e-12))


def find_copies(
    sketches: dict[str, torch.Tensor],
    first_seen: dict[str, float],
    previous: dict[str, torch.Tensor],
    threshold: float,
) -> dict[str, str]:
    """Reason codes for copies among this round's submissions.

    - `copy`: as similar as `threshold` to a submission of this round that was seen earlier; the later
      one is the copy (when both were first seen at the same moment, both are flagged: the validator
      cannot tell which came first, and a copy never earns).
    - `replayed`: as similar to any submission of the previous round (its own included).
    """
    reasons: dict[str, str] = {}
    hotkeys = sorted(sketches)
    for i, a in enumerate(hotkeys):
        for b in hotkeys[i + 1 :]:
            if similarity(sketches[a], sketches[b]) >= threshold:
                seen_a, seen_b = first_seen.get(a, float("inf")), first_seen.get(b, float("inf"))
                if seen_a >= seen_b:
                    reasons[a] = "copy"
                if seen_b >= seen_a:
                    reasons[b] = "copy"
    for hotkey, sketch in sketches.items():
        if hotkey not in reasons and any(similarity(sketch, old) >= threshold for old in previous.values()):
            reasons[hotkey] = "replayed"
    return reasons
