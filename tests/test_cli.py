"""Errors a user can fix print one clear line and exit with status 2 — never a traceback wall."""

import socket
import subprocess
import sys

import pytest

from distrain.chain import LocalChain, create_wallet


def run_cli(*args, timeout=90):
    return subprocess.run(
        [sys.executable, "-m", "distrain", *args], capture_output=True, text=True, timeout=timeout
    )


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_bad_recipe_key(tmp_path):
    assert_one_line_error(run_cli("recipe", "--inner.stepz", "3"), "'inner.stepz' is unknown")
    (tmp_path / "bad.yaml").write_text("inner:\n  steps: many\n")
    assert_one_line_error(
        run_cli("swarm", "--recipe", str(tmp_path / "bad.yaml")), "'inner.steps' expects int"
    )


@pytest.fixture
def registered_miner(tmp_path):
    wallet = create_wallet(str(tmp_path / "wallets"), "m")
    with LocalChain(tmp_path / "chain.sqlite", create=True) as chain:
        chain.register(wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address)
    return [
        "miner", "--wallet.path", str(tmp_path / "wallets"), "--wallet.name", "m",
        "--chain.path", str(tmp_path / "chain.sqlite"), "--out", str(tmp_path / "out"), "--genesis", "0",
        "--data.max_corpus_mb", "1",
    ]  # fmt: skip


def test_unreachable_bootstrap_peer(registered_miner):
    dead = "/ip4/127.0.0.1/tcp/9/p2p/12D3KooWJqZzuiEQ5WSETpuYY9j7obTGredKXfdrAxJX6SkdBe4i"
    assert_one_line_error(run_cli(*registered_miner, "--initial-peers", dead), "could not join the DHT")


def test_port_in_use(registered_miner):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(run_cli(*registered_miner, "--port", str(port)), f"port {port}", "in use")
        assert_one_line_error(run_cli("dht", "--port", str(port)), f"port {port}", "in use")


def test_unregistered_hotkey(registered_miner, tmp_path):
    create_wallet(str(tmp_path / "wallets"), "stranger")
    args = list(registered_miner)
    args[args.index("m")] = "stranger"
    assert_one_line_error(run_cli(*args), "is not registered")


def test_payloads_over_the_size_limit(registered_miner):
    # fp32 of the default model is 1.7 MB: every peer would reject it, so the miner does not start.
    result = run_cli(*registered_miner, "--compression.codec", "fp32", "--run.max_payload_mb", "1")
    assert_one_line_error(result, "codec fp32 makes payloads of about 2 MiB", "run.max_payload_mb 1")


def test_missing_wallet(registered_miner):
    args = list(registered_miner)
    args[args.index("m")] = "nobody"
    result = run_cli(*args)
    assert_one_line_error(result)
