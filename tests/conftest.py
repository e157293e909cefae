"""Test-session setup shared by every test folder.

- Quiet, offline defaults in ``os.environ`` at import time, before any test imports hivemind, wandb or
  bittensor (they read these variables when first imported), and so inherited by every child process.
- ``keypair_factory``: real sr25519 hotkeys in throwaway wallets (never under ``~``).
- The root logger is put back after each test: a test that runs ``distrain.cli.main`` in-process points
  it at that test's captured stderr, closed once the test ends, where a later test's records would fail.
- A reaper: every process started during the session carries a session marker in its environment;
  at the end, any such process still alive (a ``p2pd`` left by a peer that was not shut down, an orphaned
  miner subprocess) is killed and reported, and the session fails, because a leak is a bug.
- Then the unix sockets of hivemind daemons that tests killed on purpose (crash and restart tests
  SIGKILL peers, which cannot remove their ``/tmp/hivemind-*.sock`` files then) are removed.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import logging
import os
import re
import shutil
import tempfile
import time
import uuid

import psutil
import pytest

_SESSION_MARKER = "DISTRAIN_TEST_SESSION"
_SESSION_ID = uuid.uuid4().hex
_SESSION_TMP = tempfile.mkdtemp(prefix="distrain-tests-")
_SESSION_START = time.time()
_HIVEMIND_SOCKET = re.compile(r"/tmp/hivemind-p2p(?:d|client)-(.+)\.sock")
"""hivemind's fixed place for a daemon's socket and its client's, one id for both."""

os.environ[_SESSION_MARKER] = _SESSION_ID
os.environ["HIVEMIND_LOGLEVEL"] = "ERROR"
os.environ["WANDB_MODE"] = "disabled"
os.environ["BTCLI_TOKEN_SYMBOLS_CACHE"] = os.path.join(_SESSION_TMP, "token_symbols.json")


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def keypair_factory(tmp_path_factory):
    """``keypair_factory(name=None)`` returns a fresh sr25519 hotkey (``.ss58_address``, ``.sign``)."""
    import bittensor as bt

    counter = itertools.count()

    def make(name: str | None = None):
        name = name or f"key{next(counter)}"
        wallet = bt.Wallet(name=name, hotkey="hotkey", path=str(tmp_path_factory.mktemp(f"wallet-{name}")))
        wallet.create_new_coldkey(use_password=False, overwrite=True, suppress=True)
        wallet.create_new_hotkey(use_password=False, overwrite=True, suppress=True)
        return wallet.hotkey

    return make


def _session_processes() -> list[psutil.Process]:
    # environ is None where access is denied: other users' processes are never ours.
    return [
        process
        for process in psutil.process_iter(["environ"])
        if process.pid != os.getpid() and (process.info["environ"] or {}).get(_SESSION_MARKER) == _SESSION_ID
    ]


def _describe(process: psutil.Process) -> str:
    try:
        return f"{process.name()}({process.pid})"
    except psutil.Error:
        return str(process.pid)


def pytest_sessionfinish(session, exitstatus):
    leftovers = _session_processes()
    if leftovers:
        names = ", ".join(_describe(process) for process in leftovers)
        for process in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(leftovers, timeout=3)
        for process in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"ERROR: the test session left processes running, killed: {names}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    _remove_stale_sockets()
    shutil.rmtree(_SESSION_TMP, ignore_errors=True)


def _remove_stale_sockets() -> None:
    """Sockets made during the session whose id no running process names (a live p2pd's command line
    holds its socket's path), so no daemon of this session or another one still uses them. Listed
    before the processes, and only those older than a few seconds, so a daemon starting meanwhile in
    another session keeps its socket."""
    sockets = glob.glob("/tmp/hivemind-*.sock")
    running = " ".join(" ".join(p.info["cmdline"] or ()) for p in psutil.process_iter(["cmdline"]))
    for path in sockets:
        match = _HIVEMIND_SOCKET.fullmatch(path)
        with contextlib.suppress(OSError):
            made = os.stat(path).st_mtime
            if match and match[1] not in running and _SESSION_START <= made < time.time() - 5:
                os.remove(path)
