"""``Peer``: the one network object a miner or validator holds - a DHT node plus a payload server.

Everything runs in-process: a ``hivemind.dht.node.DHTNode`` (not the ``hivemind.DHT`` wrapper, which
forks a Python process per peer) on a ``BackgroundLoop``, sharing one ``P2P`` (one ``p2pd`` daemon)
with a ``PayloadServer``. The public methods are synchronous and bounded by timeouts.

Start-up failures are translated into ``NetworkError`` with one line a user can act on, because what
hivemind does on its own is unhelpful: a malformed multiaddr surfaces as a Go log line from p2pd, and
a port already taken by another p2pd is *silently shared* (p2pd listens with SO_REUSEPORT), so two
peers would answer on one port. We therefore check addresses and ports ourselves before starting.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from hivemind.dht.node import DHTNode
from hivemind.p2p import P2P, P2PDaemonError
from hivemind.utils import get_dht_time
from hivemind.utils.multiaddr import Multiaddr

from distrain.network.errors import FetchError, NetworkError, one_line
from distrain.network.loop import BackgroundLoop
from distrain.network.records import Signer, round_key, sign_record
from distrain.network.transport import PayloadServer, fetch_payload
from distrain.network.validator import HotkeyRecordValidator, check_entry, key_id

DEFAULT_HOST_MADDRS = ("/ip4/127.0.0.1/tcp/0",)
FETCH_ATTEMPTS = 2
RETRIED = ("hash_mismatch", "unreachable")
"""Fetch failures that may be transient, and so are tried again once."""
LEAVE_SECONDS = 2.0
"""How long `shutdown` lets the DHT node leave. On loopback it takes milliseconds; when p2pd died
first (a signal to the peer's whole process group reaches the daemon too) the node waits on the dead
daemon for as long as it is given: a bootstrap peer with the 30 s request timeout took 32 s to stop."""


class Peer:
    """A DHT node with hotkey-signed records and a P2P payload server, driven from synchronous code.

    :param host_maddrs: multiaddrs to listen on (port 0 picks a free port)
    :param initial_peers: multiaddrs (with ``/p2p/<peer id>``) of DHT peers to join through; empty
      starts a new DHT (a bootstrap peer)
    :param announce_maddrs: multiaddrs other peers should dial, when they differ from ``host_maddrs``
      (e.g. a public address in front of NAT); explicit ports only
    :param join_timeout: seconds to start p2pd and hear back from a bootstrap peer
    :param request_timeout: seconds for one ``publish`` or ``read``
    :param keep_payloads: how many served payloads to keep (oldest evicted first)
    :raises NetworkError: if an address is malformed, a port is in use, or no bootstrap peer answers

    Attributes: ``peer_id`` (base58, what announcements name), ``maddrs`` (multiaddrs with ``/p2p/``,
    what other peers join through), ``bytes_served`` / ``bytes_fetched`` (payload traffic), ``dropped``
    (records ``read`` discarded, by reason) and ``validator.rejected`` (records this DHT node refused).

    Example::

        with Peer(initial_peers=["/ip4/10.0.0.1/tcp/4321/p2p/12D3Koo..."]) as peer:
            sha = peer.serve_payload(payload)
            peer.publish(round_key(run, r, "announcement"), hotkey, {..., "sha256": sha, "peer_id": peer.peer_id})
            for hotkey, record in peer.read(round_key(run, r, "announcement")).items():
                data = peer.fetch(record["peer_id"], record["sha256"], max_bytes=64 << 20, timeout=30)
    """

    def __init__(
        self,
        host_maddrs: Sequence[str] = DEFAULT_HOST_MADDRS,
        initial_peers: Sequence[str] = (),
        announce_maddrs: Sequence[str] | None = None,
        join_timeout: float = 10.0,
        request_timeout: float = 30.0,
        keep_payloads: int = 4,
    ):
        _check_listen_maddrs(host_maddrs)
        for maddr in initial_peers:
            if "p2p" not in _parse_maddr(maddr):
                raise NetworkError(f"initial peer {maddr!r} lacks a /p2p/<peer id> part")
        for maddr in announce_maddrs or ():
            _parse_maddr(maddr)

        self.request_timeout = request_timeout
        self.bytes_fetched = 0
        self.dropped: Counter[str] = Counter()  # records that failed verification in read(), by reason
        self.validator = HotkeyRecordValidator()
        self._server = PayloadServer(keep=keep_payloads)
        self._loop = BackgroundLoop(name="distrain-peer")
        try:
            self._p2p, self._node, visible_maddrs = self._loop.run(
                self._start(list(host_maddrs), list(initial_peers), announce_maddrs, join_timeout)
            )
        except BaseException:
            self._loop.shutdown()
            raise
        self.peer_id = str(self._p2p.peer_id)
        self.maddrs = [str(maddr) for maddr in visible_maddrs]

    async def _start(
        self,
        host_maddrs: list[str],
        initial_peers: list[str],
        announce_maddrs: Sequence[str] | None,
        join_timeout: float,
    ) -> tuple[P2P, DHTNode, list[Multiaddr]]:
        # Bounded by p2pd's own startup_timeout rather than by cancelling create(), which would orphan the
        # daemon. p2pd itself dials the bootstrap peers, and fails at once when none of them connects.
        try:
            p2p = await P2P.create(
                initial_peers=initial_peers,
                host_maddrs=host_maddrs,
                announce_maddrs=announce_maddrs,
                startup_timeout=join_timeout,
            )
        except P2PDaemonError as e:
            # p2pd reports bootstrap peers that refuse connections at once, but only times out (as a whole)
            # on peers that accept TCP yet never complete the libp2p handshake.
            if initial_peers and "bootstrap" in str(e):
                raise _join_error(initial_peers, "no bootstrap peer answered") from None
            if initial_peers and "failed to start in" in str(e):
                raise _join_error(
                    initial_peers, f"no bootstrap peer answered within {join_timeout:g} s"
                ) from None
            raise NetworkError(f"could not start p2pd: {one_line(e)}") from None
        try:
            node = await asyncio.wait_for(
                DHTNode.create(
                    p2p=p2p,
                    initial_peers=initial_peers,
                    record_validator=self.validator,
                    bootstrap_timeout=join_timeout,
                ),
                join_timeout,
            )
            await self._server.register(p2p)
            visible_maddrs = await p2p.get_visible_maddrs()
        except BaseException as e:
            await p2p.shutdown()
            if isinstance(e, asyncio.TimeoutError):
                raise _join_error(
                    initial_peers, f"no bootstrap peer answered within {join_timeout:g} s"
                ) from None
            if isinstance(e, RuntimeError) and "bootstrap failed" in str(e):
                raise _join_error(initial_peers, "no bootstrap peer answered a DHT ping") from None
            raise
        return p2p, node, visible_maddrs

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    @property
    def bytes_served(self) -> int:
        """Payload bytes sent to other peers since start."""
        return self._server.bytes_served

    def publish(self, key: str, keypair: Signer, body: Mapping[str, Any], ttl_s: float) -> bool:
        """Sign ``body`` with ``keypair`` and store it under ``key``, subkey = the hotkey, for ``ttl_s`` seconds.

        :returns: whether at least one DHT node (possibly this one) stored the record
        :raises ValueError: if the body is not a valid record or ``key`` is not the record's round key
        """
        record = sign_record(keypair, body)
        expected_key = round_key(record["run"], record["round"], record["kind"])
        if key != expected_key:
            raise ValueError(f"a record for {expected_key!r} cannot be published under {key!r}")

        async def store() -> bool:
            self.validator.expect(key)
            return await self._node.store(key, record, get_dht_time() + ttl_s, subkey=record["hotkey"])

        try:
            return self._loop.run(store(), self.request_timeout)
        except TimeoutError:
            return False

    def read(self, key: str) -> dict[str, dict[str, Any]]:
        """All valid records under ``key``: hotkey -> record. Invalid ones are dropped and counted in ``dropped``.

        :raises TimeoutError: if the DHT lookup takes longer than ``request_timeout``
        """

        async def lookup() -> Any:
            self.validator.expect(key)
            # latest=True asks every node near the key and merges their subkeys, rather than stopping at the
            # first node that answers (which may hold only some hotkeys' records).
            return await self._node.get(key, latest=True)

        found = self._loop.run(lookup(), self.request_timeout)
        if found is None:
            return {}
        if not isinstance(found.value, dict):
            self.dropped["malformed"] += 1
            return {}
        records = {}
        raw_id = key_id(key)
        for subkey, item in found.value.items():
            reason = check_entry(raw_id, subkey, item.value)
            if reason is None:
                records[subkey] = item.value
            else:
                self.dropped[reason] += 1
        return records

    def serve_payload(self, data: bytes) -> str:
        """Serve ``data`` to other peers; return its sha256 (hex), to announce with ``peer_id``."""
        return self._server.put(data)

    def fetch(self, peer_id: str, sha256: str, max_bytes: int, timeout: float) -> bytes:
        """Fetch and verify payload ``sha256`` from ``peer_id`` (our own payloads are returned directly).

        :raises FetchError: ``timeout``, ``unreachable``, ``oversized``, ``hash_mismatch`` or ``not_found``
        """
        if peer_id == self.peer_id:
            # p2pd cannot open a stream to itself, and a peer aggregating a round includes its own payload.
            data = self._server.get(sha256)
            if data is None:
                raise FetchError("not_found", f"this peer does not serve {sha256}")
            if len(data) > max_bytes:
                raise FetchError("oversized", f"{len(data)} bytes, the limit is {max_bytes}")
            return data
        deadline, attempt = time.monotonic() + timeout, 1
        while True:
            remaining = deadline - time.monotonic()
            try:
                # The margin lets fetch_payload's own timeout fire first, with its more precise reason.
                data = self._loop.run(
                    fetch_payload(self._p2p, peer_id, sha256, max_bytes, remaining), remaining + 5.0
                )
                break
            except TimeoutError:
                raise FetchError(
                    "timeout", f"no complete payload from {peer_id} within {timeout:g} s"
                ) from None
            except FetchError as error:
                # Under load, a stream sometimes breaks or delivers damaged bytes (seen on loopback with
                # many peers): ask once more while time remains. A lying peer costs one extra fetch.
                if error.reason not in RETRIED or attempt == FETCH_ATTEMPTS or remaining < 1.0:
                    raise
                attempt += 1
        self.bytes_fetched += len(data)
        return data

    def shutdown(self) -> None:
        """Leave the DHT and stop p2pd (waiting for the daemon to exit) and the event loop. Idempotent."""
        if not self._loop.is_running:
            return
        try:
            with contextlib.suppress(TimeoutError):  # p2pd is gone or wedged: the node cannot leave
                self._loop.run(self._node.shutdown(), LEAVE_SECONDS)
            self._loop.run(self._p2p.shutdown(), self.request_timeout)
        finally:
            self._loop.shutdown()

    def __repr__(self) -> str:
        return f"Peer({self.peer_id}, maddrs={self.maddrs})"


def _parse_maddr(maddr: str) -> Multiaddr:
    try:
        return Multiaddr(maddr)
    except ValueError as e:
        # hivemind's message repeats the address ("Invalid MultiAddr '...': why"); keep the why.
        raise NetworkError(f"malformed multiaddr {maddr!r}: {one_line(e).split(': ', 1)[-1]}") from None


def _check_listen_maddrs(maddrs: Sequence[str]) -> None:
    """Raise NetworkError for a malformed listen address or a TCP port that is already taken."""
    for maddr in maddrs:
        parsed = _parse_maddr(maddr)
        ip = next((protocol for protocol in ("ip4", "ip6") if protocol in parsed), None)
        if ip is None or "tcp" not in parsed or int(parsed["tcp"]) == 0:
            continue
        host, port = parsed[ip], int(parsed["tcp"])
        with socket.socket(socket.AF_INET if ip == "ip4" else socket.AF_INET6, socket.SOCK_STREAM) as probe:
            # SO_REUSEADDR ignores TIME_WAIT leftovers of a previous run (as p2pd does) but not a live listener.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise NetworkError(f"port {port} on {host} is already in use") from None
                raise NetworkError(f"cannot listen on {host} port {port}: {e.strerror}") from None


def listen_maddr(host: str, port: int) -> str:
    """The multiaddr for listening on TCP ``host:port`` (an IPv4 or IPv6 address)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise NetworkError(f"host must be an IPv4 or IPv6 address, got {host!r}") from None
    return f"/ip{address.version}/{address}/tcp/{port}"


def _join_error(initial_peers: Sequence[str], why: str) -> NetworkError:
    more = f" (and {len(initial_peers) - 1} more)" if len(initial_peers) > 1 else ""
    return NetworkError(f"could not join the DHT through {initial_peers[0]}{more}: {why}")
