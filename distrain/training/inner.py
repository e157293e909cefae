"""The inner loop: AdamW steps on a miner's assigned pages, run through `accelerate`.

The AdamW state lives across rounds (as in DiLoCo): only the parameters are reset to θ_r by the
outer step, the optimiser's moments keep their memory of earlier rounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn as nn
from accelerate import Accelerator

from distrain.config import InnerConfig
from distrain.data import PageBook
from distrain.models import causal_lm_loss


@dataclass
class InnerStats:
    """What one round of inner training did."""

    steps: int
    """Inner steps completed (fewer than asked when the deadline came first)."""
    tokens: int
    """Tokens trained on."""
    loss: float
    """Mean training loss over the steps."""
    seconds: float
    """Wall time spent in inner steps."""


class InnerTrainer:
    """Owns the accelerator and the inner AdamW of one miner."""

    def __init__(self, model: nn.Module, cfg: InnerConfig, accelerator: Accelerator | None = None):
        self.cfg = cfg
        self.accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(cfg.beta1, cfg.beta2)
        )
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)

    def train_round(
        self, book: PageBook, pages: list[int], generator: torch.Generator, deadline: float
    ) -> InnerStats:
        """Up to `cfg.steps` AdamW steps on windows of `pages`; stops early at the `deadline` (epoch s)."""
        self.model.train()
        started, losses = time.time(), []
        for _ in range(self.cfg.steps):
            if time.time() >= deadline:
                break
            batch = book.sample_batch(pages, self.cfg.batch_size, generator).to(self.accelerator.device)
            loss = causal_lm_loss(self.model, batch)
            self.accelerator.backward(loss)
            if self.cfg.grad_clip > 0:
                self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        return InnerStats(
            steps=len(losses),
            tokens=len(losses) * self.cfg.batch_size * book.context,
            loss=sum(losses) / max(len(losses), 1),
            seconds=time.time() - started,
        )
