"""Scores: an exponential moving average of each miner's measured loss improvement.

A miner's score moves toward what the validator itself measured this round — never toward anything
the miner reports — and decays toward zero in rounds where it submitted nothing usable.
"""

from __future__ import annotations


class ScoreBook:
    """EMA of per-round improvements, keyed by hotkey."""

    def __init__(self, ema: float):
        self.ema = ema
        self.scores: dict[str, float] = {}

    def update(self, improvements: dict[str, float]) -> None:
        """Blend this round's improvements in; negative improvements count as zero."""
        for hotkey in set(self.scores) | set(improvements):
            gain = max(0.0, improvements.get(hotkey, 0.0))
            self.scores[hotkey] = (1 - self.ema) * self.scores.get(hotkey, 0.0) + self.ema * gain

    def weights(self, hotkeys: list[str]) -> list[float]:
        """Normalised weights for `hotkeys` (all zero when nobody earned anything)."""
        raw = [self.scores.get(h, 0.0) for h in hotkeys]
        total = sum(raw)
        return [r / total if total > 0 else 0.0 for r in raw]
