"""The DiLoCo loop: inner steps on assigned pages, pseudo-gradients, robust averaging, outer step."""

from distrain.training.fingerprint import fingerprint, fingerprints_match
from distrain.training.inner import InnerTrainer
from distrain.training.outer import OuterOptimizer, aggregate, pseudo_gradient

__all__ = [
    "fingerprint",
    "fingerprints_match",
    "InnerTrainer",
    "OuterOptimizer",
    "aggregate",
    "pseudo_gradient",
]
