"""A miner killed with SIGKILL mid-round and restarted with the same command resumes from its checkpoint."""

import json
import time

import pytest
from swarm_helpers import kill_in_round_two, small_recipe

from distrain.swarm import Swarm, SwarmOptions

ROUND_SECONDS, ROUNDS = 10.0, 7
# What a submission may be judged without being refused: `wrong_data` is the proof of work on a few
# pages, which can misjudge an honest round; the validator still averages such a delta.
ACCEPTED = (None, "wrong_data")


def committed(member) -> int:
    latest = member.out_dir / "checkpoint" / "latest.json"
    return json.loads(latest.read_text())["round"] if latest.exists() else -1


@pytest.fixture(scope="module")
def restarted(tmp_path_factory):
    recipe = small_recipe(ROUND_SECONDS, inner_steps=8)
    options = SwarmOptions(miners=2, rounds=ROUNDS, out_dir=str(tmp_path_factory.mktemp("miner-restart")))
    swarm = Swarm(recipe, options)
    try:
        swarm.start()
        validator, survivor, victim = swarm.members
        # Let the victim commit round 1, kill it in the middle of round 2, and keep it down until round 3
        # runs: it comes back with θ_2 while the run holds θ_3, and must catch up.
        killed_after = kill_in_round_two(swarm, victim, committed)
        time.sleep(max(0.0, swarm.genesis + 3.1 * ROUND_SECONDS - time.time()))
        swarm.restart(victim)
        swarm.follow()
    finally:
        swarm.processes.stop()
    return validator, survivor, victim, killed_after


def test_it_resumed_from_its_checkpoint(restarted):
    _, _, victim, killed_after = restarted
    assert killed_after in (1, 2)  # it really died mid-run, with rounds still to go
    assert f"resumed after round {killed_after}" in victim.log_path.with_suffix(".restart.txt").read_text()
    before = [e for e in victim.events() if e["resumed_after"] is None]
    after = [e for e in victim.events() if e["resumed_after"] is not None]
    assert after and all(e["resumed_after"] == killed_after for e in after)
    assert after[0]["round"] > killed_after
    # AdamW's step count goes on from the checkpoint rather than from 0.
    last_saved = next(e for e in before if e["round"] == killed_after)
    assert after[0]["optimizer_steps"] == last_saved["optimizer_steps"] + after[0]["inner_steps"]
    assert after[-1]["round"] == ROUNDS - 1


def test_it_caught_up_with_the_run_and_is_accepted_again(restarted):
    validator, survivor, victim, _ = restarted
    after = [e for e in victim.events() if e["resumed_after"] is not None]
    # It came back behind (θ_2 while the run held θ_3 or later): the leading validator's checkpoint
    # brought it back, and from then on its fingerprint is everyone's.
    assert any(e["resynced"] for e in after)
    fingerprints = {e["round"]: e["fingerprint"] for e in survivor.events()}
    assert after[-1]["fingerprint"] == pytest.approx(fingerprints[ROUNDS - 1], rel=1e-5)
    audit = [
        json.loads(line) for line in (validator.out_dir / "state" / "audit.jsonl").read_text().splitlines()
    ]
    last_two = [r for r in audit if r["hotkey"] == victim.hotkey and r["round"] >= ROUNDS - 2]
    assert len(last_two) == 2 and all(r["reason"] in ACCEPTED for r in last_two)
    assert any(r["averaged"] for r in last_two)
    assert all(victim.hotkey not in e["rejected"] for e in survivor.events() if e["round"] >= ROUNDS - 2)
