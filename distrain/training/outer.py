"""The outer step: pseudo-gradients of many miners → one robust average → Nesterov SGD on θ.

Every honest peer runs exactly this code on the same submissions in the same order, so all of them
land on the same θ_{r+1}; the next fingerprint check confirms it.

The average is produced and applied one parameter at a time: besides θ, θ_r and the momentum, only a
couple of tensors of one parameter are ever dense (and a count of int16 with `outer.average: senders`),
however many submissions there are (they stay compressed until their turn).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch
import torch.nn as nn

from distrain.compression import CompressedDelta
from distrain.config import AVERAGES, OuterConfig


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter: θ_r, the base of a round."""
    return {name: param.detach().clone() for name, param in model.named_parameters()}


@torch.no_grad()
def restore(model: nn.Module, theta: Mapping[str, torch.Tensor]) -> None:
    """Set every parameter of `model` to its value in `theta` (a `snapshot`, or θ read from a checkpoint)."""
    for name, param in model.named_parameters():
        param.copy_(theta[name])


@torch.no_grad()
def pseudo_gradient(base: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Δ = θ_r − θ_i: points where an SGD step would go, so the outer optimiser can treat it as a gradient."""
    return {name: (base[name] - param.detach()).float() for name, param in model.named_parameters()}


def aggregate(deltas: Sequence[CompressedDelta], average: str = "all") -> ClippedAverage:
    """Clip each delta to the median global norm, then average (`OuterConfig.average`: over all deltas,
    or per coordinate over the deltas that carry it): one outsized update cannot dominate."""
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
    return ClippedAverage(deltas, senders=average == "senders")


class ClippedAverage(Mapping[str, torch.Tensor]):
    """The average of `aggregate`, computed when a parameter is read, from that parameter of each delta.

    Iterating over `.items()` therefore decodes one parameter of one delta at a time, and keeps
    nothing once the caller lets the average of a parameter go.
    """

    def __init__(self, deltas: Sequence[CompressedDelta], senders: bool = False):
        norms = [delta.norm() for delta in deltas]
        median = float(torch.tensor(norms).median())
        self.deltas, self.senders = deltas, senders
        self.scales = [min(1.0, median / n) if n > 0 else 0.0 for n in norms]

    def __getitem__(self, name: str) -> torch.Tensor:
        first = self.deltas[0][name]
        total = first * self.scales[0]  # not in place: a dense codec's decoded tensor may be its payload's
        count = (first != 0).to(torch.int16) if self.senders else None  # the deltas carrying each value
        for scale, delta in zip(self.scales[1:], self.deltas[1:]):
            values = delta[name]
            total.add_(values, alpha=scale)
            if count is not None:
                count.add_(values != 0)
        return total.div_(len(self.deltas) if count is None else count.clamp_(min=1))

    def __iter__(self) -> Iterator[str]:
        return iter(self.deltas[0])

    def __len__(self) -> int:
        return len(self.deltas[0])


class LeftOut(Mapping[str, torch.Tensor]):
    """The plain average of `aggregate` with one delta's clipped share taken out: the mean of the others.

    Computed per parameter when read, as (n·mean − scale·delta) / (n − 1) from the whole mean and that one
    delta (decoded again on each read), so comparing each of n deltas with the others' average never
    decodes the others again. The clip scales stay those of all n deltas: the median norm is the round's,
    not recomputed without one. `mean` must be `average` read whole.
    """

    def __init__(self, mean: Mapping[str, torch.Tensor], average: ClippedAverage, index: int):
        if average.senders or len(average.deltas) < 2:
            raise ValueError("a delta can be left out of the plain average of two or more deltas only")
        self.mean, self.n = mean, len(average.deltas)
        self.delta, self.scale = average.deltas[index], average.scales[index]

    def __getitem__(self, name: str) -> torch.Tensor:
        return (self.mean[name] * self.n - self.delta[name] * self.scale) / (self.n - 1)

    def __iter__(self) -> Iterator[str]:
        return iter(self.mean)

    def __len__(self) -> int:
        return len(self.mean)


class OuterOptimizer:
    """Nesterov SGD over the model's parameters, fed the averaged pseudo-gradient one parameter at a time.

    The update of `torch.optim.SGD(momentum=m, nesterov=...)`, operation for operation, written per
    parameter so that the average never has to exist whole (`torch.optim` steps all parameters at once,
    from `.grad` tensors that would hold all of it).
    """

    def __init__(self, model: nn.Module, cfg: OuterConfig):
        self.model, self.cfg = model, cfg
        self.buffers: dict[str, torch.Tensor] = {}
        """The momentum of each parameter, from its first step on."""

    @torch.no_grad()
    def step(self, base: dict[str, torch.Tensor], average: Mapping[str, torch.Tensor]) -> None:
        """θ ← θ_r, then one SGD step with the average as gradient: θ_{r+1}. Reads each parameter of
        `average` once, in turn (a `ClippedAverage` computes it then)."""
        self.skip(base)
        params = dict(self.model.named_parameters())
        lr, momentum = self.cfg.lr, self.cfg.momentum
        for name, grad in average.items():
            param = params[name]
            grad = grad.to(param.dtype)
            if momentum:
                buffer = self.buffers.get(name)
                if buffer is None:
                    buffer = self.buffers[name] = grad.clone()
                else:
                    buffer.mul_(momentum).add_(grad)
                grad = grad.add(buffer, alpha=momentum) if self.cfg.nesterov else buffer
            param.add_(grad, alpha=-lr)

    def skip(self, base: dict[str, torch.Tensor]) -> None:
        """No usable submission this round: return to θ_r unchanged."""
        restore(self.model, base)

    def momentum(self) -> dict[str, torch.Tensor]:
        """The Nesterov buffers by parameter name (empty before the first step)."""
        return dict(self.buffers)

    @torch.no_grad()
    def load_momentum(self, buffers: dict[str, torch.Tensor]) -> None:
        self.buffers = {
            name: buffers[name].to(param).clone()
            for name, param in self.model.named_parameters()
            if name in buffers
        }
