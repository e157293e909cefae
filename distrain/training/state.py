"""The global training state — θ and the outer momentum — as safetensors bytes.

Validators serve it to peers that drifted or joined late and keep it on disk to survive a crash.
Bytes that come from the network are validated (names, shapes, finiteness) before they touch a model.
"""

from __future__ import annotations

import safetensors.torch
import torch
import torch.nn as nn

from distrain.compression.wire import safetensors_bytes
from distrain.training.outer import OuterOptimizer, restore

THETA, MOMENTUM = "theta/", "momentum/"


class StateError(Exception):
    """A state blob that cannot be loaded; `reason` is a short code."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def state_tensors(
    model: nn.Module, outer: OuterOptimizer, extra: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """θ, the outer momentum and any `extra` tensors under their names in a state blob: views, not copies."""
    tensors = {THETA + name: param.detach().contiguous() for name, param in model.named_parameters()}
    tensors.update({MOMENTUM + name: buffer.contiguous() for name, buffer in outer.momentum().items()})
    tensors.update(extra or {})
    return tensors


def encode_state(
    model: nn.Module, outer: OuterOptimizer, extra: dict[str, torch.Tensor] | None = None
) -> bytes:
    """θ, the outer momentum and any `extra` tensors, in one safetensors blob."""
    return safetensors_bytes(state_tensors(model, outer, extra))


def decode_state(data: bytes, model: nn.Module) -> tuple[dict, dict, dict]:
    """Split and validate a state blob: (θ, momentum, extra), or raise StateError."""
    try:
        tensors = safetensors.torch.load(data)
    except Exception:  # safetensors raises several types on garbage; all mean the same here
        raise StateError("undecodable") from None
    shapes = {name: param.shape for name, param in model.named_parameters()}
    theta = {k[len(THETA) :]: v for k, v in tensors.items() if k.startswith(THETA)}
    momentum = {k[len(MOMENTUM) :]: v for k, v in tensors.items() if k.startswith(MOMENTUM)}
    extra = {k: v for k, v in tensors.items() if not k.startswith((THETA, MOMENTUM))}
    if set(theta) != set(shapes) or not set(momentum) <= set(shapes):
        raise StateError("malformed")
    for group in (theta, momentum):
        for name, tensor in group.items():
            if tensor.shape != shapes[name] or not tensor.dtype.is_floating_point:
                raise StateError("malformed")
            if not torch.isfinite(tensor).all():
                raise StateError("non_finite")
    return theta, momentum, extra


@torch.no_grad()
def load_state(data: bytes, model: nn.Module, outer: OuterOptimizer) -> dict[str, torch.Tensor]:
    """Replace θ and the outer momentum with those of `data`; return its extra tensors."""
    theta, momentum, extra = decode_state(data, model)
    restore(model, theta)
    outer.load_momentum(momentum)
    return extra
