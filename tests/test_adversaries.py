"""One swarm with honest miners and every known cheat: the validator survives and pays only honest work."""

import json
import statistics
import subprocess
import sys

import pytest

from distrain.adversaries import BEHAVIOURS

CHEATS = sorted(set(BEHAVIOURS) - {"honest"})


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    out = tmp_path_factory.mktemp("adversarial-swarm")
    command = [
        sys.executable, "-m", "distrain", "swarm", "--miners", "4", "--freeriders", "0",
        "--adversaries", ",".join(CHEATS), "--rounds", "8", "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=480)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, json.loads((out / "summary.json").read_text())


def test_every_cheat_is_in_the_summary_under_its_role(attacked):
    _, summary = attacked
    assert sorted(m["role"] for m in summary["miners"] if m["role"] != "honest") == CHEATS


def test_honest_miners_earn_and_cheats_do_not(attacked):
    _, summary = attacked
    total = sum(m["weight"] for m in summary["miners"])
    honest = [m["weight"] / total for m in summary["miners"] if m["role"] == "honest"]
    cheats = {m["role"]: m["weight"] / total for m in summary["miners"] if m["role"] != "honest"}
    # The proof of work misjudges some honest rounds too (5 of 32 in one run), and the final weights are
    # a short moving average: honest shares measured 0.12-0.41 around their fair 0.25.
    assert min(honest) > 0.05, summary["miners"]
    # Training on pages that were not assigned is the one cheat the proof of work catches only
    # statistically (see the README): it passed 3 of 8 rounds in one run and ended at 0.072 of the
    # weight (honest: 0.134-0.353); over 4 runs 0.004-0.072. It must stay well below an honest miner.
    assert cheats.pop("wrongdata") < statistics.mean(honest) / 2, summary["miners"]
    assert all(share < 0.01 for share in cheats.values()), cheats


def test_the_validator_never_died_and_named_every_rejection(attacked):
    out, summary = attacked
    audit = [
        json.loads(line) for line in (out / "validator-0" / "state" / "audit.jsonl").read_text().splitlines()
    ]
    assert {r["round"] for r in audit} == set(range(8))
    roles = {m["hotkey"]: m["role"] for m in summary["miners"]}
    reasons = {roles[r["hotkey"]]: set() for r in audit}
    for record in audit:
        reasons[roles[record["hotkey"]]].add(record["reason"])
    expected = {
        "nan": "non_finite",
        "huge": "norm_outlier",
        "garbage": "undecodable",
        "oversized": "oversized",
        "badsig": "missing",  # forged records never get past the DHT's validators
        "freerider": "zero_delta",
        "copycat": "copy",
    }
    for role, reason in expected.items():
        assert reason in reasons[role], (role, reasons[role])
    assert "replayed" in reasons["stale"] or "copy" in reasons["stale"]


def test_the_model_still_learns(attacked):
    _, summary = attacked
    assert summary["final_val_loss"] < 0.6 * summary["initial_val_loss"]
