"""Peer start-up errors, clean shutdown, and the bootstrap command."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from distrain.network import NetworkError, Peer, add_dht_command, round_key, run_bootstrap

FINGERPRINT = {"kind": "fingerprint", "run": "peer-test", "recipe": "abc", "round": 0, "fp": [1.0]}


def assert_one_line_network_error(error: pytest.ExceptionInfo, starts_with: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(starts_with), message


def port_of(peer: Peer) -> int:
    return int(peer.maddrs[0].split("/tcp/")[1].split("/")[0])


def test_unreachable_bootstrap_fails_fast_with_one_line(bootstrap_peer, p2pd):
    dead = f"/ip4/127.0.0.1/tcp/1/p2p/{bootstrap_peer.peer_id}"
    before = p2pd.descendants()
    start = time.monotonic()
    with pytest.raises(NetworkError) as error:
        Peer(initial_peers=[dead])
    assert time.monotonic() - start < 15
    assert_one_line_network_error(error, f"could not join the DHT through {dead}: no bootstrap peer answered")
    assert not p2pd.running(p2pd.descendants() - before)


def test_silent_bootstrap_times_out(bootstrap_peer, p2pd):
    # Accepts TCP connections but never speaks libp2p: only a timeout can tell.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        maddr = f"/ip4/127.0.0.1/tcp/{silent.getsockname()[1]}/p2p/{bootstrap_peer.peer_id}"
        before = p2pd.descendants()
        start = time.monotonic()
        with pytest.raises(NetworkError) as error:
            Peer(initial_peers=[maddr], join_timeout=1.5)
        assert time.monotonic() - start < 5
    assert_one_line_network_error(
        error, f"could not join the DHT through {maddr}: no bootstrap peer answered within 1.5 s"
    )
    assert not p2pd.running(p2pd.descendants() - before)


def test_port_in_use(bootstrap_peer):
    # p2pd itself would silently share a port with another p2pd (SO_REUSEPORT): we refuse.
    port = port_of(bootstrap_peer)
    with pytest.raises(NetworkError) as error:
        Peer(host_maddrs=[f"/ip4/127.0.0.1/tcp/{port}"])
    assert_one_line_network_error(error, f"port {port} on 127.0.0.1 is already in use")


@pytest.mark.parametrize(
    "kwargs, starts_with",
    [
        ({"initial_peers": ["garbage"]}, "malformed multiaddr 'garbage': "),
        ({"initial_peers": ["/ip4/127.0.0.1/tcp/5"]}, "initial peer '/ip4/127.0.0.1/tcp/5' lacks a /p2p/"),
        ({"host_maddrs": ["/ip4/1.2.3/tcp/0"]}, "malformed multiaddr '/ip4/1.2.3/tcp/0': "),
    ],
)
def test_malformed_multiaddrs(kwargs, starts_with):
    with pytest.raises(NetworkError) as error:
        Peer(**kwargs)
    assert_one_line_network_error(error, starts_with)


def test_shutdown_stops_p2pd(bootstrap_peer, p2pd, keypair_factory):
    before = p2pd.descendants()
    peer = Peer(initial_peers=bootstrap_peer.maddrs)
    started = p2pd.descendants() - before
    assert len(started) == 1
    peer.shutdown()
    assert not p2pd.running(started)
    peer.shutdown()  # idempotent


def test_shutdown_after_p2pd_died(bootstrap_peer, p2pd):
    """A signal to a peer's process group reaches its daemon too, which may die first: leaving the DHT
    then waited on the dead daemon until the request timeout ran out, and raised."""
    before = p2pd.descendants()
    peer = Peer(initial_peers=bootstrap_peer.maddrs, request_timeout=30)
    (daemon,) = p2pd.descendants() - before
    daemon.terminate()
    daemon.wait(10)
    peer.shutdown()
    assert not peer._loop.is_running


def test_publish_checks_the_key(other_peer, keypair_factory):
    with pytest.raises(ValueError, match="cannot be published under"):
        other_peer.publish(round_key("peer-test", 1, "fingerprint"), keypair_factory(), FINGERPRINT, ttl_s=10)
    assert other_peer.read(round_key("peer-test", 99, "fingerprint")) == {}


def test_run_bootstrap_writes_maddrs_and_stops_on_event(tmp_path, p2pd, keypair_factory, capsys):
    maddrs_file = tmp_path / "maddrs.txt"
    stop = threading.Event()
    thread = threading.Thread(
        target=run_bootstrap, kwargs={"maddrs_file": str(maddrs_file), "stop_event": stop}
    )
    before = p2pd.descendants()
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not maddrs_file.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        maddrs = maddrs_file.read_text().splitlines()
        assert maddrs and all("/p2p/" in maddr for maddr in maddrs)
        key, keypair = round_key("peer-test", 0, "fingerprint"), keypair_factory()
        with Peer(initial_peers=maddrs) as first, Peer(initial_peers=maddrs) as second:
            assert first.publish(key, keypair, FINGERPRINT, ttl_s=30)
            assert list(second.read(key)) == [keypair.ss58_address]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert capsys.readouterr().out.splitlines() == maddrs
    assert not p2pd.running(p2pd.descendants() - before)


def test_dht_command_reports_errors_in_one_line(bootstrap_peer, capsys):
    parser = argparse.ArgumentParser(prog="distrain")
    add_dht_command(parser.add_subparsers())
    args = parser.parse_args(["dht", "--port", str(port_of(bootstrap_peer))])
    assert args.func(args) == 2
    assert (
        capsys.readouterr().err == f"error: port {port_of(bootstrap_peer)} on 127.0.0.1 is already in use\n"
    )


def test_bootstrap_process_exits_cleanly_on_sigterm(tmp_path, p2pd):
    maddrs_file = tmp_path / "maddrs.txt"
    before = p2pd.descendants()
    code = "import sys; from distrain.network import run_bootstrap; run_bootstrap(maddrs_file=sys.argv[1])"
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(maddrs_file)],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as DESIGN.md recommends for peers
    )
    try:
        deadline = time.monotonic() + 20
        while not maddrs_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        daemons = p2pd.descendants() - before
        assert len(daemons) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
        assert not p2pd.running(daemons)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_bootstrap_command_imports_only_the_network():
    # `distrain swarm` starts its DHT bootstrap as `python -m distrain.network` beside the other peers,
    # on the same cores: it verifies signatures with the SDK's key binding, not the whole SDK.
    code = (
        "import sys, distrain.network.bootstrap; "
        "print(sorted({m for m in sys.modules if m.startswith('distrain.') and not m.startswith('distrain.network')}"
        " | ({m.split('.')[0] for m in sys.modules} & {'bittensor', 'accelerate', 'wandb', 'matplotlib'})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['distrain.files', 'distrain.keys', 'distrain.logs']"
