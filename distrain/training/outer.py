"""The outer step: pseudo-gradients of many miners → one robust average → Nesterov SGD on θ.

Every honest peer runs exactly this code on the same submissions in the same order, so all of them
land on the same θ_{r+1}; the next fingerprint check confirms it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from distrain.config import OuterConfig


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter: θ_r, the base of a round."""
    return {name: param.detach().clone() for name, param in model.named_parameters()}


@torch.no_grad()
def pseudo_gradient(base: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Δ = θ_r − θ_i: points where an SGD step would go, so the outer optimiser can treat it as a gradient."""
    return {name: (base[name] - param.detach()).float() for name, param in model.named_parameters()}


def global_norm(delta: dict[str, torch.Tensor]) -> float:
    return float(torch.sqrt(sum((t.float() ** 2).sum() for t in delta.values())))


@torch.no_grad()
def aggregate(deltas: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Clip each delta to the median global norm, then average: one outsized update cannot dominate."""
    norms = [global_norm(d) for d in deltas]
    median = float(torch.tensor(norms).median())
    scales = [min(1.0, median / n) if n > 0 else 0.0 for n in norms]
    return {
        name: sum(scale * delta[name] for scale, delta in zip(scales, deltas)) / len(deltas)
        for name in deltas[0]
    }


class OuterOptimizer:
    """Nesterov SGD over the model's parameters, fed with the averaged pseudo-gradient."""

    def __init__(self, model: nn.Module, cfg: OuterConfig):
        self.model = model
        self.optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov
        )

    @torch.no_grad()
    def step(self, base: dict[str, torch.Tensor], average: dict[str, torch.Tensor]) -> None:
        """θ ← θ_r, then one SGD step with the average as gradient: θ_{r+1}."""
        for name, param in self.model.named_parameters():
            param.copy_(base[name])
            param.grad = average[name].to(param.dtype).clone()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def skip(self, base: dict[str, torch.Tensor]) -> None:
        """No usable submission this round: return to θ_r unchanged."""
        for name, param in self.model.named_parameters():
            param.copy_(base[name])

    def momentum(self) -> dict[str, torch.Tensor]:
        """The Nesterov buffers by parameter name (empty before the first step)."""
        return {
            name: self.optimizer.state[param]["momentum_buffer"]
            for name, param in self.model.named_parameters()
            if "momentum_buffer" in self.optimizer.state.get(param, {})
        }

    @torch.no_grad()
    def load_momentum(self, buffers: dict[str, torch.Tensor]) -> None:
        for name, param in self.model.named_parameters():
            if name in buffers:
                self.optimizer.state[param]["momentum_buffer"] = buffers[name].to(param).clone()
            else:
                self.optimizer.state.pop(param, None)
