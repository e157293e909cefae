"""The rerun proof of work: does a delta point where training on the miner's own pages leads?

The loss proof of work (`Validator.loss_proofs`) asks how much more a delta improves the miner's pages than
random pages. A thin payload moves those losses too little to tell: `topk-sign` keeps 4 of every 1024
values, a sign each, and at any bar honest miners and miners training on other pages overlapped
(`THIN_PAYLOADS`). Its direction still says where it came from. A miner's pages and batch seeds
are public (`PageBook.assignment`, `round_seed`), so a validator can train the start of that round itself,
from θ_r, and compare: an honest delta points more along the rerun on the miner's pages than along one
on random pages; a delta trained on other pages points along both alike, as every delta shares the
corpus's general direction.

The rerun is not the miner's delta: the miner's AdamW moments are its own, and its delta went through error
feedback and compression; only the part specific to the pages has to show. The rerunner's AdamW stays warm
instead: each round it trains on the random pages and keeps those moments, and every rerun of that round
starts from the moments it had before (so the two sides of the margin are alike). With 4 honest miners and a
`wrongdata` one in the rounds of `bench rounds` (docs/performance.md, proof of work), this margin separated
them in every round, where the loss margin overlapped; with a fresh AdamW for each rerun they overlapped too.
In swarms it flagged none of 96 honest rounds. The AdamW state is saved with the validator's, so a restarted
validator reruns as one that never stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import statistics
from collections.abc import Mapping

import torch

from distrain.config import Recipe
from distrain.data import PageBook
from distrain.models import build_model
from distrain.training import InnerTrainer
from distrain.training.outer import restore
from distrain.training.plan import round_seed

log = logging.getLogger("distrain.validator")

Delta = Mapping[str, torch.Tensor]
"""A pseudo-gradient by parameter name; a `CompressedDelta` decodes one parameter at a time."""

STATE_PREFIX = "rerun/"
"""Prefix of the rerunner's AdamW state among the validator's saved tensors."""
ADAMW_STATE = ("step", "exp_avg", "exp_avg_sq")
"""What AdamW keeps per parameter: a step count (a scalar) and two moments of the parameter's shape."""

CHANCE_SIGMAS = 10.0
"""A delta points along training at all only if its cosine with the random pages' rerun exceeds this
many 1/√n (n parameters). 1/√n is the standard deviation of a random vector's cosine with any other;
a topk-sign payload's cosine was ~0.1, 60/√n with the default model's 435K parameters."""


class Rerunner:
    """A validator's own inner trainer, which reruns the first `steps` inner steps of a round from θ_r.

    Call `start_round` with the round's base, random pages and secret, then `margin` for each evaluated
    delta. Besides its trainer it holds two model-sized reruns (random pages, a miner's pages) and two
    copies of its AdamW state (at the start of this round, and at the start of the next).
    """

    def __init__(self, recipe: Recipe, book: PageBook, steps: int):
        inner = dataclasses.replace(recipe.inner, steps=steps)
        self.trainer = InnerTrainer(build_model(recipe.model, recipe.run.seed), inner)
        self.shapes = {name: param.shape for name, param in self.trainer.model.named_parameters()}
        self.book, self.run_seed = book, recipe.run.seed
        self.base: Delta = {}
        self.random: dict[str, torch.Tensor] = {}
        self.cold = copy.deepcopy(self.trainer.optimizer.state_dict())
        self.round_start = self.next_round = self.cold

    def start_round(self, base: Delta, random_pages: list[int], secret: bytes) -> None:
        """Rerun from θ_r = `base` on `random_pages`, with batches drawn from the round's `secret`: the
        direction any training takes, which every delta shares. The AdamW state this leaves is the next
        round's start."""
        self.base, self.round_start = base, self.next_round
        seed = int.from_bytes(secret[:8], "little") >> 2  # a non-negative int64, as `round_seed`'s
        self.random = self.rerun(random_pages, seed)
        self.next_round = copy.deepcopy(self.trainer.optimizer.state_dict())
        if not _fits(self.next_round["state"], self.shapes):  # a rerun that diverged
            log.warning("the rerun on random pages left non-finite AdamW moments: the next round starts cold")
            self.next_round = self.cold

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The AdamW state the next round's reruns start from, for the validator's committed state: a
        restarted validator reruns as one that never stopped (`tests/test_validator_restart.py`)."""
        names = list(self.shapes)
        return {
            f"{STATE_PREFIX}{names[index]}/{key}": value.contiguous()
            for index, state in self.next_round["state"].items()
            for key, value in state.items()
        }

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Start from the AdamW state `state_tensors` saved (other keys are ignored). All of it or none:
        a state that does not fit this model, or that AdamW could not step from, leaves the rerunner
        cold, as a new validator's."""
        state = {}
        for index, name in enumerate(self.shapes):
            keys = [f"{STATE_PREFIX}{name}/{key}" for key in ADAMW_STATE]
            if any(key in tensors for key in keys):
                state[index] = {key: tensors.get(full) for key, full in zip(ADAMW_STATE, keys)}
        if state and (len(state) < len(self.shapes) or not _fits(state, self.shapes)):
            log.warning("the saved rerun state does not fit this model: the rerunner starts cold")
            return
        self.next_round = {"state": state, "param_groups": self.cold["param_groups"]}

    def margin(self, delta: Delta, hotkey: str, round_: int) -> float:
        """cos(Δ, rerun on the pages of `hotkey` in `round_`) / cos(Δ, rerun on the random pages) − 1."""
        own = self.rerun(self.book.assignment(hotkey, round_), round_seed(self.run_seed, hotkey, round_))
        return direction_margin(delta, own, self.random)

    def rerun(self, pages: list[int], seed: int) -> dict[str, torch.Tensor]:
        """θ_r minus the replica after `steps` AdamW steps on `pages`, batches from `seed`, from the
        AdamW state of the round's start."""
        model = self.trainer.model
        restore(model, self.base)
        # A copy: loading keeps the tensors it is given, and the steps below update them in place.
        self.trainer.optimizer.load_state_dict(copy.deepcopy(self.round_start))
        self.trainer.train_round(self.book, pages, torch.Generator().manual_seed(seed), math.inf)
        return {
            name: self.base[name] - param.detach().cpu().float() for name, param in model.named_parameters()
        }


def _fits(state: dict[int, dict], shapes: dict[str, torch.Size]) -> bool:
    """Whether per-parameter AdamW `state` (by parameter index) is one AdamW can step from: float
    tensors of the right shapes, finite, a whole step count ≥ 0, a second moment ≥ 0."""
    for index, shape in enumerate(shapes.values()):
        if index not in state:
            continue
        step, first, second = (state[index].get(key) for key in ADAMW_STATE)
        tensors = (step, first, second)
        if any(not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point for t in tensors):
            return False
        if step.shape != torch.Size([]) or first.shape != shape or second.shape != shape:
            return False
        if not all(torch.isfinite(t).all() for t in tensors):
            return False
        if step < 0 or step != step.round() or (second < 0).any():
            return False
    return True


def rerun_verdicts(margins: dict[str, float], floor: float, median_share: float) -> dict[str, bool]:
    """Which of a round's margins pass: each must reach `floor` and `median_share` of the round's median.
    Honest margins grow over a run while a cheater's stay low, so a fixed floor that early rounds need
    passes a cheater later; the median follows the honest majority, and the floor holds where cheaters
    are the majority (or alone)."""
    bar = max(floor, median_share * statistics.median(margins.values())) if margins else floor
    return {hotkey: margin >= bar for hotkey, margin in margins.items()}


def direction_margin(delta: Delta, own: Delta, reference: Delta) -> float:
    """How much closer `delta` points to `own` than to `reference`, as a fraction: cos(delta, own) /
    cos(delta, reference) − 1, decoding `delta` one parameter at a time. A fraction rather than a
    difference of cosines, which would scale with the codec: a payload of 4 values in 1024 has a cosine
    of about 0.1 with any rerun, a dense one several times that.

    −1 where `delta` points along the reference no more than chance would (a zero delta, or random
    values, whose cosine with anything is within a few 1/√n of 0 for n parameters): no bar passes it."""
    dot_own = dot_reference = square = square_own = square_reference = 0.0
    count = 0
    for name, own_tensor in own.items():
        # In float64: a delta of norm ~1e19 would overflow float32's squares.
        value = delta[name].flatten().double()
        mine, ref = own_tensor.flatten().double(), reference[name].flatten().double()
        dot_own += float(value @ mine)
        dot_reference += float(value @ ref)
        square += float(value @ value)
        square_own += float(mine @ mine)
        square_reference += float(ref @ ref)
        count += value.numel()
    scale = math.sqrt(square * square_reference)
    if not math.isfinite(dot_own + dot_reference + square + square_own + square_reference):
        return -1.0
    if scale == 0.0 or square_own == 0.0 or dot_reference / scale <= CHANCE_SIGMAS / math.sqrt(count):
        return -1.0
    return (dot_own / math.sqrt(square_own)) / (dot_reference / math.sqrt(square_reference)) - 1.0
