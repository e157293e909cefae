"""`python -m distrain.bench compress|convergence|rounds ...`: the benchmarks without the rest of the CLI."""

import argparse
import sys

from distrain.bench.compress import add_compress_command
from distrain.bench.convergence import add_convergence_command
from distrain.bench.rounds import add_rounds_command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distrain bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="bench_command", required=True)
    add_compress_command(commands)
    add_convergence_command(commands)
    add_rounds_command(commands)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
