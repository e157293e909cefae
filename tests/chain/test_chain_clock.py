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


def test_an_outage_leaves_the_clock_on_its_estimate():
    blocks = Blocks(block=25)
    clock = BlockClock(lambda: blocks(), blocks_per_round=10, block_seconds=0.05)
    blocks.block = None  # the chain stops answering
    assert clock.round() == 2
    started = time.time()
    clock.sleep_until(clock.end(2))  # ends on the estimate instead of waiting for an answer
    assert clock.round() == 3 and time.time() - started < 1.0
    blocks.block = 100  # back, and far ahead: the clock follows the chain again
    assert clock.round() == 10


def test_the_bittensor_backend_clock_counts_blocks_of_the_local_chain(make_chain):
    from distrain.chain import BittensorChain

    local = make_chain(block_seconds=2.0)
    with BittensorChain(path=local.path, netuid=local.netuid) as chain:
        clock = chain.round_clock(round_seconds=20.0)
        assert (clock.blocks_per_round, clock.block_seconds) == (10, 2.0)
        assert clock.round() == chain.block() // 10
