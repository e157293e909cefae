"""The round clock: which round it is, and when a round starts and ends.

Local runs count wall-clock time since the run's genesis (``RoundClock``); every peer of a run must agree
on the genesis, which is why a swarm hands it to all of them only once they are all ready. On a Bittensor
network the chain's blocks are the shared clock every peer already agrees on (``BlockClock``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from distrain.files import wait_for_file, write_atomically

BLOCK_SECONDS = 12.0
"""Seconds per block on Bittensor networks."""


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


class BlockClock:
    """Round `r` spans blocks `[r·blocks_per_round, (r+1)·blocks_per_round)` of the chain.

    ``block`` reads the chain's current block (e.g. ``chain.block``), or returns None while the chain cannot
    be read: the clock then runs on its estimate until the chain answers again. Wall times are estimates: the last
    block read is taken to have started when it was read, and each later block ``block_seconds`` after.
    That errs late by under a block, so ``sleep_until`` seldom wakes before the chain gets there; when it
    does (slow blocks), it keeps sleeping until the chain has reached the block it waited for.
    """

    def __init__(
        self, block: Callable[[], int | None], blocks_per_round: int, block_seconds: float = BLOCK_SECONDS
    ):
        if blocks_per_round < 1:
            raise ValueError("blocks_per_round must be at least 1")
        self._read_block = block
        self.blocks_per_round, self.block_seconds = blocks_per_round, block_seconds
        first = block()
        if first is None:
            raise ValueError("the chain's block cannot be read")
        self._anchor_block, self._anchor_time = first, time.time()

    def _sync(self) -> int:
        """Read the chain's block and re-anchor the estimates on it (keep the estimate if it cannot be read)."""
        block = self._read_block()
        if block is None:
            return self._block_at(time.time())
        self._anchor_block, self._anchor_time = block, time.time()
        return block

    def _block_at(self, moment: float) -> int:
        """The block estimated to be current at wall time ``moment``."""
        # Unix times near 1.7e9 s carry ~2e-7 s of rounding: a moment from start() may map back to a
        # hair before its own block, which the slack (a thousandth of a block) absorbs.
        return math.floor(self._anchor_block + (moment - self._anchor_time) / self.block_seconds + 1e-3)

    def round(self, now: float | None = None) -> int:
        """The round at the chain's current block, or the estimated round at wall time ``now``."""
        block = self._sync() if now is None else self._block_at(now)
        return block // self.blocks_per_round

    def start(self, round_: int) -> float:
        """Estimated wall time at which round ``round_``'s first block starts."""
        return self._anchor_time + (round_ * self.blocks_per_round - self._anchor_block) * self.block_seconds

    def end(self, round_: int) -> float:
        return self.start(round_ + 1)

    def sleep_until(self, moment: float) -> None:
        """Sleep until wall time ``moment`` and until the chain has reached the block estimated for it."""
        target = self._block_at(moment)
        RoundClock.sleep_until(moment)
        while (block := self._sync()) < target:
            time.sleep((target - block) * self.block_seconds)


def write_genesis(path: Path, genesis: float) -> None:
    """Publish a genesis atomically: readers never see a half-written file."""
    write_atomically(path, json.dumps({"genesis": genesis}))


def wait_for_genesis(path: Path, timeout: float) -> float:
    """Block until `path` holds a genesis (written by `write_genesis`), or raise TimeoutError."""
    return float(json.loads(wait_for_file(path, timeout))["genesis"])
