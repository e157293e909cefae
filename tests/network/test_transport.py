"""Payloads over real P2P streams on loopback, including peers that lie, vanish or send too much."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
from hivemind.p2p import P2P

from distrain.network import BackgroundLoop, FetchError, Peer
from distrain.network.transport import HANDLER_NAME, PayloadChunk, PayloadRequest

MiB = 1 << 20


def test_fetch_5mib_payload_intact(bootstrap_peer, other_peer):
    payload = os.urandom(5 * MiB)
    sha256 = bootstrap_peer.serve_payload(payload)
    assert sha256 == hashlib.sha256(payload).hexdigest()
    served, fetched = bootstrap_peer.bytes_served, other_peer.bytes_fetched

    assert other_peer.fetch(bootstrap_peer.peer_id, sha256, max_bytes=8 * MiB, timeout=10) == payload
    assert bootstrap_peer.bytes_served - served == len(payload)
    assert other_peer.bytes_fetched - fetched == len(payload)


def test_empty_payload(bootstrap_peer, other_peer):
    sha256 = bootstrap_peer.serve_payload(b"")
    assert other_peer.fetch(bootstrap_peer.peer_id, sha256, max_bytes=1, timeout=10) == b""


def test_own_payload_is_returned_directly(bootstrap_peer):
    sha256 = bootstrap_peer.serve_payload(b"mine")
    assert bootstrap_peer.fetch(bootstrap_peer.peer_id, sha256, max_bytes=10, timeout=1) == b"mine"


def test_not_found(bootstrap_peer, other_peer):
    with pytest.raises(FetchError) as error:
        other_peer.fetch(bootstrap_peer.peer_id, "0" * 64, max_bytes=MiB, timeout=10)
    assert error.value.reason == "not_found"


def test_oversized_stops_early(bootstrap_peer, other_peer):
    sha256 = bootstrap_peer.serve_payload(os.urandom(3 * MiB))
    fetched = other_peer.bytes_fetched
    with pytest.raises(FetchError) as error:
        other_peer.fetch(bootstrap_peer.peer_id, sha256, max_bytes=MiB // 2, timeout=10)
    assert error.value.reason == "oversized"
    assert other_peer.bytes_fetched == fetched


def test_eviction_keeps_only_recent_payloads(bootstrap_peer, other_peer):
    first = bootstrap_peer.serve_payload(b"round 0")
    for round in range(1, 8):
        bootstrap_peer.serve_payload(f"round {round}".encode())
    with pytest.raises(FetchError) as error:
        other_peer.fetch(bootstrap_peer.peer_id, first, max_bytes=MiB, timeout=10)
    assert error.value.reason == "not_found"


UNDER_DECLARED = "1" * 64


@pytest.fixture
def liar(bootstrap_peer):
    """A raw P2P peer whose payload handler lies: wrong bytes, or far more bytes than it declares."""
    loop = BackgroundLoop(name="liar")

    async def serve_lies(request: PayloadRequest, _context):
        if request.sha256 == UNDER_DECLARED:
            for _ in range(16):
                yield PayloadChunk(data=bytes(MiB), total_size=1)
        else:
            yield PayloadChunk(data=b"not what you asked for", total_size=22)

    async def start() -> P2P:
        p2p = await P2P.create(initial_peers=bootstrap_peer.maddrs)
        await p2p.add_protobuf_handler(HANDLER_NAME, serve_lies, PayloadRequest, stream_output=True)
        return p2p

    p2p = loop.run(start(), timeout=10)
    yield str(p2p.peer_id)
    loop.run(p2p.shutdown(), timeout=10)
    loop.shutdown()


def test_hash_mismatch(bootstrap_peer, liar):
    with pytest.raises(FetchError) as error:
        bootstrap_peer.fetch(liar, hashlib.sha256(b"the real payload").hexdigest(), max_bytes=MiB, timeout=10)
    assert error.value.reason == "hash_mismatch"


def test_oversized_despite_declared_size(bootstrap_peer, liar):
    with pytest.raises(FetchError) as error:
        bootstrap_peer.fetch(liar, UNDER_DECLARED, max_bytes=MiB + MiB // 2, timeout=10)
    assert error.value.reason == "oversized"


def test_dead_peer_fails_within_timeout(bootstrap_peer):
    with Peer(initial_peers=bootstrap_peer.maddrs) as doomed:
        sha256 = doomed.serve_payload(b"gone soon")
        assert bootstrap_peer.fetch(doomed.peer_id, sha256, max_bytes=MiB, timeout=10) == b"gone soon"
    start = time.monotonic()
    with pytest.raises(FetchError) as error:
        bootstrap_peer.fetch(doomed.peer_id, sha256, max_bytes=MiB, timeout=3)
    assert error.value.reason in ("unreachable", "timeout")
    assert time.monotonic() - start < 4


def test_unknown_peer_is_unreachable(bootstrap_peer):
    with pytest.raises(FetchError) as error:
        bootstrap_peer.fetch("not-a-peer-id", "0" * 64, max_bytes=MiB, timeout=3)
    assert error.value.reason == "unreachable"
