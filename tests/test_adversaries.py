"""One swarm with honest miners and every known cheat: the validator survives and pays only honest work."""

import collections
import json
import statistics
import subprocess
import sys

import pytest

from distrain.adversaries import BEHAVIOURS
from distrain.config import load_recipe
from distrain.validation.report import audit_path, read_audit

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
    # statistically (see docs/performance.md): each round it passes adds to a short moving average, and late
    # ones weigh most. Scores alone gave it 0.004-0.072 of the weight in 5 of 6 runs, 0.178 once after
    # passing the last 3 of 8 rounds, and once (CI) 0.207 against the honest mean of 0.198 after passing
    # rounds 3 and 7; weights are now scaled by trust, a longer average of its proof verdicts. The
    # next test bounds the rounds it passes.
    assert cheats.pop("wrongdata") < statistics.mean(honest), summary["miners"]
    assert all(share < 0.01 for share in cheats.values()), cheats


def test_training_on_other_pages_passes_few_rounds(attacked):
    """With the page bias of an average delta taken off the margin, `wrongdata` passed 1 of 8 and 3 of 8
    rounds in two runs of this swarm at the former bar of 0.03. In five default-recipe swarms of 4 miners and
    `wrongdata` it passed 10 of 40 rounds at 0.03 and 5 of 40 at today's 0.04: at 1 in 8 a round, 4 or more
    passes of 8 happen about once in 90 runs, at 1 in 4 once in 9 (docs/performance.md, proof of work)."""
    out, summary = attacked
    (cheater,) = [m["hotkey"] for m in summary["miners"] if m["role"] == "wrongdata"]
    audit = read_audit(audit_path(out / "validator-0"))
    verdicts = [record["reason"] for record in audit if record["hotkey"] == cheater and "own_gain" in record]
    assert len(verdicts) >= 6 and verdicts.count(None) <= 3, verdicts


def test_the_validator_never_died_and_named_every_rejection(attacked):
    out, summary = attacked
    audit = read_audit(audit_path(out / "validator-0"))
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
    # Where a round judged several submissions, each margin is corrected by the others' average delta
    # (with one there is no average: under CI's load, every other miner once missed the validator's θ).
    judged = [record for record in audit if "own_gain" in record]
    per_round = collections.Counter(record["round"] for record in judged)
    corrected = [record for record in judged if per_round[record["round"]] > 1]
    assert len(corrected) >= len(judged) / 2 and all(record["page_bias"] != 0.0 for record in corrected)
    # The proof's verdict, which trust follows, is the only reason a judged submission can get.
    assert all(record["proved"] == (record["reason"] is None) for record in judged)


def test_trust_is_the_moving_average_of_proof_verdicts_at_the_recipes_rate(attacked):
    """Each audit record's trust, recomputed from that miner's verdicts so far (a pass 1, `wrong_data` 0,
    from 1) at the swarm recipe's `validator.trust_ema`: the validator hands its ScoreBook that rate."""
    out, _ = attacked
    rate = load_recipe(out / "recipe.yaml").validator.trust_ema
    trust: dict[str, float] = {}
    for record in read_audit(audit_path(out / "validator-0")):  # in round order
        hotkey = record["hotkey"]
        if "proved" in record:
            trust[hotkey] = (1 - rate) * trust.get(hotkey, 1.0) + rate * record["proved"]
        assert record["trust"] == pytest.approx(trust.get(hotkey, 1.0)), record
    assert min(trust.values()) < 0.5  # `wrongdata` fails most rounds: the check above saw trust move


def test_the_model_still_learns(attacked):
    _, summary = attacked
    assert summary["final_val_loss"] < 0.6 * summary["initial_val_loss"]
