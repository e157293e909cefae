import argparse

import pytest

from distrain.chain.cli import add_chain_commands


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="distrain")
    add_chain_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["chain", *argv])
    return args.func(args)


@pytest.fixture
def flags(tmp_path):
    """Flags pointing every command at a chain file and wallets in tmp_path."""
    chain = ["--chain.path", str(tmp_path / "chain.db")]
    wallet = ["--wallet.path", str(tmp_path / "wallets")]
    return chain, wallet


def test_create_register_stake_epoch(flags, capsys):
    chain, wallet = flags
    assert run("create", *chain, "--tempo", "5", "--block-seconds", "1000") == 0
    assert "tempo=5" in capsys.readouterr().out
    assert run("register", *chain, *wallet, "--wallet.name", "v", "--create-wallet") == 0
    assert run("register", *chain, *wallet, "--wallet.name", "m", "--create-wallet") == 0
    assert "uid 1" in capsys.readouterr().out
    assert run("stake", *chain, *wallet, "--wallet.name", "v", "--amount", "10") == 0
    assert "with validator permit" in capsys.readouterr().out

    assert run("status", *chain) == 0
    out = capsys.readouterr().out
    assert "block 0, next epoch in 5 blocks" in out and "neurons 2, with validator permit 1" in out

    assert run("epoch", *chain) == 0
    assert "epoch at block 0" in capsys.readouterr().out
    assert run("metagraph", *chain) == 0
    header, validator, miner = capsys.readouterr().out.splitlines()[1:]
    assert header.split() == [
        "uid",
        "hotkey",
        "stake",
        "permit",
        "incentive",
        "dividends",
        "emission",
        "last_weights",
    ]
    assert validator.split()[2:4] == ["10.00", "yes"] and miner.split()[3] == "no"


def test_errors_are_one_line_and_exit_2(flags, capsys):
    chain, wallet = flags
    assert run("status", *chain) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no local chain at") and err.count("\n") == 1

    assert run("create", *chain) == 0
    assert run("create", *chain) == 2
    assert "already exists" in capsys.readouterr().err
    assert run("create", *chain, "--force", "--tempo", "3") == 0
    assert run("stake", *chain, *wallet, "--wallet.name", "ghost", "--amount", "1") == 2
    assert "has no key file" in capsys.readouterr().err
    assert run("create", *chain, "--force", "--kappa", "7") == 2


def test_bittensor_backend_on_a_local_file(flags, capsys):
    """The same commands through the bittensor SDK, against the local chain file."""
    chain, wallet = flags
    sdk = ["--chain.backend", "bittensor", *chain]
    assert run("create", *chain, "--block-seconds", "1000") == 0
    assert run("register", *chain, *wallet, "--wallet.name", "v", "--create-wallet") == 0
    assert run("stake", *chain, *wallet, "--wallet.name", "v", "--amount", "10") == 0
    capsys.readouterr()

    assert run("status", *sdk) == 0
    status = capsys.readouterr().out.splitlines()
    assert status[0].endswith("through the bittensor SDK") and status[1] == "block 0"
    assert run("metagraph", *sdk) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[2:4] == ["10.00", "yes"]


@pytest.mark.parametrize(
    "command, message",
    [
        (["register", "--wallet.name", "v", "--create-wallet"], "btcli subnets register"),
        (["stake", "--wallet.name", "v", "--amount", "1"], "btcli stake add"),
        (["epoch"], "needs --chain.backend local"),
    ],
)
def test_bittensor_backend_refusals_are_one_line(flags, capsys, command, message):
    chain, wallet = flags
    assert run("create", *chain) == 0
    assert run("register", *chain, *wallet, "--wallet.name", "v", "--create-wallet") == 0
    capsys.readouterr()
    wallet_flags = wallet if "--wallet.name" in command else []
    assert run(command[0], "--chain.backend", "bittensor", *chain, *wallet_flags, *command[1:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_bittensor_backend_unreachable_network(capsys):
    argv = ["--chain.backend", "bittensor", "--subtensor.network", "ws://127.0.0.1:1"]
    assert run("status", *argv) == 2
    err = capsys.readouterr().err
    assert "ws://127.0.0.1:1" in err and err.count("\n") == 1
