"""A validator killed with SIGKILL mid-round and restarted ends with the scores of one never killed."""

import json
import os
import signal
import time

import pytest

from distrain.config import load_recipe
from distrain.swarm import Swarm, SwarmOptions

ROUND_SECONDS = 10.0


def committed(member) -> int:
    state = member.out_dir / "state" / "state.json"
    return json.loads(state.read_text())["round"] if state.exists() else -1


def wait_for(condition, timeout: float) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def restarted_swarm(tmp_path_factory):
    recipe = load_recipe(
        None,
        {
            "run.round_seconds": str(ROUND_SECONDS),
            "inner.steps": "10",
            "data.max_corpus_mb": "2",
            "data.pages_per_round": "4",
            "validator.assignment_pages": "4",
        },
    )
    options = SwarmOptions(
        miners=2, validators=2, rounds=5, out_dir=str(tmp_path_factory.mktemp("restart")), shared_secret=True
    )
    swarm = Swarm(recipe, options)
    try:
        swarm.start()
        survivor, victim = swarm.members[0], swarm.members[1]
        # Let the victim commit round 1, then kill it in the middle of round 2.
        wait_for(lambda: committed(victim) >= 1, timeout=6 * ROUND_SECONDS)
        time.sleep(max(0.0, swarm.genesis + 2.5 * ROUND_SECONDS - time.time()))
        os.killpg(victim.process.pid, signal.SIGKILL)
        victim.process.wait()
        killed_after = committed(victim)
        swarm.restart(victim)
        swarm.follow()
    finally:
        swarm.processes.stop()
    return survivor, victim, killed_after


def test_restarted_validator_has_the_same_scores(restarted_swarm):
    survivor, victim, killed_after = restarted_swarm
    assert killed_after in (1, 2)  # it really died mid-run, with rounds still to go
    a = json.loads((survivor.out_dir / "state" / "state.json").read_text())
    b = json.loads((victim.out_dir / "state" / "state.json").read_text())
    assert a["round"] == b["round"] == 4
    assert a["scores"].keys() == b["scores"].keys()
    for hotkey, score in a["scores"].items():
        assert b["scores"][hotkey] == pytest.approx(score, rel=1e-6, abs=1e-9)
    assert any(score > 0 for score in a["scores"].values())


def test_no_round_was_lost_or_counted_twice(restarted_swarm):
    _, victim, _ = restarted_swarm
    audit = [json.loads(line) for line in (victim.out_dir / "state" / "audit.jsonl").read_text().splitlines()]
    per_round = {}
    for record in audit:
        per_round.setdefault(record["round"], []).append(record["hotkey"])
    assert sorted(per_round) == [0, 1, 2, 3, 4]
    assert all(len(hotkeys) == len(set(hotkeys)) for hotkeys in per_round.values())
