"""Payloads (compressed pseudo-gradients, checkpoints) served peer-to-peer over hivemind's P2P streams.

DHT records only say *where* a payload is and what its sha256 is; the bytes move over a libp2p stream
from the publishing peer. A unary P2P message is capped at 2 MiB, so the server answers a request with
a stream of chunks of at most 1 MiB. The fetching side trusts nothing it receives: it stops as soon as
more than ``max_bytes`` arrived, bounds the whole exchange with a timeout (a stalled peer must never
hang a round), and checks the sha256 before returning.

The two protobuf messages are built from a descriptor at import time, so there is no ``protoc`` step;
no hivemind message fits (``runtime_pb2.Tensor`` would drag tensor semantics into an opaque byte stream).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from hivemind.p2p import P2P, P2PContext, PeerID

from distrain.network.errors import FETCH_ERRORS, FetchError, one_line

HANDLER_NAME = "distrain.payload.v1"
CHUNK_BYTES = 1 << 20


def _build_messages() -> tuple[type, type]:
    FieldProto = descriptor_pb2.FieldDescriptorProto
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="distrain/payload.proto", package="distrain", syntax="proto3"
    )

    request = file_proto.message_type.add(name="PayloadRequest")
    request.field.add(name="sha256", number=1, type=FieldProto.TYPE_STRING, label=FieldProto.LABEL_OPTIONAL)

    chunk = file_proto.message_type.add(name="PayloadChunk")
    chunk.field.add(name="data", number=1, type=FieldProto.TYPE_BYTES, label=FieldProto.LABEL_OPTIONAL)
    chunk.field.add(name="total_size", number=2, type=FieldProto.TYPE_UINT64, label=FieldProto.LABEL_OPTIONAL)
    chunk.field.add(name="error", number=3, type=FieldProto.TYPE_STRING, label=FieldProto.LABEL_OPTIONAL)

    # A private pool: re-importing this module (or another package using the same names) cannot clash.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"distrain.{name}"))
        for name in ("PayloadRequest", "PayloadChunk")
    )


PayloadRequest, PayloadChunk = _build_messages()
PayloadRequest.__doc__ = "Ask a peer for the payload with this sha256 (lowercase hex)."
PayloadChunk.__doc__ = "One piece of a payload (``data``, ``total_size`` of the whole) or an ``error`` code."


class PayloadServer:
    """Serves byte payloads by sha256 to any peer that asks, over a P2P stream handler.

    Only the ``keep`` most recently put payloads are kept: a peer serves the current round (and a few
    late fetchers of the previous ones), never its whole history. ``put`` may be called from any thread.

    :param keep: how many payloads to keep; putting one more evicts the oldest.
    """

    def __init__(self, keep: int = 4):
        self._keep = keep
        self._payloads: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.bytes_served = 0

    def put(self, data: bytes) -> str:
        """Start serving ``data``; return its sha256 (lowercase hex), the name peers fetch it by."""
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            self._payloads[digest] = bytes(data)
            self._payloads.move_to_end(digest)
            while len(self._payloads) > self._keep:
                self._payloads.popitem(last=False)
        return digest

    def get(self, sha256: str) -> bytes | None:
        """The payload with this sha256, if still served."""
        with self._lock:
            return self._payloads.get(sha256)

    async def register(self, p2p: P2P) -> None:
        """Install the stream handler on ``p2p``; call once per P2P instance."""
        await p2p.add_protobuf_handler(HANDLER_NAME, self._serve, PayloadRequest, stream_output=True)

    async def _serve(self, request: PayloadRequest, _context: P2PContext) -> AsyncIterator[PayloadChunk]:
        data = self.get(request.sha256)
        if data is None:
            yield PayloadChunk(error="not_found")
            return
        # max(..., 1): an empty payload still gets one (empty) chunk, so the fetcher sees its total_size.
        for offset in range(0, max(len(data), 1), CHUNK_BYTES):
            piece = data[offset : offset + CHUNK_BYTES]
            yield PayloadChunk(data=piece, total_size=len(data))
            self.bytes_served += len(piece)


async def fetch_payload(
    p2p: P2P, peer_id: str | PeerID, sha256: str, max_bytes: int, timeout: float
) -> bytes:
    """Fetch the payload ``sha256`` from ``peer_id`` and return it, verified.

    :param max_bytes: refuse payloads larger than this (checked on the declared size and on every chunk)
    :param timeout: seconds for the whole exchange, connection included
    :raises FetchError: with reason ``timeout``, ``unreachable``, ``oversized``, ``hash_mismatch`` or
      ``not_found``
    """
    if isinstance(peer_id, str):
        try:
            peer_id = PeerID.from_base58(peer_id)
        except ValueError as e:
            raise FetchError("unreachable", f"invalid peer id {peer_id!r}: {e}") from None
    try:
        data = await asyncio.wait_for(_receive(p2p, peer_id, sha256, max_bytes), timeout)
    except asyncio.TimeoutError:
        raise FetchError("timeout", f"no complete payload from {peer_id} within {timeout:g} s") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise FetchError("hash_mismatch", f"{peer_id} sent {len(data)} bytes that do not hash to {sha256}")
    return data


async def _receive(p2p: P2P, peer_id: PeerID, sha256: str, max_bytes: int) -> bytes:
    try:
        stream = await p2p.iterate_protobuf_handler(
            peer_id, HANDLER_NAME, PayloadRequest(sha256=sha256), PayloadChunk
        )
    except Exception as e:  # p2pd reports dial failures as assorted ControlFailure / ConnectionErrors
        raise FetchError("unreachable", f"cannot open a stream to {peer_id}: {one_line(e)}") from None
    parts: list[bytes] = []
    received = declared = 0
    try:
        async for chunk in stream:
            if chunk.error:
                reason = chunk.error if chunk.error in FETCH_ERRORS else "unreachable"
                raise FetchError(reason, f"{peer_id} answered {chunk.error!r} for {sha256}")
            received += len(chunk.data)
            declared = chunk.total_size
            # Checked per chunk on what arrived too: the declared size is the sender's word only.
            size = max(declared, received)
            if size > max_bytes:
                raise FetchError(
                    "oversized", f"{peer_id} sends at least {size} bytes, the limit is {max_bytes}"
                )
            parts.append(chunk.data)
    except FetchError:
        raise
    except Exception as e:  # the stream broke midway (peer died, handler error)
        raise FetchError("unreachable", f"stream from {peer_id} failed: {one_line(e)}") from None
    finally:
        await stream.aclose()  # closes the stream, so the server stops sending at once
    if received < declared:
        raise FetchError("unreachable", f"stream from {peer_id} ended after {received} of {declared} bytes")
    return b"".join(parts)
