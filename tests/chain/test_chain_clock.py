"""``BlockClock``: rounds from chain blocks, wall times estimated from the block time."""

import time

import pytest

from distrain.clock import BlockClock


class Blocks:
    """A chain whose block the test sets by hand, or which advances with the wall clock when ``live``."""

    def __init__(self, block: int = 0, block_seconds: float | None = None):
        self.block, self.block_seconds, self.genesis = block, block_seconds, time.time()

    def __call__(self) -> int:
        if self.block_seconds is None:
            return self.block
        return self.block + int((time.time() - self.genesis) / self.block_seconds)


def test_rounds_follow_the_chain():
    blocks = Blocks(block=25)
    clock = BlockClock(blocks, blocks_per_round=10)
    assert clock.round() == 2
    blocks.block = 30
    assert clock.round() == 3
    blocks.block = 0
    assert clock.round() == 0


def test_wall_times_are_estimated_from_the_last_block_read():
    clock = BlockClock(Blocks(block=25), blocks_per_round=10, block_seconds=12.0)
    now = time.time()
    # Block 25 was read just now: round 3 starts 5 blocks later, round 2 started 5 blocks ago.
    assert clock.start(3) == pytest.approx(now + 60, abs=1)
    assert clock.start(2) == pytest.approx(now - 60, abs=1)
    assert clock.end(2) == clock.start(3)
    assert clock.round(now=clock.start(3) + 1) == 3
    assert clock.round(now=clock.start(3) - 1) == 2


def test_sleep_until_waits_for_the_chain():
    # Blocks of 20 ms on a chain the clock believes makes one every 5 ms: the estimate is early, so
    # sleep_until must keep waiting until the chain itself reaches round 1 (block 2).
    blocks = Blocks(block_seconds=0.02)
    clock = BlockClock(blocks, blocks_per_round=2, block_seconds=0.005)
    assert clock.round() == 0
    clock.sleep_until(clock.end(0))
    assert blocks() >= 2


def test_blocks_per_round_must_be_positive():
    with pytest.raises(ValueError, match="blocks_per_round"):
        BlockClock(Blocks(), blocks_per_round=0)
