"""Scores: an exponential moving average of each miner's measured loss improvement, and weights from them.

A miner's score moves toward what the validator itself measured this round — never toward anything
the miner reports — and decays toward zero in rounds where it submitted nothing usable. A score is
keyed by hotkey: when a uid changes hands, the new hotkey starts from zero.
"""

from __future__ import annotations


class ScoreBook:
    """EMA of per-round improvements, keyed by hotkey."""

    def __init__(self, ema: float, scores: dict[str, float] | None = None):
        self.ema = ema
        self.scores: dict[str, float] = dict(scores or {})

    def update(self, gains: dict[str, float], registered: list[str], skipped: set[str] = frozenset()) -> None:
        """Blend this round's gains in (negative counts as zero); registered hotkeys absent from `gains`
        decay, hotkeys in `skipped` (not sampled this round) keep their score, unregistered ones are dropped."""
        self.scores = {h: s for h, s in self.scores.items() if h in registered}
        for hotkey in registered:
            if hotkey in skipped:
                continue
            gain = max(0.0, gains.get(hotkey, 0.0))
            self.scores[hotkey] = (1 - self.ema) * self.scores.get(hotkey, 0.0) + self.ema * gain

    def weights(
        self, hotkeys: list[str], cap: float = 1.0, burn: float = 0.0, burn_index: int = 0
    ) -> list[float]:
        """Normalised weights for `hotkeys`: no miner above `cap`, a `burn` share to `hotkeys[burn_index]`.

        All zero when nobody earned anything (and nothing is burned then either).
        """
        raw = [self.scores.get(h, 0.0) for h in hotkeys]
        if sum(raw) <= 0:
            return [0.0] * len(hotkeys)
        weights = _cap([r / sum(raw) for r in raw], cap)
        weights = [(1 - burn) * w for w in weights]
        weights[burn_index] += burn
        return weights


def _cap(weights: list[float], cap: float) -> list[float]:
    """Clip to `cap` and hand the excess to the uncapped in proportion, until nothing exceeds it."""
    weights = list(weights)
    for _ in range(len(weights)):
        over = [i for i, w in enumerate(weights) if w > cap]
        if not over:
            break
        excess = sum(weights[i] - cap for i in over)
        for i in over:
            weights[i] = cap
        free = [i for i, w in enumerate(weights) if w < cap]
        room = sum(weights[i] for i in free)
        if not free or room <= 0:
            break
        for i in free:
            weights[i] += excess * weights[i] / room
    return weights
