"""A validator killed with SIGKILL mid-round and restarted ends with the scores of one never killed.

Both judge by rerunning the miners' steps (`validator.proof_of_work: rerun`), the one proof of work with
state of its own (the rerunner's AdamW moments), which the restarted validator must restore."""

import json

import pytest
from swarm_helpers import kill_in_round_two, small_recipe

from distrain.config import derive_recipe
from distrain.swarm import Swarm, SwarmOptions

ROUND_SECONDS = 10.0


def committed(member) -> int:
    state = member.out_dir / "state" / "state.json"
    return json.loads(state.read_text())["round"] if state.exists() else -1


@pytest.fixture(scope="module")
def restarted_swarm(tmp_path_factory):
    recipe = derive_recipe(small_recipe(ROUND_SECONDS, inner_steps=10), {"validator.proof_of_work": "rerun"})
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
    assert a["trust"] and a["trust"] == pytest.approx(b["trust"])  # committed with the scores, both ways


def test_no_round_was_lost_or_counted_twice(restarted_swarm):
    _, victim, _ = restarted_swarm
    audit = [json.loads(line) for line in (victim.out_dir / "state" / "audit.jsonl").read_text().splitlines()]
    per_round = {}
    for record in audit:
        per_round.setdefault(record["round"], []).append(record["hotkey"])
    assert sorted(per_round) == [0, 1, 2, 3, 4]
    assert all(len(hotkeys) == len(set(hotkeys)) for hotkeys in per_round.values())


def test_the_restarted_validator_reruns_as_the_other_one(restarted_swarm):
    """Its reruns start from the AdamW moments it committed: without them its margins differed from
    round 2 on (0.306 against 0.264), where verdicts and scores happened to stay the same."""
    survivor, victim, _ = restarted_swarm
    margins = []
    for member in (survivor, victim):
        audit = (member.out_dir / "state" / "audit.jsonl").read_text().splitlines()
        records = (json.loads(line) for line in audit)
        margins.append({(r["round"], r["hotkey"]): r["rerun_margin"] for r in records if "rerun_margin" in r})
    assert margins[0].keys() == margins[1].keys() and len(margins[0]) == 10  # 2 miners, 5 rounds
    for key, margin in margins[0].items():
        assert margins[1][key] == pytest.approx(margin, rel=1e-6), key
