"""The validator: measure what each submission really does to the loss, and pay for it on chain.

It follows θ exactly as miners do (same gather, same checks, same outer step) and, one round behind
the miners, scores round r while round r+1 runs:
  1. draw held-out pages with a fresh secret: no miner can know them in advance;
  2. loss of θ_r on them, and of θ_r − s·Δ_i for each submission alone (s = `eval_scale`): the
     improvement is Δ_i's score;
  3. EMA of improvements per miner; every `weights_interval` rounds, weights on the chain;
  4. outer step → θ_{r+1}, whose loss on fixed held-out pages is the run's validation loss.
"""

from __future__ import annotations

import copy
import logging
import os

import torch

from distrain.chain import ChainError
from distrain.config import Recipe
from distrain.node import Node, NodeOptions, Submission
from distrain.training import fingerprint
from distrain.training.outer import snapshot
from distrain.validation import ScoreBook

log = logging.getLogger("distrain.validator")


class Validator(Node):
    role = "validator"

    def __init__(self, recipe: Recipe, options: NodeOptions):
        super().__init__(recipe, options)
        self.cfg = recipe.validator
        self.scores = ScoreBook(self.cfg.ema)
        self.val_pages = self.book.validation_pages(self.cfg.val_pages)
        # A scratch copy on which each submission is applied alone, leaving θ_r untouched.
        self.scratch = copy.deepcopy(self.model)

    def run(self) -> None:
        clock = self.start_clock()
        round_ = max(clock.round(), 0)
        self.events.write({"round": round_ - 1, "val_loss": self.loss_on(self.model, self.val_pages)})
        last = self.options.rounds
        while last is None or round_ < last:
            self.run_round(round_, clock)
            round_ += 1

    def run_round(self, round_: int, clock) -> None:
        base, base_fp = snapshot(self.model), fingerprint(self.model)
        clock.sleep_until(clock.end(round_))
        submissions = self.gather(round_, base_fp)
        improvements = self.evaluate(base, submissions)
        self.scores.update(improvements)
        averaged = self.outer_step(base, submissions)
        self.publish_fingerprint(round_ + 1)
        weights = self.maybe_set_weights(round_)
        self.events.write(
            {
                "round": round_,
                "val_loss": self.loss_on(self.model, self.val_pages),
                "averaged": averaged,
                "submissions": {
                    s.hotkey: {
                        "reason": s.reason,
                        "improvement": improvements.get(s.hotkey),
                        "size": s.body.get("size"),
                    }
                    for s in submissions
                },
                "scores": dict(self.scores.scores),
                "weights": weights,
            }
        )

    @torch.no_grad()
    def evaluate(self, base: dict[str, torch.Tensor], submissions: list[Submission]) -> dict[str, float]:
        """Loss improvement of θ_r − s·Δ_i over θ_r on freshly drawn held-out pages; a rejected submission gets 0."""
        pages = self.book.draw_heldout(self.cfg.eval_pages, secret=os.urandom(32))
        self._load(base)
        before = self.loss_on(self.scratch, pages)
        improvements = {}
        for submission in submissions:
            if submission.delta is None:
                improvements[submission.hotkey] = 0.0
                continue
            scale = self.cfg.eval_scale
            self._load({name: base[name] - scale * submission.delta[name] for name in base})
            improvements[submission.hotkey] = before - self.loss_on(self.scratch, pages)
        return improvements

    def _load(self, parameters: dict[str, torch.Tensor]) -> None:
        for name, param in self.scratch.named_parameters():
            param.copy_(parameters[name])

    def maybe_set_weights(self, round_: int) -> dict[str, float] | None:
        """Every `weights_interval` rounds, normalised scores of registered miners go on chain."""
        if (round_ + 1) % self.cfg.weights_interval:
            return None
        metagraph = self.chain.metagraph()
        weights = self.scores.weights(metagraph.hotkeys)
        if not any(weights):
            log.info("round %d: no miner has a positive score yet; weights not set", round_)
            return None
        try:
            self.chain.set_weights(self.keypair, metagraph.uids, weights)
        except ChainError as error:
            log.warning("round %d: weights rejected: %s", round_, error)
            return None
        return {h: w for h, w in zip(metagraph.hotkeys, weights) if w > 0}
