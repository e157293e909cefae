"""Tracking and service logs: event records become namespaced metrics in TensorBoard and wandb, a restarted
node continues its tracker run, `--log.format json` prints one JSON object per line, bad settings fail
in one line. No swarm: the EventLog and the trackers are driven directly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from distrain.config import Recipe, TrackingConfig, load_recipe
from distrain.node import EventLog
from distrain.tracking import RUN_ID_FILE, TRACKERS, Backend, TrackingError, metrics, open_tracker

MINER_ROUNDS = [
    {
        "round": r,
        "role": "honest",
        "inner_steps": 24,
        "train_loss": 5.0 - r,
        "inner_seconds": 2.0,
        "train_start_seconds": 0.3,
        "tokens": 24_576,
        "tokens_per_second": 12_288.0,
        "payload_bytes": 1000 + r,
        "compression_ratio": 8.0,
        "bytes_sent": 3000,
        "bytes_received": 4000,
        "exchange_seconds": {
            "follow": 0.1,
            "gather": 0.5,
            "outer": 0.2,
            "checkpoint": 0.3,
            "fingerprint": 0.1,
        },
        "averaged": 3,
        "resynced": False,
        "rejected": {"hk-a": "wrong_base", "hk-b": "wrong_base", "hk-c": "bad_hash"},
        "fingerprint": [0.1, 0.2],
    }
    for r in range(3)
]

VALIDATOR_ROUND = {
    "round": 4,
    "val_loss": 2.5,
    "averaged": 2,
    "submissions": {
        "hk-a": {"reason": None, "heldout_gain": 0.25, "score_gain": 0.25},
        "hk-b": {"reason": "copy"},
        "hk-c": {"reason": "wrong_data", "heldout_gain": -0.5, "score_gain": 0.0},
    },
    "scores": {"hk-a": 0.75, "hk-c": 0.0},
    "weights": {"hk-a": 1.0},
    "bytes_sent": 10,
    "bytes_received": 20,
    "gather_seconds": 1.5,
    "evaluate_seconds": 3.25,
    "block": 1234,
    "incentive": {"hk-a": 0.5},
    "fingerprint": [0.3],
}


def test_validator_record_becomes_namespaced_metrics():
    assert metrics(VALIDATOR_ROUND) == {
        "chain/round": 4,
        "val/loss": 2.5,
        "comm/averaged": 2,
        "val/submissions": 3,
        "val/rejected/copy": 1,
        "val/rejected/wrong_data": 1,
        "val/gain/hk-a": 0.25,
        "val/gain/hk-c": -0.5,
        "val/score/hk-a": 0.75,
        "val/score/hk-c": 0.0,
        "chain/weights_set": 1.0,
        "chain/weight/hk-a": 1.0,
        "comm/bytes_sent": 10,
        "comm/bytes_received": 20,
        "comm/gather_seconds": 1.5,
        "val/evaluate_seconds": 3.25,
        "chain/block": 1234,
        "chain/incentive/hk-a": 0.5,
    }
    assert metrics({"round": 5, "weights": None})["chain/weights_set"] == 0.0


def test_event_log_feeds_tensorboard_with_namespaced_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracker = open_tracker(TrackingConfig(backend="tensorboard"), tmp_path, "miner-test", "run", {})
    events = EventLog(tmp_path / "events.jsonl", tracker=tracker)
    for record in MINER_ROUNDS:
        events.write(record)
    events.close()

    run_id = (tmp_path / RUN_ID_FILE).read_text().strip()
    assert run_id.startswith("miner-test-")
    accumulator = EventAccumulator(str(tmp_path / "tensorboard" / run_id))
    accumulator.Reload()
    scalars = set(accumulator.Tags()["scalars"])
    assert {
        "train/loss", "train/steps", "train/tokens", "train/tokens_per_s", "train/inner_seconds",
        "train/start_seconds", "comm/payload_bytes", "comm/compression_ratio", "comm/bytes_sent", "comm/bytes_received",
        "comm/exchange_seconds/gather", "comm/exchange_seconds/checkpoint", "comm/averaged",
        "comm/rejected/wrong_base", "comm/rejected/bad_hash",
    } <= scalars  # fmt: skip
    assert not any(tag.split("/")[1] in ("fingerprint", "role") for tag in scalars)
    loss = accumulator.Scalars("train/loss")
    assert [(e.step, e.value) for e in loss] == [(1, 5.0), (2, 4.0), (3, 3.0)]  # step = round + 1
    assert [e.value for e in accumulator.Scalars("comm/payload_bytes")] == [1000, 1001, 1002]
    assert accumulator.Scalars("comm/rejected/wrong_base")[0].value == 2
    first = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])
    assert first == {"time": first["time"], **MINER_ROUNDS[0]}  # the event file is unchanged by tracking


WANDB_NODE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from distrain.config import TrackingConfig
    from distrain.tracking import open_tracker

    out, first = Path(sys.argv[1]), int(sys.argv[2])
    tracker = open_tracker(TrackingConfig(backend="wandb"), out, "miner-test", "run", {"seed": 0})
    for round_ in (first, first + 1):
        tracker.log({"round": round_, "train_loss": 5.0 - round_, "bytes_sent": 100})
    print(tracker.tracker.run.id)
    tracker.close()
    """
)


def test_wandb_offline_run_is_resumed_after_a_restart(tmp_path):
    home = tmp_path / "home"
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        **{f"WANDB_{name}_DIR": str(home / name.lower()) for name in ("CACHE", "CONFIG", "DATA", "ARTIFACT")},
        "HOME": str(home),  # anything wandb still puts under ~ lands here
    }
    out = tmp_path / "miner"

    def start(first_round: int) -> str:
        result = subprocess.run(
            [sys.executable, "-c", WANDB_NODE, str(out), str(first_round)],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    first = start(0)
    assert first == (out / RUN_ID_FILE).read_text().strip()
    assert start(2) == first  # the restarted node continues the same run
    runs = sorted((out / "wandb").glob(f"offline-run-*-{first}"))
    assert len(runs) == 2, list((out / "wandb").iterdir())
    assert all((run / f"run-{first}.wandb").is_file() for run in runs)


def test_missing_tracker_package_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(
        TRACKERS, "tensorboard", Backend("distrain_no_such_package", TRACKERS["tensorboard"].make)
    )
    with pytest.raises(
        TrackingError, match="tracking.backend 'tensorboard' needs the distrain_no_such_package"
    ):
        open_tracker(TrackingConfig(backend="tensorboard"), tmp_path, "miner-test", "run", {})


def test_no_tracker_by_default(tmp_path):
    assert Recipe().tracking.backend == "none"
    assert open_tracker(Recipe().tracking, tmp_path, "miner-test", "run", {}) is None
    assert not any(tmp_path.iterdir())


def test_tracking_section_does_not_change_the_hash():
    overrides = {"tracking.backend": "tensorboard", "tracking.mode": "online", "tracking.dir": "/tmp/tb"}
    assert load_recipe(None, overrides).hash() == Recipe().hash()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distrain", *args], capture_output=True, text=True, timeout=90
    )


def test_bad_tracking_backend_is_a_one_line_error_naming_the_key():
    result = run_cli("recipe", "--tracking.backend", "bogus")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: recipe key 'tracking.backend' must be one of 'none', 'wandb', 'tensorboard', got 'bogus'"
    ]


JSON_NODE = textwrap.dedent(
    """
    import logging, sys
    from pathlib import Path
    from distrain.logs import configure_logging, progress_bar
    from distrain.node import EventLog

    sys.stderr.isatty = lambda: True  # even on a terminal, JSON logs mean no progress bar
    configure_logging("json")
    EventLog(Path(sys.argv[1]), logging.getLogger("distrain.miner")).write(RECORD)
    logging.getLogger("hivemind.p2p.p2p_daemon").warning("a relayed p2pd warning")
    logging.getLogger("hivemind.dht").info("hivemind's chatter stays quiet")
    print(progress_bar(range(3), "inner steps").disable)
    """
)


def test_json_log_lines_carry_the_round_summary_as_keys(tmp_path):
    record = {key: value for key, value in MINER_ROUNDS[1].items()}
    script = JSON_NODE.replace("RECORD", repr(record))
    env = {**os.environ, "HIVEMIND_LOGLEVEL": "WARNING"}
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "events.jsonl")],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["logger"] for line in lines] == ["distrain.miner", "hivemind.p2p.p2p_daemon"]
    summary, relayed = lines
    assert {"time", "level", "logger", "message"} <= set(summary)
    assert summary["level"] == "INFO"
    assert summary["message"].startswith("round 1: loss 4.000, 24 steps, 12,288 tok/s")
    assert "rejected 3 (bad_hash 1, wrong_base 2)" in summary["message"]
    assert summary["round"] == 1 and summary["train_loss"] == 4.0 and summary["bytes_received"] == 4000
    assert "fingerprint" not in summary and "rejected" not in summary  # lists and maps stay in events.jsonl
    assert relayed["level"] == "WARNING" and relayed["message"] == "a relayed p2pd warning"


def test_node_commands_take_log_format_and_wandb_mode():
    from distrain.cli import build_parser

    node = ["--wallet.path", "w", "--wallet.name", "m", "--log.format", "json"]
    assert build_parser().parse_args(["miner", *node, "--wandb.mode", "online"]).wandb_mode == "online"
    assert build_parser().parse_args(["validator", *node]).log_format == "json"
    assert build_parser().parse_args(["dht", "--log.format", "json"]).log_format == "json"
    result = run_cli("dht", "--log.format", "xml")
    assert result.returncode == 2 and "invalid choice: 'xml'" in result.stderr
