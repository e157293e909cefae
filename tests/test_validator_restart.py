"""A validator killed with SIGKILL mid-round and restarted ends with the scores of one never killed."""

import json

import pytest
from swarm_helpers import kill_in_round_two, small_recipe

from distrain.swarm import Swarm, SwarmOptions

ROUND_SECONDS = 10.0


def committed(member) -> int:
    state = member.out_dir / "state" / "state.json"
    return json.loads(state.read_text())["round"] if state.exists() else -1


@pytest.fixture(scope="module")
def restarted_swarm(tmp_path_factory):
    recipe = small_recipe(ROUND_SECONDS, inner_steps=10)
    options = SwarmOptions(
        miners=2, validators=2, rounds=5, out_dir=str(tmp_path_factory.mktemp("restart")), shared_secret=True
    )
    swarm = Swarm(recipe, options)
    try:
        swarm.start()
        survivor, victim = swarm.members[0], swarm.members[1]
        killed_after = kill_in_round_two(swarm, victim, committed)
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
