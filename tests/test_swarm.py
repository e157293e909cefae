"""End to end: a real local swarm (chain, DHT bootstrap, miners, free-rider, validator as processes).

Its first miner is two processes (`accelerate launch`, DDP over gloo), as a multi-GPU miner would be:
every test of a healthy swarm holds for it too, and the tests at the end check what is particular to it.
"""

import json
import os
import statistics
import subprocess
import sys
import time

import psutil
import pytest
from swarm_helpers import wait_for

from distrain.network.errors import FETCH_ERRORS
from distrain.swarm import Member, ProcessGroup

ROUNDS, STEPS, BATCH, CONTEXT = 4, 10, 16, 64
# What a submission may be judged without being refused: `wrong_data` is the proof of work on a few
# pages, which can misjudge an honest round; the validator still averages such a delta.
ACCEPTED = (None, "wrong_data")
MARKER = "DISTRAIN_TEST_SWARM"
"""Inherited by every process the swarm starts, down to p2pd: how a leftover is recognised."""


@pytest.fixture(scope="module")
def swarm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("swarm")
    command = [
        sys.executable, "-m", "distrain", "swarm", "--miner-processes", "2",
        "--miners", "2", "--freeriders", "1", "--validators", "1", "--rounds", str(ROUNDS), "--out", str(out),
        # Small and quick: CI has 2 cores shared by a validator, a free-rider and 3 training processes.
        "--run.round_seconds", "10", "--inner.steps", str(STEPS), "--validator.weights_interval", "2",
        "--inner.batch_size", str(BATCH), "--model.context", str(CONTEXT), "--data.max_corpus_mb", "2",
        # Fewer pages for fewer inner steps: a miner sees its pages ~2.5 times, so the proof of work
        # (own pages improve more than random ones) is as clear as with the default recipe.
        "--data.pages_per_round", "4", "--validator.assignment_pages", "4",
    ]  # fmt: skip
    env = {**os.environ, MARKER: str(out)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout, json.loads((out / "summary.json").read_text())


def events(out, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / name / "events.jsonl").read_text().splitlines()]


def hotkey(out, name: str) -> str:
    return json.loads((out / name / "ready").read_text())["hotkey"]


def test_summary_has_the_promised_schema(swarm_run):
    out, _, summary = swarm_run
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2, 3]
    for entry in summary["rounds"]:
        assert set(entry) >= {"round", "val_loss", "bytes_sent_per_miner"}
        assert entry["bytes_sent_per_miner"] > 0
    assert len(summary["miners"]) == 3
    for miner in summary["miners"]:
        assert set(miner) >= {"hotkey", "uid", "role", "score", "weight", "incentive"}
    assert sorted(m["role"] for m in summary["miners"]) == ["freerider", "honest", "honest"]
    assert (out / "loss.png").stat().st_size > 10_000


def test_shared_model_learns(swarm_run):
    _, _, summary = swarm_run
    assert summary["final_val_loss"] < 0.8 * summary["initial_val_loss"]


def test_honest_miners_are_paid_and_the_freerider_is_not(swarm_run):
    _, _, summary = swarm_run
    total = sum(m["weight"] for m in summary["miners"])
    for miner in summary["miners"]:
        if miner["role"] == "honest":
            assert miner["weight"] > 0 and miner["incentive"] > 0, summary["miners"]
        else:
            assert miner["weight"] < 0.01 * total and miner["incentive"] < 0.01, summary["miners"]


def test_every_peer_followed_the_same_model(swarm_run):
    """Miners and the validator applied the same outer steps: their fingerprints agree every round."""
    out, _, _ = swarm_run
    miners = [
        json.loads(line)
        for path in out.glob("*/events.jsonl")
        if "validator" not in path.parent.name
        for line in path.read_text().splitlines()
    ]
    by_round: dict[int, list] = {}
    for event in miners:
        by_round.setdefault(event["round"], []).append(event["fingerprint"])
    assert sorted(by_round) == list(range(ROUNDS))
    for fingerprints in by_round.values():
        assert all(fp == pytest.approx(fingerprints[0], rel=1e-5) for fp in fingerprints)


def test_progress_is_printed_per_round(swarm_run):
    _, stdout, _ = swarm_run
    assert [line.split("|")[0].strip() for line in stdout.splitlines() if line.startswith("round")] == [
        f"round  {i}/4" for i in range(1, 5)
    ]


def test_the_validator_records_the_time_of_gathering_and_evaluating(swarm_run):
    rounds = [e for e in events(swarm_run[0], "validator-0") if not e.get("initial")]
    assert rounds and all(e["gather_seconds"] >= 0 and e["evaluate_seconds"] > 0 for e in rounds), rounds


def test_every_payload_of_the_last_round_reaches_the_validator(swarm_run):
    """Miners keep serving after their last round until the validator has judged it: leaving at once
    raced its fetches (`Miner.serve_until_judged`)."""
    audit = (swarm_run[0] / "validator-0" / "state" / "audit.jsonl").read_text().splitlines()
    last = [record for record in map(json.loads, audit) if record["round"] == ROUNDS - 1]
    assert len(last) == 3 and not any(record["reason"] in FETCH_ERRORS for record in last), last


# -- the two-process miner ---------------------------------------------------------------------------


def test_both_processes_trained(swarm_run):
    """Each step of the two-process miner trains twice the sequences of a one-process miner."""
    out = swarm_run[0]
    ddp, single = events(out, "miner-0"), events(out, "miner-1")
    assert [e["round"] for e in ddp] == list(range(ROUNDS))
    for record in ddp:
        assert record["world_size"] == 2 and record["inner_steps"] > 0
        assert record["tokens"] == 2 * record["inner_steps"] * BATCH * CONTEXT
    assert all(e["world_size"] == 1 and e["tokens"] == e["inner_steps"] * BATCH * CONTEXT for e in single)
    # Rank 0 alone announced (one P2P peer, one `ready`), and its AdamW stepped once per inner step.
    assert ddp[-1]["optimizer_steps"] == sum(e["inner_steps"] for e in ddp)


def test_its_submissions_are_averaged_and_not_rejected(swarm_run):
    out = swarm_run[0]
    ddp = hotkey(out, "miner-0")
    assert all(ddp not in e["rejected"] for e in events(out, "miner-1"))
    audit = [
        json.loads(line) for line in (out / "validator-0" / "state" / "audit.jsonl").read_text().splitlines()
    ]
    judged = [record for record in audit if record["hotkey"] == ddp]
    assert [r["round"] for r in judged] == list(range(ROUNDS))
    assert all(r["reason"] in ACCEPTED and r["averaged"] for r in judged)


def test_it_is_paid_like_a_one_process_miner(swarm_run):
    out = swarm_run[0]
    rounds = [e for e in events(out, "validator-0") if not e.get("initial")]
    mean_score = {
        name: statistics.mean(e["scores"][hotkey(out, name)] for e in rounds)
        for name in ("miner-0", "miner-1")
    }
    assert mean_score["miner-0"] > 0 and mean_score["miner-0"] >= 0.3 * mean_score["miner-1"], mean_score


def test_it_ends_on_its_own_after_the_last_round(swarm_run):
    """Both ranks leave without the interpreter's finalization, which can abort a Gloo rank after its
    work is saved; the swarm waits for members to end, so the launcher is not stopped by a signal."""
    log = (swarm_run[0] / "miner-0" / "log.txt").read_text()
    assert "death signal" not in log and "SIGTERM" not in log


def test_no_process_is_left_behind(swarm_run):
    """The swarm's stop reaps the launcher, both ranks (each in a session of its own) and p2pd."""
    out = swarm_run[0]
    deadline = time.time() + 5  # a killed rank may take a moment to be reaped by its new parent
    while True:
        left = [
            process
            for process in psutil.process_iter(["environ", "cmdline"])
            if (process.info["environ"] or {}).get(MARKER) == str(out)
        ]
        if not left or time.time() > deadline:
            break
        time.sleep(0.2)
    assert not left, [p.info["cmdline"] for p in left]


def test_a_dead_rank_is_reported_with_what_it_printed(tmp_path):
    """A launcher's report of a failed rank runs longer than the tail; the rank's own last words are kept."""
    member = Member(name="miner-0", role="honest", hotkey="5F", out_dir=tmp_path)
    report = [f"  torchrun report line {i}" for i in range(40)]
    lines = ["round 3 trained", "terminate called after throwing an instance of 'gloo::IoException'"]
    member.log_path.write_text("\n".join([*lines, "  what():  Connection closed by peer", *report]))
    excerpt = member.log_tail(15).splitlines()
    assert excerpt[:2] == [lines[1], "  what():  Connection closed by peer"]
    assert excerpt[3:-1] == report[-15:] and str(member.log_path) in excerpt[-1]
    assert "round 3 trained" not in excerpt


def test_a_line_being_written_is_not_read(tmp_path):
    member = Member(name="validator-0", role="validator", hotkey="5F", out_dir=tmp_path)
    (tmp_path / "events.jsonl").write_text('{"round": 0}\n{"round": 1, "val_lo')
    assert member.events() == [{"round": 0}]


def test_stop_lets_each_peer_stop_its_own_p2pd(tmp_path):
    """Signalled together with its peer, a daemon died first: the peer's shutdown then waited on it
    (past the 10 s grace, until `Peer.shutdown` bounded the wait) and logged a ConnectionResetError."""
    group, maddrs = ProcessGroup(), tmp_path / "maddrs.txt"
    command = [sys.executable, "-m", "distrain", "dht", "--host", "127.0.0.1", "--maddrs-file", str(maddrs)]
    process = group.start(command, tmp_path / "log.txt", {**os.environ, "WANDB_MODE": "disabled"})
    try:
        wait_for(maddrs.exists, timeout=60)
        daemons = [p for p in psutil.Process(process.pid).children(recursive=True) if p.name() == "p2pd"]
    finally:
        group.stop()
    log = (tmp_path / "log.txt").read_text()
    assert process.returncode == 0 and "Traceback" not in log, log
    assert len(daemons) == 1 and not daemons[0].is_running()
