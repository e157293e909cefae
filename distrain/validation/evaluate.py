"""Loss measurements of one submission at a time, on a scratch copy of the model.

Two questions per submission:
- **Does it help on data nobody could train on?** Loss of θ_r minus loss of θ_r − s·Δ on held-out pages
  drawn from a secret seed. This is the score.
- **Was it trained on the pages it was assigned?** A miner that trained on its own pages improves them
  much more than random training pages: the margin between the two is a proof of work that a miner
  training on other data (or copying) cannot fake.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
import torch.nn as nn

from distrain.data import PageBook
from distrain.models import mean_loss

Delta = Mapping[str, torch.Tensor]
"""Tensors by parameter name; a `CompressedDelta` decodes one parameter at a time."""


def evaluation_device() -> torch.device:
    """Where losses are measured: the GPU when there is one, as miners train there. A validator's round is
    dozens of page evaluations; on a CPU they took 0.5 s a page at 25M parameters, longer than training."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Evaluator:
    """Evaluates θ_r − s·Δ without touching the live model, on a scratch copy on the `evaluation_device`;
    θ and the deltas stay on the CPU and each evaluation copies them over one parameter at a time."""

    def __init__(self, model: nn.Module, book: PageBook, batch_size: int = 64):
        self.scratch = copy.deepcopy(model).to(evaluation_device())
        self.book, self.batch_size = book, batch_size

    def loss(self, model: nn.Module, pages: list[int]) -> float:
        """Mean next-token loss of `model` on the evaluation windows of `pages`."""
        self.scratch.load_state_dict(model.state_dict())
        return self._scratch_loss(pages)

    @torch.no_grad()
    def loss_at(self, base: Delta, pages: list[int], delta: Delta | None = None, scale: float = 1.0) -> float:
        """Loss of θ_r − scale·Δ (θ_r itself without a delta) on `pages`."""
        for name, param in self.scratch.named_parameters():
            param.copy_(base[name] if delta is None else base[name] - scale * delta[name])
        return self._scratch_loss(pages)

    def _scratch_loss(self, pages: list[int]) -> float:
        return mean_loss(self.scratch, self.book.sequences(pages), self.batch_size)
