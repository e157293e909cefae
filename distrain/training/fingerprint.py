"""Fingerprints: a few fixed random projections of all parameters.

Two peers holding the same θ get the same numbers (up to float noise); peers that drifted apart get
visibly different ones. Cheap to compute and to publish (a handful of floats in a DHT record).
"""

from __future__ import annotations

import torch
import torch.nn as nn

PROJECTIONS = 4


@torch.no_grad()
def fingerprint(model: nn.Module, seed: int = 0) -> list[float]:
    """`PROJECTIONS` numbers: Σ over parameters of ⟨θ, r_k⟩ with fixed Gaussian r_k per parameter."""
    totals = [0.0] * PROJECTIONS
    for index, (_, param) in enumerate(model.named_parameters()):
        flat = param.detach().float().flatten().cpu()
        for k in range(PROJECTIONS):
            generator = torch.Generator().manual_seed(seed * 1_000_003 + index * PROJECTIONS + k)
            totals[k] += float(flat @ torch.randn(flat.numel(), generator=generator))
    return totals


def fingerprints_match(a: list[float], b: list[float], rtol: float = 1e-4) -> bool:
    """True when two fingerprints describe the same parameters up to float tolerance."""
    if len(a) != len(b):
        return False
    scale = max(1.0, max(abs(x) for x in a + b))
    return all(abs(x - y) <= rtol * scale for x, y in zip(a, b))
