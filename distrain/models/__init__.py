"""Model registry: `build_model(cfg)` makes the same initial network on every peer."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from distrain.config import ModelConfig, RecipeError
from distrain.models.hf import HFCausalLM
from distrain.models.tiny_gpt import TinyGPT

MODELS: dict[str, type[nn.Module]] = {"tiny-gpt": TinyGPT, "transformers": HFCausalLM}


def build_model(cfg: ModelConfig, seed: int) -> nn.Module:
    """A freshly initialised model; the same `seed` gives bit-identical parameters on every peer."""
    if cfg.arch not in MODELS:
        raise RecipeError(f"recipe key 'model.arch' is '{cfg.arch}', expected one of {sorted(MODELS)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS[cfg.arch](cfg)


def causal_lm_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of sequences `tokens` (B, T+1), in nats."""
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tokens[:, 1:].reshape(-1))


@torch.no_grad()
def mean_loss(model: nn.Module, sequences: torch.Tensor, batch_size: int = 64) -> float:
    """`causal_lm_loss` of `model` in eval mode over all `sequences`, in batches on the model's device."""
    model.eval()
    device = next(model.parameters()).device
    total = sum(causal_lm_loss(model, b.to(device)).item() * len(b) for b in sequences.split(batch_size))
    return total / len(sequences)


__all__ = ["MODELS", "build_model", "causal_lm_loss", "mean_loss", "TinyGPT", "HFCausalLM"]
