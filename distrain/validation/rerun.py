"""The rerun proof of work: does a delta point where training on the miner's own pages leads?

The loss proof of work (`Validator.evaluate`) asks how much more a delta improves the miner's pages than
random pages. A thin payload moves those losses too little to tell: `topk-sign` keeps 4 of every 1024
values, a sign each, and at any bar honest miners and miners training on other pages overlapped
(`THIN_PAYLOADS`). Its direction still says where it came from. A miner's pages and batch seeds
are public (`PageBook.assignment`, `round_seed`), so a validator can train the start of that round itself,
from θ_r, and compare: an honest delta points more along the rerun on the miner's pages than along one
on random pages; a delta trained on other pages points along both alike, as every delta shares the
corpus's general direction.

The rerun is not the miner's delta: the miner's AdamW moments are its own, and its delta went through
error feedback and compression; only the part specific to the pages has to show. The rerunner's AdamW
stays warm instead: each round it trains on the random pages and keeps those moments, and every rerun
of that round starts from the moments it had before (so the two sides of the margin are alike). With 4
honest miners and a `wrongdata` one in the rounds of `bench rounds` (README, scoring), this margin
separated them in every round, where the loss margin overlapped; with a fresh AdamW for each rerun
they overlapped too. A restarted validator starts cold and warms up over its next rounds.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from collections.abc import Mapping

import torch

from distrain.config import Recipe
from distrain.data import PageBook
from distrain.models import build_model
from distrain.training import InnerTrainer
from distrain.training.plan import round_seed

log = logging.getLogger("distrain.validator")

Delta = Mapping[str, torch.Tensor]
"""A pseudo-gradient by parameter name; a `CompressedDelta` decodes one parameter at a time."""

STATE_PREFIX = "rerun/"
"""Prefix of the rerunner's moments among the validator's saved tensors."""
ADAMW_MOMENTS = ("step", "exp_avg", "exp_avg_sq")
"""What AdamW keeps per parameter: a step count (a scalar) and two moments of the parameter's shape."""

CHANCE_SIGMAS = 10.0
"""A delta must have a cosine above this many 1/√n with the random pages' rerun to point along training
at all: a random one's is 1/√n at most rarely (one standard deviation); a topk-sign payload's was ~0.1,
some 60/√n with the default model's 435K parameters (more with more)."""


class Rerunner:
    """A validator's own inner trainer, which reruns the first `steps` inner steps of a round from θ_r.

    Call `start_round` with the round's base and random pages, then `margin` for each evaluated delta.
    Besides its trainer it holds two model-sized reruns (random pages, a miner's pages) and two copies
    of its AdamW moments (before and after the round's random rerun).
    """

    def __init__(self, recipe: Recipe, book: PageBook, steps: int):
        inner = dataclasses.replace(recipe.inner, steps=steps)
        self.trainer = InnerTrainer(build_model(recipe.model, recipe.run.seed), inner)
        self.book, self.run_seed = book, recipe.run.seed
        self.base: Delta = {}
        self.random: dict[str, torch.Tensor] = {}
        self.moments = self.warmed = copy.deepcopy(self.trainer.optimizer.state_dict())

    def start_round(self, base: Delta, random_pages: list[int], seed: int) -> None:
        """Rerun from θ_r = `base` on `random_pages` (chosen by the validator's secret), with batches
        drawn from `seed`: the direction any training takes, which every delta shares. The moments this
        leaves are the next round's."""
        self.base, self.moments = base, self.warmed
        self.random = self.rerun(random_pages, seed)
        self.warmed = copy.deepcopy(self.trainer.optimizer.state_dict())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The moments the next round's reruns start from, for the validator's committed state: a
        restarted validator reruns as one that never stopped (`tests/test_validator_restart.py`)."""
        names = [name for name, _ in self.trainer.model.named_parameters()]
        return {
            f"{STATE_PREFIX}{names[index]}/{key}": value.contiguous()
            for index, moments in self.warmed["state"].items()
            for key, value in moments.items()
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Start from the moments `state_tensors` saved (other keys are ignored); ones that do not fit
        this model leave the rerunner cold, as a new validator's."""
        params = list(self.trainer.model.named_parameters())
        state = {}
        for index, (name, param) in enumerate(params):
            moments = {key: tensors.get(f"{STATE_PREFIX}{name}/{key}") for key in ADAMW_MOMENTS}
            if all(value is None for value in moments.values()):
                continue
            if any(
                value is None or not torch.isfinite(value).all() or value.shape != expected
                for value, expected in zip(moments.values(), (torch.Size([]), param.shape, param.shape))
            ):
                log.warning("the saved rerun moments do not fit this model: the rerunner starts cold")
                return
            state[index] = moments
        self.warmed = {"state": state, "param_groups": self.warmed["param_groups"]}

    def margin(self, delta: Delta, hotkey: str, round_: int) -> float:
        """cos(Δ, rerun on the pages of `hotkey` in `round_`) / cos(Δ, rerun on the random pages) − 1."""
        own = self.rerun(self.book.assignment(hotkey, round_), round_seed(self.run_seed, hotkey, round_))
        return direction_margin(delta, own, self.random)

    def rerun(self, pages: list[int], seed: int) -> dict[str, torch.Tensor]:
        """θ_r minus the replica after `steps` AdamW steps on `pages`, batches from `seed`, from the
        moments of the round's start."""
        model = self.trainer.model
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(self.base[name])
        # A copy: loading keeps the tensors it is given, and the steps below update them in place.
        self.trainer.optimizer.load_state_dict(copy.deepcopy(self.moments))
        self.trainer.train_round(self.book, pages, torch.Generator().manual_seed(seed), math.inf)
        return {
            name: self.base[name] - param.detach().cpu().float() for name, param in model.named_parameters()
        }


def direction_margin(delta: Delta, own: Delta, reference: Delta) -> float:
    """How much closer `delta` points to `own` than to `reference`, as a fraction: cos(delta, own) /
    cos(delta, reference) − 1, decoding `delta` one parameter at a time. A fraction rather than a
    difference of cosines, which would scale with the codec: a payload of 4 values in 1024 has a cosine
    of about 0.1 with any rerun, a dense one several times that.

    −1 where `delta` points along the reference no more than chance would (a zero delta, or random
    values, whose cosine with anything is within a few 1/√n of 0 for n parameters): no bar passes it."""
    dot_own = dot_reference = square = square_own = square_reference = 0.0
    count = 0
    for name, own_value in own.items():
        value, own_value, ref = delta[name].flatten().float(), own_value.flatten(), reference[name].flatten()
        dot_own += float(value @ own_value)
        dot_reference += float(value @ ref)
        square += float(value @ value)
        square_own += float(own_value @ own_value)
        square_reference += float(ref @ ref)
        count += value.numel()
    scale = math.sqrt(square * square_reference)
    if scale == 0.0 or square_own == 0.0 or dot_reference / scale <= CHANCE_SIGMAS / math.sqrt(count):
        return -1.0
    return (dot_own / math.sqrt(square_own)) / (dot_reference / math.sqrt(square_reference)) - 1.0
