"""Scores: an exponential moving average of each miner's measured loss improvement, and weights from them.

A miner's score moves toward what the validator itself measured this round — never toward anything
the miner reports — and decays toward zero in rounds where it submitted nothing usable. A score is
keyed by hotkey: when a uid changes hands, the new hotkey starts from zero.

Its weight is its score times its trust: a longer moving average of its proof-of-work verdicts. The
proof of work is a statistical test that a miner who trains on other pages still passes now and then,
and a pass late in the score's short memory would otherwise pay as much as an honest round.
"""

from __future__ import annotations


class ScoreBook:
    """EMA of per-round improvements (`ema`), and of proof-of-work verdicts (trust, `trust_ema`), keyed by
    hotkey: the recipe's `validator.ema` and `validator.trust_ema`."""

    def __init__(
        self,
        ema: float,
        trust_ema: float,
        scores: dict[str, float] | None = None,
        trust: dict[str, float] | None = None,
    ):
        self.ema, self.trust_ema = ema, trust_ema
        self.scores: dict[str, float] = dict(scores or {})
        # With trust off (0) the verdicts never move it from 1; a state saved with it on is dropped here.
        self.trust: dict[str, float] = dict(trust or {}) if trust_ema > 0 else {}

    def update(
        self,
        gains: dict[str, float],
        registered: list[str],
        skipped: set[str] = frozenset(),
        verdicts: dict[str, bool] | None = None,
    ) -> None:
        """Blend this round's gains in (negative counts as zero); registered hotkeys absent from `gains`
        decay, hotkeys in `skipped` (not sampled this round) keep their score, unregistered ones are dropped.
        `verdicts` says, for each miner whose proof of work was judged this round, whether it passed."""
        self.scores = {h: s for h, s in self.scores.items() if h in registered}
        self.trust = {h: t for h, t in self.trust.items() if h in registered}
        for hotkey in registered:
            if hotkey in skipped:
                continue
            gain = max(0.0, gains.get(hotkey, 0.0))
            self.scores[hotkey] = (1 - self.ema) * self.scores.get(hotkey, 0.0) + self.ema * gain
        for hotkey, passed in (verdicts or {}).items():
            if hotkey in registered:
                self.trust[hotkey] = (1 - self.trust_ema) * self.trust_of(hotkey) + self.trust_ema * passed

    def trust_of(self, hotkey: str) -> float:
        """`hotkey`'s trust: 1 until its proof of work is first judged."""
        return self.trust.get(hotkey, 1.0)

    def weights(
        self, hotkeys: list[str], cap: float = 1.0, burn: float = 0.0, burn_index: int = 0
    ) -> list[float]:
        """Normalised weights for `hotkeys` from score × trust: no miner above `cap`, a `burn` share to
        `hotkeys[burn_index]`.

        All zero when nobody earned anything (and nothing is burned then either).
        """
        raw = [self.scores.get(h, 0.0) * self.trust_of(h) for h in hotkeys]
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
