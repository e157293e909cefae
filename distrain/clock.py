"""The round clock: which round it is, and when a round starts and ends.

Local runs count wall-clock time since the run's genesis; every peer of a run must agree on the
genesis, which is why a swarm hands it to all of them only once they are all ready.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path


class RoundClock:
    """Round `r` spans `[genesis + r·round_seconds, genesis + (r+1)·round_seconds)`."""

    def __init__(self, genesis: float, round_seconds: float):
        self.genesis, self.round_seconds = genesis, round_seconds

    def round(self, now: float | None = None) -> int:
        return math.floor(((time.time() if now is None else now) - self.genesis) / self.round_seconds)

    def start(self, round_: int) -> float:
        return self.genesis + round_ * self.round_seconds

    def end(self, round_: int) -> float:
        return self.start(round_ + 1)

    @staticmethod
    def sleep_until(moment: float) -> None:
        delay = moment - time.time()
        if delay > 0:
            time.sleep(delay)


def write_genesis(path: Path, genesis: float) -> None:
    """Publish a genesis atomically: readers never see a half-written file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"genesis": genesis}))
    tmp.replace(path)


def wait_for_genesis(path: Path, timeout: float) -> float:
    """Block until `path` holds a genesis (written by `write_genesis`), or raise TimeoutError."""
    deadline = time.time() + timeout
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"no genesis appeared in {path} within {timeout:.0f} s")
        time.sleep(0.1)
    return float(json.loads(path.read_text())["genesis"])
