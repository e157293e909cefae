"""The `distrain bench` subcommands, for the distrain CLI and `python -m distrain.bench`."""

from __future__ import annotations

import argparse

from distrain.bench.compress import add_compress_command
from distrain.bench.convergence import add_convergence_command
from distrain.bench.rounds import add_rounds_command


def add_bench_subcommands(commands: argparse._SubParsersAction) -> None:
    """Register `compress`, `convergence` and `rounds` on a `bench` parser's subparsers."""
    add_compress_command(commands)
    add_convergence_command(commands)
    add_rounds_command(commands)


def add_bench_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `distrain bench` and its subcommands on the CLI's top-level subparsers."""
    bench = subparsers.add_parser("bench", help="measure codecs, and convergence against bytes sent")
    add_bench_subcommands(bench.add_subparsers(dest="bench_command", required=True))
