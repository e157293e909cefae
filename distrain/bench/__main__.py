"""`python -m distrain.bench compress|convergence|rounds ...`: the benchmarks without the rest of the CLI."""

import argparse
import sys

from distrain.bench.commands import add_bench_subcommands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="distrain bench", description=__doc__.splitlines()[0])
    add_bench_subcommands(parser.add_subparsers(dest="bench_command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
