"""The inner loop: AdamW steps on a miner's assigned pages, run through `accelerate`.

The AdamW state lives across rounds (as in DiLoCo): only the parameters are reset to θ_r by the
outer step, the optimiser's moments keep their memory of earlier rounds. Under `accelerate launch`
every process of the miner runs this loop on its own batches (DDP averages their gradients, so the
effective batch is processes × `batch_size`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn

from distrain.config import InnerConfig
from distrain.data import PageBook
from distrain.logs import progress_bar
from distrain.models import causal_lm_loss
from distrain.training.cluster import Cluster


@dataclass
class InnerStats:
    """What one round of inner training did."""

    steps: int
    """Inner steps completed (fewer than asked when the deadline came first)."""
    tokens: int
    """Tokens trained on, by all processes together."""
    loss: float
    """Mean training loss over the steps and processes."""
    seconds: float
    """Wall time spent in inner steps."""


class InnerTrainer:
    """Owns the accelerator, the training replica and the inner AdamW of one miner process.

    `model` is prepared (moved, wrapped by DDP, or sharded by FSDP) and trained in place.
    """

    def __init__(self, model: nn.Module, cfg: InnerConfig, cluster: Cluster | None = None):
        self.cfg = cfg
        self.cluster = cluster or Cluster.start()
        self.accelerator = self.cluster.accelerator
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2)
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)

    def train_round(
        self, book: PageBook, pages: list[int], generator: torch.Generator, deadline: float
    ) -> InnerStats:
        """Up to `cfg.steps` AdamW steps on windows of `pages`; stops early at rank 0's `deadline` (epoch s).

        Collective: every process calls it, each with its own `generator`.
        """
        self.model.train()
        started, losses = time.time(), []
        bar = progress_bar(range(self.cfg.steps), "inner steps", enabled=self.accelerator.is_main_process)
        for _ in bar:
            if self.cluster.decide(time.time() >= deadline):
                break
            batch = book.sample_batch(pages, self.cfg.batch_size, generator).to(self.accelerator.device)
            loss = causal_lm_loss(self.model, batch)
            self.accelerator.backward(loss)
            if self.cfg.grad_clip > 0:
                self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        bar.close()
        return InnerStats(
            steps=len(losses),
            tokens=len(losses) * self.cfg.batch_size * book.context * self.cluster.world_size,
            loss=self.cluster.mean(sum(losses) / max(len(losses), 1)),
            seconds=time.time() - started,
        )

    def start_from(self, theta: nn.Module | None) -> None:
        """Collective: set every replica to rank 0's θ (the other ranks pass None)."""
        self.cluster.scatter_state(self.model, theta.state_dict() if theta is not None else {})

    @torch.no_grad()
    def copy_into(self, theta: nn.Module | None) -> None:
        """Collective: gather the trained replica, whatever its sharding, into rank 0's θ."""
        state = self.cluster.gather_state(self.model)
        if theta is not None:
            theta.load_state_dict(state)

    @property
    def optimizer_steps(self) -> int:
        """AdamW steps since this miner first started: a resumed miner continues its count."""
        state = next(iter(self.optimizer.state.values()), {})
        return int(state.get("step", 0))
