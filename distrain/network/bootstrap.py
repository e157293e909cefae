"""``distrain dht``: run a bootstrap DHT peer that other peers join through.

A bootstrap peer is an ordinary ``Peer`` started with no initial peers. It prints its multiaddrs (the
``--initial-peers`` for everyone else) and can write them to a file, atomically, so that scripts and
``distrain swarm`` can wait for the file instead of parsing output.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

from distrain.files import write_atomically
from distrain.logs import add_log_format_argument, configure_logging
from distrain.network.errors import NetworkError
from distrain.network.peer import Peer, listen_maddr


def run_bootstrap(
    host: str = "127.0.0.1",
    port: int = 0,
    maddrs_file: str | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Run a bootstrap DHT peer on ``host:port`` until SIGTERM/SIGINT or until ``stop_event`` is set.

    :param maddrs_file: if given, the peer's multiaddrs are written there, one per line, once it listens
    :param stop_event: an event that stops the peer when set (signals are only handled on the main thread)
    :raises NetworkError: if the peer cannot start (bad host, port in use)
    """
    stop_event = stop_event or threading.Event()
    # Handlers first: a signal during start-up must still shut p2pd down rather than orphan it.
    with _stop_on_signals(stop_event), Peer(host_maddrs=[listen_maddr(host, port)]) as peer:
        for maddr in peer.maddrs:
            print(maddr, flush=True)
        if maddrs_file is not None:
            # Readers poll for the file: they must see either nothing or every line.
            write_atomically(maddrs_file, "".join(f"{maddr}\n" for maddr in peer.maddrs))
        stop_event.wait()


@contextlib.contextmanager
def _stop_on_signals(event: threading.Event) -> Iterator[None]:
    """Set ``event`` on SIGTERM/SIGINT inside the block (a no-op off the main thread, where Python refuses)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        signum: signal.signal(signum, lambda *_: event.set()) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def add_dht_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``dht`` to a CLI's subcommands; ``args.func(args)`` runs it and returns the exit code."""
    parser = subparsers.add_parser("dht", help="run a bootstrap DHT peer", description=DESCRIPTION)
    _add_dht_arguments(parser)
    parser.set_defaults(func=_dht_main)
    return parser


DESCRIPTION = "Run a bootstrap DHT peer and print its multiaddrs (pass them to other peers as initial peers)."


def _add_dht_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="IP address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port to listen on; 0 picks a free one (default)"
    )
    parser.add_argument("--maddrs-file", help="also write the multiaddrs to this file, one per line")


def _dht_main(args: argparse.Namespace) -> int:
    try:
        run_bootstrap(host=args.host, port=args.port, maddrs_file=args.maddrs_file)
    except NetworkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m distrain.network ...``: ``distrain dht`` without importing the rest of distrain,
    which starts it a second sooner (``distrain swarm`` starts one per swarm)."""
    parser = argparse.ArgumentParser(prog="distrain dht", description=DESCRIPTION)
    _add_dht_arguments(parser)
    add_log_format_argument(parser)
    args = parser.parse_args(argv)
    configure_logging(args.log_format)
    return _dht_main(args)
