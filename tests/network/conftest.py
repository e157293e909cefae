"""Peers on loopback shared by the network tests (starting one costs ~0.15 s and a p2pd process)."""

from __future__ import annotations

import psutil
import pytest

from distrain.network import Peer


@pytest.fixture(scope="module")
def bootstrap_peer():
    with Peer() as peer:
        yield peer


@pytest.fixture(scope="module")
def other_peer(bootstrap_peer):
    with Peer(initial_peers=bootstrap_peer.maddrs) as peer:
        yield peer


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _p2pd_descendants() -> set[psutil.Process]:
    return {
        child
        for child in psutil.Process().children(recursive=True)
        if _running(child) and child.name() == "p2pd"
    }


def _still_running(processes: set[psutil.Process]) -> set[psutil.Process]:
    return {process for process in processes if _running(process)}


@pytest.fixture
def p2pd():
    """``p2pd.descendants()``: running p2pd processes below this one; ``p2pd.running(set)``: those still up.

    A daemon orphaned by a dead parent is no longer our descendant, hence the second helper.
    """

    class P2pd:
        descendants = staticmethod(_p2pd_descendants)
        running = staticmethod(_still_running)

    return P2pd
