"""The miner: train θ_r on the assigned pages, publish the pseudo-gradient, follow the outer step.

One round, top to bottom:
  1. snapshot θ_r and its fingerprint;
  2. up to H AdamW steps on the pages assigned to (hotkey, r), stopping at the publish deadline;
  3. Δ = θ_r − θ_i plus the error-feedback residual, compressed into a safetensors payload, served over
     P2P and announced (signed) in the DHT;
  4. at the round's end: if the leading validator's checkpoint of θ_r disagrees with ours, adopt it;
     gather the round's submissions, check them, and average those of the validator's aggregation set
     (clipped to the median norm) into the Nesterov outer step → θ_{r+1}; publish its fingerprint.
"""

from __future__ import annotations

import hashlib
import logging

import torch

from distrain.adversaries import BEHAVIOURS
from distrain.compression import ErrorFeedback, decode_payload, encode_payload, get_codec
from distrain.config import Recipe
from distrain.network import FetchError
from distrain.node import Node, NodeError, NodeOptions
from distrain.training import InnerTrainer, fingerprint, fingerprints_match, pseudo_gradient
from distrain.training.outer import snapshot
from distrain.training.state import StateError, load_state

log = logging.getLogger("distrain.miner")


class Miner(Node):
    def __init__(self, recipe: Recipe, options: NodeOptions, behaviour: str = "honest"):
        if behaviour not in BEHAVIOURS:
            raise NodeError(f"unknown miner behaviour '{behaviour}', expected one of {sorted(BEHAVIOURS)}")
        get_codec(recipe.compression.codec)  # an unknown codec fails now, not at the first publish
        super().__init__(recipe, options)
        self.behaviour = BEHAVIOURS[behaviour]()
        self.trainer = InnerTrainer(self.model, recipe.inner)
        # What compression dropped this round is added to the next round's delta, so nothing is lost.
        self.feedback = ErrorFeedback(recipe.compression.error_decay)
        # Each miner samples its own windows; seeding by hotkey only makes a run reproducible.
        digest = hashlib.sha256(f"{recipe.run.seed}|{self.hotkey}".encode()).digest()
        self.generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
        self._bytes_reported = 0

    def run(self) -> None:
        self.clock = self.start_clock()
        round_ = max(self.clock.round(), 0)
        self.clock.sleep_until(self.clock.start(round_))
        while self.options.rounds is None or round_ < self.options.rounds:
            self.run_round(round_)
            round_ += 1

    def run_round(self, round_: int) -> None:
        base, base_fp = snapshot(self.model), fingerprint(self.model)
        run = self.recipe.run
        stats = None
        if self.behaviour.trains:
            deadline = self.clock.start(round_) + run.publish_fraction * run.round_seconds
            pages = self.behaviour.pages(self, round_)
            stats = self.trainer.train_round(self.book, pages, self.generator, deadline)
        tokens = stats.tokens if stats else 0
        delta = self.feedback.compensate_all(pseudo_gradient(base, self.model))
        meta = {"hotkey": self.hotkey, "round": round_, "tokens": tokens}
        payload = encode_payload(delta, self.recipe.compression.codec, meta)
        self.feedback.update_all(
            decode_payload(payload, self.shapes)[1]
        )  # residual: what peers did not receive
        published = self.behaviour.delta(self, round_, delta)
        if published is not delta:  # a cheat publishes something else than it trained
            payload = encode_payload(published, self.recipe.compression.codec, meta)
        body = {"codec": self.recipe.compression.codec, "base_fp": base_fp, "tokens": tokens}
        self.behaviour.publish(self, round_, self.behaviour.payload(self, round_, payload), body)

        self.clock.sleep_until(self.clock.end(round_))
        base, base_fp, resynced = self.follow_validator(round_, base, base_fp)
        submissions = self.gather(round_, base_fp)
        record = self.leading_record(round_, "aggregation")
        averaged = self.outer_step(base, submissions, set(record["members"]) if record else None)
        fp = self.publish_fingerprint(round_ + 1)
        self.events.write(
            {
                "round": round_,
                "role": self.behaviour.name,
                "inner_steps": stats.steps if stats else 0,
                "train_loss": stats.loss if stats else None,
                "inner_seconds": stats.seconds if stats else 0.0,
                "tokens": tokens,
                "payload_bytes": len(payload),
                # Uploads since the previous record: a slow peer's fetch may land in the next round's.
                "bytes_sent": self.peer.bytes_served - self._bytes_reported,
                "averaged": len(averaged),
                "resynced": resynced,
                "rejected": {s.hotkey: s.reason for s in submissions if s.reason},
                "fingerprint": fp,
            }
        )
        self._bytes_reported = self.peer.bytes_served
        log.info("round %d: %s, %d submissions averaged", round_, stats or "no training", len(averaged))

    def follow_validator(
        self, round_: int, base: dict, base_fp: list[float]
    ) -> tuple[dict, list[float], bool]:
        """Adopt the leading validator's θ_r (and outer momentum) when our fingerprint disagrees with it.

        A miner that missed a submission, or joined late, would otherwise drift away from the run.
        """
        record = self.leading_record(round_, "checkpoint")
        if record is None or fingerprints_match(record["fp"], base_fp):
            return base, base_fp, False
        try:
            data = self.peer.fetch(
                record["peer_id"], record["sha256"], record["size"], timeout=self.fetch_timeout
            )
            load_state(data, self.model, self.outer)
        except (FetchError, StateError) as error:
            log.warning(
                "round %d: θ differs from the validator's and its checkpoint failed: %s", round_, error
            )
            return base, base_fp, False
        log.warning("round %d: θ differed from the leading validator's; adopted its checkpoint", round_)
        return snapshot(self.model), fingerprint(self.model), True
