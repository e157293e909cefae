"""Errors of the network layer, worded for the person running the peer."""

from __future__ import annotations


class NetworkError(Exception):
    """The peer could not start or join the network; the message is one line meant for the user."""


FETCH_ERRORS = ("timeout", "unreachable", "oversized", "hash_mismatch", "not_found")


class FetchError(Exception):
    """A payload could not be fetched; ``reason`` is one of ``FETCH_ERRORS``:

    ``timeout`` (no complete payload in time), ``unreachable`` (no stream to the peer, or it broke),
    ``oversized`` (more than ``max_bytes`` offered or sent), ``hash_mismatch`` (the bytes do not hash to
    the requested sha256), ``not_found`` (the peer does not serve that payload, or no longer does).
    """

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


def one_line(error: BaseException) -> str:
    """``error``'s message on a single line (p2pd and libp2p errors often span several)."""
    return " ".join(str(error).split()) or type(error).__name__
