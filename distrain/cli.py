"""`distrain` command line: swarm, miner, validator, dht, chain, recipe.

Any argument of the form `--section.key VALUE` that a command does not know itself is a recipe
override (`--inner.steps 20`). Errors users can fix print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import signal
import sys

from distrain.bench.commands import add_bench_commands
from distrain.chain import ChainError
from distrain.chain.cli import add_chain_commands
from distrain.config import RecipeError, explain, load_recipe
from distrain.logs import add_log_format_argument, configure_logging
from distrain.network import NetworkError
from distrain.network.bootstrap import add_dht_command
from distrain.node import NodeError
from distrain.tracking import WANDB_MODES, TrackingError
from distrain.validation import report

USER_ERRORS = (RecipeError, ChainError, NetworkError, NodeError, TrackingError, TimeoutError)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt, so `finally` blocks stop children and p2pd as on Ctrl+C."""
    signal.signal(signal.SIGTERM, _interrupt)


class _CommandParser(argparse.ArgumentParser):
    """A command's parser that hands `COMMAND VERB ...` to the verb's own parser when it has one.

    `distrain validator report` cannot be an argparse subcommand of `distrain validator`: the node's
    required flags would be demanded of it, and the value of a recipe override (`--inner.steps 20`)
    would be taken for a subcommand's name.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.verbs: dict[str, argparse.ArgumentParser] = {}

    def parse_known_args(self, args=None, namespace=None):
        if args and args[0] in self.verbs:
            return self.verbs[args[0]].parse_known_args(args[1:], namespace)
        return super().parse_known_args(args, namespace)


def _add_recipe_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recipe",
        default=None,
        help="YAML recipe (default: the embedded tiny-gpt defaults); "
        "override any key with --section.key VALUE",
    )


def _add_node_arguments(parser: argparse.ArgumentParser) -> None:
    _add_recipe_argument(parser)
    parser.add_argument("--wallet.path", dest="wallet_path", required=True, help="folder holding the wallets")
    parser.add_argument("--wallet.name", dest="wallet_name", required=True, help="wallet (coldkey) name")
    parser.add_argument("--wallet.hotkey", dest="wallet_hotkey", default="default", help="hotkey name")
    parser.add_argument(
        "--initial-peers", nargs="*", default=[], help="multiaddrs of DHT peers to join through"
    )
    parser.add_argument(
        "--initial-peers-file",
        default=None,
        help="wait for this file to list them (distrain dht --maddrs-file)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--out", default=".", help="folder for events, logs and state")
    parser.add_argument("--genesis", type=float, default=None, help="unix time at which round 0 starts")
    parser.add_argument("--genesis-file", default=None, help="wait for this file to hold the genesis")
    parser.add_argument("--rounds", type=int, default=None, help="stop after this many rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--wandb.mode",
        dest="wandb_mode",
        choices=[mode for mode in WANDB_MODES if mode],
        default=None,
        help="track to wandb in this mode: short for --tracking.backend wandb --tracking.mode MODE",
    )
    add_log_format_argument(parser)


def _node_options(args):
    from distrain.node import NodeOptions

    return NodeOptions(
        wallet_path=args.wallet_path,
        wallet_name=args.wallet_name,
        wallet_hotkey=args.wallet_hotkey,
        initial_peers=args.initial_peers,
        initial_peers_file=args.initial_peers_file,
        host=args.host,
        port=args.port,
        out_dir=args.out,
        genesis=args.genesis,
        genesis_file=args.genesis_file,
        rounds=args.rounds,
    )


def _run_node(args, overrides: list[str], make_node) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    stop_on_sigterm()
    if args.wandb_mode:
        overrides = [*overrides, "--tracking.backend", "wandb", "--tracking.mode", args.wandb_mode]
    node = make_node(load_recipe(args.recipe, overrides), _node_options(args))
    try:
        node.run()
    except KeyboardInterrupt:
        pass
    finally:
        node.close()
    return 0


def cmd_miner(args, overrides: list[str]) -> int:
    from distrain.miner import start_miner
    from distrain.training.cluster import exit_launched_rank

    code = _run_node(args, overrides, lambda recipe, options: start_miner(recipe, options, args.behaviour))
    return exit_launched_rank(code)


def cmd_validator(args, overrides: list[str]) -> int:
    from distrain.validator import Validator

    return _run_node(args, overrides, lambda recipe, options: Validator(recipe, options, args.secret_file))


def cmd_swarm(args, overrides: list[str]) -> int:
    from distrain.adversaries import BEHAVIOURS
    from distrain.swarm import SwarmOptions, run_swarm

    recipe = load_recipe(args.recipe, overrides)
    unknown = sorted(set(args.adversaries.split(",")) - set(BEHAVIOURS) - {""})
    if unknown:
        raise NodeError(f"unknown adversaries {unknown}, expected names from {sorted(BEHAVIOURS)}")
    stop_on_sigterm()
    options = SwarmOptions(
        miners=args.miners,
        validators=args.validators,
        freeriders=args.freeriders,
        adversaries=[name for name in args.adversaries.split(",") if name],
        rounds=args.rounds,
        out_dir=args.out,
        startup_timeout=args.startup_timeout,
        miner_processes=args.miner_processes,
    )
    return run_swarm(recipe, options)


def cmd_recipe(args, overrides: list[str]) -> int:
    import yaml

    if args.explain:
        print(explain())
        return 0
    recipe = load_recipe(args.recipe, overrides)
    print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
    print(f"# recipe hash: {recipe.hash()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distrain", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_CommandParser)

    swarm = commands.add_parser("swarm", help="run a whole local subnet on 127.0.0.1")
    _add_recipe_argument(swarm)
    swarm.add_argument("--miners", type=int, default=4, help="honest miners")
    swarm.add_argument("--validators", type=int, default=1, help="validators")
    swarm.add_argument("--freeriders", type=int, default=1, help="miners that publish a zero delta")
    swarm.add_argument(
        "--adversaries", default="", help="comma-separated cheating miners to add, e.g. noise,copycat,stale"
    )
    swarm.add_argument("--rounds", type=int, default=10, help="rounds to run")
    swarm.add_argument("--out", default="runs/swarm", help="output folder (summary.json, loss.png, logs)")
    swarm.add_argument("--startup-timeout", type=float, default=120.0, help="seconds for all peers to start")
    swarm.add_argument(
        "--miner-processes",
        type=int,
        default=1,
        help="run the first honest miner as this many DDP processes (accelerate launch, CPU)",
    )
    swarm.set_defaults(func=cmd_swarm)

    miner = commands.add_parser("miner", help="train and publish pseudo-gradients")
    _add_node_arguments(miner)
    miner.add_argument(
        "--behaviour", default="honest", help="honest, or a cheat for tests (see distrain.adversaries)"
    )
    miner.set_defaults(func=cmd_miner)

    validator = commands.add_parser(
        "validator",
        help="score miners and set weights; `validator report`: what one decided, round by round",
        epilog="distrain validator report --out DIR [--png FILE] [--last N] [--json]: "
        "tables and a plot of the audit trail of the validator that ran with --out DIR",
    )
    _add_node_arguments(validator)
    validator.add_argument(
        "--secret-file", default=None, help="evaluation secret (default: OUT/secret, created on first start)"
    )
    validator.set_defaults(func=cmd_validator)
    validator.verbs["report"] = report.build_parser("distrain validator report")

    recipe = commands.add_parser("recipe", help="print the resolved recipe and its hash")
    _add_recipe_argument(recipe)
    recipe.add_argument("--explain", action="store_true", help="every key with its default and meaning")
    recipe.set_defaults(func=cmd_recipe)

    add_log_format_argument(add_dht_command(commands))
    add_chain_commands(commands)
    add_bench_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    configure_logging(getattr(args, "log_format", "text"))
    takes_overrides = args.func in (cmd_miner, cmd_validator, cmd_swarm, cmd_recipe)
    if rest and not takes_overrides:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        return args.func(args, rest) if takes_overrides else args.func(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
