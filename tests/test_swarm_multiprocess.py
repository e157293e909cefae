"""A miner of two processes (`accelerate launch`, DDP over gloo) in a real swarm, beside one-process miners."""

import json
import os
import statistics
import subprocess
import sys
import time

import psutil
import pytest

ROUNDS, STEPS, BATCH, CONTEXT = 4, 8, 16, 64
# What a submission may be judged without being refused: `wrong_data` is the proof of work on a few
# pages, which can misjudge an honest round; the validator still averages such a delta.
ACCEPTED = (None, "wrong_data")
MARKER = "DISTRAIN_TEST_DDP_SWARM"
"""Inherited by every process the swarm starts, down to p2pd: how a leftover is recognised."""


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp-swarm")
    command = [
        sys.executable, "-m", "distrain", "swarm", "--miner-processes", "2",
        "--miners", "3", "--freeriders", "0", "--validators", "1", "--rounds", str(ROUNDS), "--out", str(out),
        # Small and quick, as in test_swarm.py: 2 cores for a validator and 4 training processes.
        "--run.round_seconds", "12", "--inner.steps", str(STEPS), "--validator.weights_interval", "2",
        "--inner.batch_size", str(BATCH), "--model.context", str(CONTEXT), "--data.max_corpus_mb", "2",
        "--data.pages_per_round", "4", "--validator.assignment_pages", "4",
    ]  # fmt: skip
    env = {**os.environ, MARKER: str(out)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def events(out, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / name / "events.jsonl").read_text().splitlines()]


def hotkey(out, name: str) -> str:
    return json.loads((out / name / "ready").read_text())["hotkey"]


def test_both_processes_trained(swarm):
    """Each step of the two-process miner trains twice the sequences of a one-process miner."""
    ddp, single = events(swarm, "miner-0"), events(swarm, "miner-1")
    assert [e["round"] for e in ddp] == list(range(ROUNDS))
    for record in ddp:
        assert record["world_size"] == 2 and record["inner_steps"] > 0
        assert record["tokens"] == 2 * record["inner_steps"] * BATCH * CONTEXT
    assert all(e["world_size"] == 1 and e["tokens"] == e["inner_steps"] * BATCH * CONTEXT for e in single)
    # Rank 0 alone announced (one P2P peer, one `ready`), and its AdamW stepped once per inner step.
    assert ddp[-1]["optimizer_steps"] == sum(e["inner_steps"] for e in ddp)


def test_its_submissions_are_averaged_and_not_rejected(swarm):
    ddp = hotkey(swarm, "miner-0")
    for name in ("miner-1", "miner-2"):
        assert all(ddp not in e["rejected"] for e in events(swarm, name))
    audit = [
        json.loads(line)
        for line in (swarm / "validator-0" / "state" / "audit.jsonl").read_text().splitlines()
    ]
    judged = [record for record in audit if record["hotkey"] == ddp]
    assert [r["round"] for r in judged] == list(range(ROUNDS))
    assert all(r["reason"] in ACCEPTED and r["averaged"] for r in judged)


def test_it_follows_the_same_model(swarm):
    """θ broadcast to both ranks after every outer step: rank 0's fingerprint is everyone's."""
    fingerprints = [[e["fingerprint"] for e in events(swarm, f"miner-{i}")] for i in range(3)]
    for ddp, other in zip(fingerprints[0], fingerprints[1]):
        assert ddp == pytest.approx(other, rel=1e-5)


def test_it_is_paid_like_the_others(swarm):
    rounds = [e for e in events(swarm, "validator-0") if not e.get("initial")]
    mean_score = {
        name: statistics.mean(e["scores"][hotkey(swarm, name)] for e in rounds)
        for name in ("miner-0", "miner-1", "miner-2")
    }
    ddp = mean_score.pop("miner-0")
    assert ddp > 0 and ddp >= 0.3 * statistics.median(mean_score.values()), mean_score | {"miner-0": ddp}


def test_no_process_is_left_behind(swarm):
    """The swarm's stop reaps the launcher, both ranks (each in a session of its own) and p2pd."""
    deadline = time.time() + 5  # a killed rank may take a moment to be reaped by its new parent
    while True:
        left = [
            process
            for process in psutil.process_iter(["environ", "cmdline"])
            if (process.info["environ"] or {}).get(MARKER) == str(swarm)
        ]
        if not left or time.time() > deadline:
            break
        time.sleep(0.2)
    assert not left, [p.info["cmdline"] for p in left]
