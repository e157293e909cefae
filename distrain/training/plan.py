"""A miner's round as its training processes see it: the pages, the batch seed and the deadline.

Rank 0 of a miner decides the plan and broadcasts it; every rank trains its share of the round from
it. `distrain bench rounds` builds the same plans in one process, so a sweep trains on exactly the
batches a swarm miner would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from distrain.data import PageBook
from distrain.training.inner import InnerStats, InnerTrainer


@dataclass
class Plan:
    """What rank 0 tells every process of the miner at the start of a round."""

    round: int
    pages: list[int] | None
    """Pages to train on; None for a behaviour that does not train."""
    seed: int
    """Seed of the round's batches: rank k draws from `seed + k`, so ranks train different windows."""
    deadline: float
    """Publish deadline (epoch s); rank 0 alone decides when it has passed."""


def train(trainer: InnerTrainer, book: PageBook, plan: Plan) -> InnerStats | None:
    """Collective: this process's share of the round's inner steps."""
    if plan.pages is None:
        return None
    generator = torch.Generator().manual_seed(plan.seed + trainer.cluster.rank)
    return trainer.train_round(book, plan.pages, generator, plan.deadline)


def round_seed(run_seed: int, hotkey: str, round_: int) -> int:
    """The seed of a miner's batches in a round: each miner samples its own windows, and seeding by
    (hotkey, round) makes a run, and a resumed miner, reproducible."""
    digest = hashlib.sha256(f"{run_seed}|{hotkey}|{round_}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 2
