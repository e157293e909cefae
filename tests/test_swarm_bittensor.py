"""The same swarm with every node on the bittensor backend: the SDK's own metagraph and set-weights code
runs against the local chain file, and rounds follow the chain's blocks."""

import json
import subprocess
import sys


def test_swarm_through_the_bittensor_sdk(tmp_path):
    command = [
        sys.executable, "-m", "distrain", "swarm", "--chain.backend", "bittensor",
        "--miners", "2", "--freeriders", "1", "--rounds", "6", "--out", str(tmp_path),
        "--run.round_seconds", "8", "--inner.steps", "10", "--data.max_corpus_mb", "2",
        "--data.pages_per_round", "4", "--validator.assignment_pages", "4",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    # Block-clock rounds start where the chain is when the peers are ready (the first one or two are
    # skipped), so this swarm runs six to leave the proof of work as many rounds as the wall-clock test.
    assert summary["rounds"] and summary["rounds"][-1]["round"] == 5
    for miner in summary["miners"]:
        if miner["role"] == "honest":
            assert miner["weight"] > 0 and miner["incentive"] > 0
        else:
            assert miner["weight"] == 0
    assert summary["final_val_loss"] < summary["initial_val_loss"]


def test_a_local_swarm_refuses_a_remote_network(tmp_path):
    command = [sys.executable, "-m", "distrain", "swarm", "--chain.backend", "bittensor",
               "--chain.network", "finney", "--out", str(tmp_path)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "leave 'chain.network' empty" in result.stderr
