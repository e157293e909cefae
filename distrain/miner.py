"""The miner: train θ_r on the assigned pages, publish the pseudo-gradient, follow the outer step.

One round, top to bottom:
  1. snapshot θ_r and its fingerprint;
  2. up to H AdamW steps on the pages assigned to (hotkey, r), stopping at the publish deadline;
  3. Δ = θ_r − θ_i, compressed into a safetensors payload, served over P2P, announced (signed) in the DHT;
  4. at the round's end, gather every announced Δ, check, clip to the median norm, average, and take
     the Nesterov outer step → θ_{r+1}; publish its fingerprint.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable

import torch

from distrain.compression import ErrorFeedback, decode_payload, encode_payload, get_codec
from distrain.config import Recipe
from distrain.node import Node, NodeError, NodeOptions
from distrain.training import InnerTrainer, fingerprint, pseudo_gradient
from distrain.training.outer import snapshot

log = logging.getLogger("distrain.miner")

Delta = dict[str, torch.Tensor]


def _freerider(delta: Delta) -> Delta:
    """The simplest cheat: claim a round's reward without training (a zero delta)."""
    return {name: torch.zeros_like(tensor) for name, tensor in delta.items()}


BEHAVIOURS: dict[str, Callable[[Delta], Delta]] = {
    "honest": lambda delta: delta,
    "freerider": _freerider,
}
"""How a miner treats its own pseudo-gradient before publishing it; anything but `honest` is a test cheat."""


class Miner(Node):
    role = "miner"

    def __init__(self, recipe: Recipe, options: NodeOptions, behaviour: str = "honest"):
        if behaviour not in BEHAVIOURS:
            raise NodeError(f"unknown miner behaviour '{behaviour}', expected one of {sorted(BEHAVIOURS)}")
        super().__init__(recipe, options)
        self.behaviour = behaviour
        self._bytes_reported = 0
        self.trainer = InnerTrainer(self.model, recipe.inner)
        get_codec(recipe.compression.codec)  # an unknown codec fails now, not at the first publish
        # What compression dropped this round is added to the next round's delta, so nothing is lost.
        self.feedback = ErrorFeedback(recipe.compression.error_decay)
        # Each miner samples its own windows; seeding by hotkey only makes a run reproducible.
        digest = hashlib.sha256(f"{recipe.run.seed}|{self.hotkey}".encode()).digest()
        self.generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def run(self) -> None:
        clock = self.start_clock()
        round_ = max(clock.round(), 0)
        clock.sleep_until(clock.start(round_))
        last = None if self.options.rounds is None else self.options.rounds
        while last is None or round_ < last:
            self.run_round(round_, clock)
            round_ += 1

    def run_round(self, round_: int, clock) -> None:
        base, base_fp = snapshot(self.model), fingerprint(self.model)
        pages = self.book.assignment(self.hotkey, round_)
        deadline = clock.start(round_) + self.recipe.run.publish_fraction * self.recipe.run.round_seconds
        stats = self.trainer.train_round(self.book, pages, self.generator, deadline)
        delta = BEHAVIOURS[self.behaviour](pseudo_gradient(base, self.model))
        meta = {"hotkey": self.hotkey, "round": round_, "tokens": stats.tokens}
        delta = self.feedback.compensate_all(delta)
        payload = encode_payload(delta, self.recipe.compression.codec, meta)
        self.feedback.update_all(
            decode_payload(payload, self.shapes)[1]
        )  # residual: what peers did not receive
        self.publish_payload(
            round_,
            payload,
            {"codec": self.recipe.compression.codec, "base_fp": base_fp, "tokens": stats.tokens},
        )
        clock.sleep_until(clock.end(round_))
        submissions = self.gather(round_, base_fp)
        averaged = self.outer_step(base, submissions)
        fp = self.publish_fingerprint(round_ + 1)
        self.events.write(
            {
                "round": round_,
                "role": self.behaviour,
                "inner_steps": stats.steps,
                "train_loss": stats.loss,
                "inner_seconds": stats.seconds,
                "tokens": stats.tokens,
                "payload_bytes": len(payload),
                # Uploads since the previous record: a slow peer's fetch may land in the next round's.
                "bytes_sent": self.peer.bytes_served - self._bytes_reported,
                "averaged": averaged,
                "rejected": {s.hotkey: s.reason for s in submissions if s.reason},
                "fingerprint": fp,
            }
        )
        self._bytes_reported = self.peer.bytes_served
        log.info(
            "round %d: %d inner steps, loss %.3f, %d submissions averaged",
            round_,
            stats.steps,
            stats.loss,
            averaged,
        )
