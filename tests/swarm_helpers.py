"""What the crash-and-restart swarm tests share: a small quick recipe, polling, a kill in mid-round."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from distrain.config import Recipe, load_recipe
from distrain.swarm import Member, Swarm


def small_recipe(round_seconds: float, inner_steps: int) -> Recipe:
    """Rounds CI's 2 cores can keep, with as few pages as the inner steps can digest, so the proof of
    work (own pages improve more than random ones) stays as clear as with the default recipe."""
    return load_recipe(
        None,
        {
            "run.round_seconds": str(round_seconds),
            "inner.steps": str(inner_steps),
            "data.max_corpus_mb": "2",
            "data.pages_per_round": "4",
            "validator.assignment_pages": "4",
        },
    )


def wait_for(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def kill_in_round_two(swarm: Swarm, victim: Member, committed: Callable[[Member], int]) -> int:
    """Let `victim` commit round 1, SIGKILL its process group in the middle of round 2, and return the
    last round it had committed."""
    round_seconds = swarm.recipe.run.round_seconds
    wait_for(lambda: committed(victim) >= 1, timeout=6 * round_seconds)
    time.sleep(max(0.0, swarm.genesis + 2.5 * round_seconds - time.time()))
    os.killpg(victim.process.pid, signal.SIGKILL)
    victim.process.wait()
    return committed(victim)
