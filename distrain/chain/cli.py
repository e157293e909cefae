"""`distrain chain ...`: create, inspect and drive a subnet from the shell.

distrain chain create --chain.path runs/chain.db --tempo 20
distrain chain register --wallet.path runs/wallets --wallet.name v0 --create-wallet
distrain chain stake --wallet.path runs/wallets --wallet.name v0 --amount 1000
distrain chain metagraph
distrain chain metagraph --chain.backend bittensor --subtensor.network finney --netuid 3
distrain chain simulate --input scenario.json --output result.json --plot result.png

With ``--chain.backend bittensor`` the commands go through the bittensor SDK: to ``--subtensor.network``,
or, given ``--chain.path``, to the local chain file (the SDK's own code, offline).
"""

import argparse
import functools
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path

from distrain.logs import text_table

from .base import Chain, ChainError
from .bittensor_backend import BittensorChain
from .local import LocalChain, SubnetParams
from .simulate import SCHEMA, load_scenario, plot, simulate
from .wallets import create_wallet, load_wallet

DEFAULT_CHAIN_PATH = "runs/chain.db"
DEFAULT_WALLET_PATH = "runs/wallets"


def _user_errors(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn a ChainError into one ``error: ...`` line on stderr and exit status 2."""

    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ChainError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run


def _open(args: argparse.Namespace) -> Chain:
    if args.chain_backend == "local":
        return LocalChain(args.chain_path or DEFAULT_CHAIN_PATH, netuid=args.netuid)
    return BittensorChain(args.subtensor_network, args.netuid, path=args.chain_path)


def _where(args: argparse.Namespace) -> str:
    if args.chain_backend == "local":
        return f"at {args.chain_path or DEFAULT_CHAIN_PATH}"
    if args.chain_path:
        return f"at {args.chain_path} through the bittensor SDK"
    return f"on {args.subtensor_network}"


@_user_errors
def cmd_status(args: argparse.Namespace) -> int:
    with _open(args) as chain:
        graph = chain.metagraph()
        print(f"subnet {graph.netuid} {_where(args)}")
        # Only the local chain runs epochs on a schedule this tool knows.
        countdown = (
            f", next epoch in {chain.blocks_until_epoch()} blocks" if isinstance(chain, LocalChain) else ""
        )
        print(f"block {graph.block}{countdown}")
        print(f"neurons {graph.n}, with validator permit {sum(graph.validator_permit)}")
    return 0


@_user_errors
def cmd_metagraph(args: argparse.Namespace) -> int:
    with _open(args) as chain:
        graph = chain.metagraph()
    headers = ["uid", "hotkey", "stake", "permit", "incentive", "dividends", "emission", "last_weights"]
    rows = [
        [
            str(graph.uids[i]),
            graph.hotkeys[i][:10],
            f"{graph.stake[i]:.2f}",
            "yes" if graph.validator_permit[i] else "no",
            f"{graph.incentive[i]:.4f}",
            f"{graph.dividends[i]:.4f}",
            f"{graph.emission[i]:.4f}",
            "-" if graph.last_update[i] is None else str(graph.last_update[i]),
        ]
        for i in range(graph.n)
    ]
    print(f"subnet {graph.netuid}, block {graph.block}")
    print(text_table(headers, rows, left=()))
    return 0


@_user_errors
def cmd_register(args: argparse.Namespace) -> int:
    make = create_wallet if args.create_wallet else load_wallet
    wallet = make(args.wallet_path, args.wallet_name, args.wallet_hotkey)
    hotkey = wallet.hotkey.ss58_address
    with _open(args) as chain:
        uid = chain.register(hotkey, wallet.coldkeypub.ss58_address)
    print(f"uid {uid}: hotkey {hotkey}")
    return 0


@_user_errors
def cmd_stake(args: argparse.Namespace) -> int:
    wallet = load_wallet(args.wallet_path, args.wallet_name, args.wallet_hotkey)
    hotkey = wallet.hotkey.ss58_address
    with _open(args) as chain:
        chain.add_stake(hotkey, args.amount)
        graph = chain.metagraph()
    uid = graph.uid_of(hotkey)
    permit = "with" if graph.validator_permit[uid] else "without"
    print(f"uid {uid}: stake {graph.stake[uid]:.2f}, {permit} validator permit")
    return 0


@_user_errors
def cmd_epoch(args: argparse.Namespace) -> int:
    with _open(args) as chain:
        if not isinstance(chain, LocalChain):
            raise ChainError(
                "the bittensor backend cannot run epochs (a Bittensor network runs its own every tempo "
                "blocks); `distrain chain epoch` needs --chain.backend local"
            )
        record = chain.run_epoch()
    print(f"epoch at block {record['block']}")
    rows = [
        [
            str(uid),
            f"{record['incentive'][uid]:.4f}",
            f"{record['dividends'][uid]:.4f}",
            f"{record['emission'][uid]:.4f}",
        ]
        for uid in record["uids"]
    ]
    print(text_table(["uid", "incentive", "dividends", "emission"], rows, left=()))
    return 0


@_user_errors
def cmd_create(args: argparse.Namespace) -> int:
    path = Path(args.chain_path or DEFAULT_CHAIN_PATH)
    if args.force:
        # SQLite's WAL and shared-memory files belong to the old chain too.
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
    params = SubnetParams(**{f.name: getattr(args, f.name) for f in fields(SubnetParams)})
    with LocalChain(path, netuid=args.netuid, params=params, create=True):
        pass
    print(f"created subnet {args.netuid} at {path}: {params}")
    return 0


@_user_errors
def cmd_simulate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.input)
    records = simulate(scenario)
    params = {"yuma3": scenario.yuma3, **asdict(scenario.params)}
    text = json.dumps({"params": params, "epochs": records}, indent=1)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    if args.plot:
        plot(records, args.plot)
    last = records[-1]
    summary = ", ".join(
        f"uid {i}: I {inc:.4f} D {div:.4f}"
        for i, (inc, div) in enumerate(zip(last["incentive"], last["dividends"]))
    )
    print(f"{len(records)} epochs; last: {summary}", file=sys.stderr)
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chain.path", dest="chain_path", help=f"local chain file (SQLite; default {DEFAULT_CHAIN_PATH})"
    )
    parser.add_argument("--netuid", type=int, default=1, help="subnet id")


def _add_backend(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--chain.backend",
        dest="chain_backend",
        choices=["local", "bittensor"],
        default="local",
        help="the local chain file, or a Bittensor network through the SDK",
    )
    parser.add_argument(
        "--subtensor.network",
        dest="subtensor_network",
        default="finney",
        help="bittensor backend: finney, test, local or a ws:// URL (ignored with --chain.path)",
    )


def _add_wallet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wallet.path", dest="wallet_path", default=DEFAULT_WALLET_PATH, help="folder holding the wallets"
    )
    parser.add_argument("--wallet.name", dest="wallet_name", required=True, help="wallet (coldkey) name")
    parser.add_argument("--wallet.hotkey", dest="wallet_hotkey", default="default", help="hotkey name")


def add_chain_commands(subparsers) -> None:
    """Add ``chain`` and its subcommands to a parser's subparsers; each sets ``func(args) -> exit code``."""
    chain = subparsers.add_parser("chain", help="create, inspect and drive a subnet (local or Bittensor)")
    commands = chain.add_subparsers(dest="chain_command", required=True)

    def add(
        name: str, func: Callable[[argparse.Namespace], int], help: str, backends: bool = True
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help)
        _add_common(parser)
        if backends:
            _add_backend(parser)
        parser.set_defaults(func=func)
        return parser

    add("status", cmd_status, "block, epoch countdown, number of neurons")
    add("metagraph", cmd_metagraph, "table of neurons: stake, permit, incentive, dividends, emission")
    add("epoch", cmd_epoch, "run an epoch now")

    register = add("register", cmd_register, "register a wallet's hotkey")
    _add_wallet(register)
    register.add_argument("--create-wallet", action="store_true", help="create the wallet first if missing")

    stake = add("stake", cmd_stake, "add stake to a registered hotkey")
    _add_wallet(stake)
    stake.add_argument("--amount", type=float, required=True, help="stake to add")

    create = add("create", cmd_create, "create a new local subnet file", backends=False)
    create.add_argument("--force", action="store_true", help="replace an existing file")
    for field in fields(SubnetParams):
        # type=bool would read "--liquid-alpha False" as True: booleans get --x / --no-x instead.
        kind = (
            {"action": argparse.BooleanOptionalAction}
            if isinstance(field.default, bool)
            else {"type": type(field.default)}
        )
        create.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            default=field.default,
            help=f"subnet param (default {field.default})",
            **kind,
        )

    simulate_parser = commands.add_parser(
        "simulate",
        help="run Yuma Consensus offline on a JSON scenario of stakes and weights",
        description="Run Yuma Consensus epochs offline, from a fresh subnet, as subtensor's epoch would.",
        epilog=SCHEMA,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    simulate_parser.add_argument("--input", required=True, help="scenario JSON (schema below)")
    simulate_parser.add_argument("--output", help="write the result JSON here (default: stdout)")
    simulate_parser.add_argument(
        "--plot", help="write a PNG of dividends and incentive per neuron over epochs"
    )
    simulate_parser.set_defaults(func=cmd_simulate)
