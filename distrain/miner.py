"""The miner: train θ_r on the assigned pages, publish the pseudo-gradient, follow the outer step.

One round, top to bottom:
  1. snapshot θ_r and its fingerprint;
  2. up to H AdamW steps on the pages assigned to (hotkey, r), stopping at the publish deadline;
  3. Δ = θ_r − θ_i plus the error-feedback residual, compressed into a safetensors payload, served over
     P2P and announced (signed) in the DHT;
  4. at the round's end: if the leading validator's checkpoint of θ_r disagrees with ours, adopt it;
     gather the round's submissions, check them, and average those of the validator's aggregation set
     (clipped to the median norm) into the Nesterov outer step → θ_{r+1}; publish its fingerprint;
  5. hand θ_{r+1} to every training process and commit the miner's checkpoint (see
     `distrain.training.checkpoint`), from which a restarted miner resumes.

A miner may be several processes (`accelerate launch`, DDP or FSDP): every one trains, on its own
windows of the same pages, and only the main one is a `Miner`; the others are `Worker`s that follow
its plan through the collectives of `distrain.training.cluster`. A single process is the same code.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from distrain.adversaries import BEHAVIOURS
from distrain.compression import ErrorFeedback, encode_payload, get_codec
from distrain.config import Recipe
from distrain.data import PageBook, load_corpus
from distrain.models import build_model
from distrain.network import FetchError
from distrain.node import Node, NodeError, NodeOptions, Stopwatch
from distrain.training import InnerTrainer, fingerprint, fingerprints_match, pseudo_gradient
from distrain.training.checkpoint import MinerCheckpoint, global_tensors, load_global
from distrain.training.cluster import Cluster
from distrain.training.outer import snapshot
from distrain.training.plan import Plan, round_seed, train
from distrain.training.state import StateError, load_state

JUDGED_POLL_SECONDS = 0.25
"""How often a miner at the end of a finite run looks for the validator's guidance."""

log = logging.getLogger("distrain.miner")


def start_miner(recipe: Recipe, options: NodeOptions, behaviour: str = "honest") -> Miner | Worker:
    """This process's part of a miner: the whole `Miner` on rank 0, a training `Worker` on the others."""
    # The other ranks wait in a collective while rank 0 publishes, gathers and waits for a round.
    cluster = Cluster.start(idle_seconds=max(1800.0, 4 * recipe.run.round_seconds))
    if cluster.is_main:
        return Miner(recipe, options, behaviour, cluster)
    return Worker(recipe, options, cluster)


class Miner(Node):
    def __init__(
        self, recipe: Recipe, options: NodeOptions, behaviour: str = "honest", cluster: Cluster | None = None
    ):
        if behaviour not in BEHAVIOURS:
            raise NodeError(f"unknown miner behaviour '{behaviour}', expected one of {sorted(BEHAVIOURS)}")
        get_codec(recipe.compression.codec)  # an unknown codec fails now, not at the first publish
        self.cluster = cluster or Cluster.start()
        super().__init__(recipe, options)
        self.behaviour = BEHAVIOURS[behaviour]()
        # θ (`self.model`) stays on the CPU, untouched by the inner steps; the replica trains.
        self.trainer = InnerTrainer(build_model(recipe.model, recipe.run.seed), recipe.inner, self.cluster)
        # What compression dropped this round is added to the next round's delta, so nothing is lost.
        self.feedback = ErrorFeedback(recipe.compression.error_decay)
        self.checkpoint = MinerCheckpoint(self.out_dir / "checkpoint", self.cluster)
        self.next_round, self.resumed_after = 0, None
        self._resume()
        self.trainer.start_from(self.model)

    def _resume(self) -> None:
        """Continue from this miner's last checkpoint, if it has one: θ may be behind the run by then,
        which the fingerprint check of the first round (`follow_validator`) repairs."""
        saved = self.checkpoint.load()
        if saved is None:
            return
        self.resumed_after, state = saved
        load_global(state, self.model, self.outer, self.feedback)
        self.next_round = self.resumed_after + 1
        log.info(
            "resumed after round %d from %s (%d AdamW steps so far)",
            self.resumed_after,
            self.checkpoint.folder,
            self.trainer.optimizer_steps,
        )

    def run(self) -> None:
        self.clock = self.start_clock()
        round_ = max(self.clock.round(), self.next_round)
        self.clock.sleep_until(self.clock.start(round_))
        fp = None
        while self.options.rounds is None or round_ < self.options.rounds:
            fp = self.run_round(round_, fp)
            round_ += 1
        self.serve_until_judged(round_)
        self.cluster.broadcast(None)  # no plan: the other processes stop
        self.cluster.finish()

    def run_round(self, round_: int, base_fp: list[float] | None = None) -> list[float]:
        """One round; `base_fp` is θ_round's fingerprint when the last round published it (nothing
        changes θ in between), and the fingerprint of θ_{round+1} is returned for the next."""
        base = snapshot(self.model)
        if base_fp is None:
            base_fp = fingerprint(self.model)
        run = self.recipe.run
        plan = Plan(
            round=round_,
            pages=self.behaviour.pages(self, round_) if self.behaviour.trains else None,
            seed=round_seed(self.recipe.run.seed, self.hotkey, round_),
            deadline=self.clock.start(round_) + run.publish_fraction * run.round_seconds,
        )
        train_start = time.time() - self.clock.start(round_)  # the last round's exchange ran until now
        stats = train(self.trainer, self.book, self.cluster.broadcast(plan))
        self.checkpoint.wait()  # its background write reads θ, the momentum and the residual, changed below
        self.trainer.copy_into(self.model)  # θ_i, for the pseudo-gradient; reset by the outer step
        tokens = stats.tokens if stats else 0
        meta = {"hotkey": self.hotkey, "round": round_, "tokens": tokens}
        delta, payload, _ = self.feedback.send(
            pseudo_gradient(base, self.model), self.recipe.compression.codec, meta, self.shapes
        )
        published = self.behaviour.delta(self, round_, delta)
        if published is not delta:  # a cheat publishes something else than it trained
            payload = encode_payload(published, self.recipe.compression.codec, meta)
        body = {"codec": self.recipe.compression.codec, "base_fp": base_fp, "tokens": tokens}
        self.behaviour.publish(self, round_, self.behaviour.payload(self, round_, payload), body)

        # The exchange: it delays the next round's steps, so each part of it is timed.
        self.clock.sleep_until(self.clock.end(round_))
        exchange = Stopwatch()
        with exchange("follow"):
            base, base_fp, resynced = self.follow_validator(round_, base, base_fp)
        with exchange("gather"):
            submissions = self.gather(round_, base_fp)
        with exchange("outer"):
            record = self.leading_record(round_, "aggregation")
            averaged = self.outer_step(base, submissions, set(record["members"]) if record else None)
            self.trainer.start_from(self.model)
        with exchange("checkpoint"):
            self.checkpoint.save(round_, global_tensors(self.model, self.outer, self.feedback))
        with exchange("fingerprint"):
            fp = self.publish_fingerprint(round_ + 1)
        self.events.write(
            {
                "round": round_,
                "role": self.behaviour.name,
                "world_size": self.cluster.world_size,
                "optimizer_steps": self.trainer.optimizer_steps,
                "resumed_after": self.resumed_after,
                "inner_steps": stats.steps if stats else 0,
                "train_loss": stats.loss if stats else None,
                "inner_seconds": stats.seconds if stats else 0.0,
                "train_start_seconds": train_start,
                "tokens": tokens,
                "tokens_per_second": tokens / stats.seconds if stats and stats.seconds else 0.0,
                "payload_bytes": len(payload),
                "compression_ratio": 4 * sum(t.numel() for t in delta.values()) / len(payload),
                **self.traffic(),
                "exchange_seconds": exchange.seconds,
                "averaged": len(averaged),
                "resynced": resynced,
                "rejected": {s.hotkey: s.reason for s in submissions if s.reason},
                "fingerprint": fp,
            }
        )
        return fp

    def close(self) -> None:
        try:
            self.checkpoint.wait()  # the last round's commit may still be being written
        finally:
            super().close()

    def serve_until_judged(self, next_round: int) -> None:
        """At the end of a finite run, keep serving the last payload until the leading validator has
        published its guidance for `next_round` (it has fetched and judged the last round), or for one
        round at most. Leaving at once raced the validator's fetches: in one swarm of seven, it found
        three of five miners gone (`unreachable`), and its last θ averaged two deltas where the miners'
        averaged five."""
        deadline = self.clock.end(next_round)
        while time.time() < deadline and self.leading_record(next_round, "checkpoint") is None:
            time.sleep(JUDGED_POLL_SECONDS)

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


class Worker:
    """A miner process other than rank 0: no keys, no peer, no chain; it trains what rank 0 plans."""

    def __init__(self, recipe: Recipe, options: NodeOptions, cluster: Cluster):
        self.cluster = cluster
        self.book = PageBook(load_corpus(recipe.data), recipe.data, recipe.run.seed, recipe.model.context)
        self.trainer = InnerTrainer(build_model(recipe.model, recipe.run.seed), recipe.inner, cluster)
        self.checkpoint = MinerCheckpoint(Path(options.out_dir) / "checkpoint", cluster)
        self.checkpoint.load()
        self.trainer.start_from(None)

    def run(self) -> None:
        # The collectives of `Miner.run_round`, in its order.
        while (plan := self.cluster.broadcast(None)) is not None:
            train(self.trainer, self.book, plan)
            self.trainer.copy_into(None)
            self.trainer.start_from(None)
            self.checkpoint.save(plan.round, None)
        self.cluster.finish()

    def close(self) -> None:
        """Nothing to release: the network lives in rank 0."""
