"""Checks on submissions, loss evaluation, and scores that become chain weights."""

from distrain.validation.checks import check_announcement, check_delta
from distrain.validation.scoring import ScoreBook

__all__ = ["check_announcement", "check_delta", "ScoreBook"]
