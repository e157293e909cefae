"""Bittensor wallets on an explicit path: offline creation without passwords, loading with clear errors.

The path is always given by the caller, so nothing here reads or writes the user's ``~/.bittensor``.
"""

import bittensor as bt
from bittensor.sp_core import KeyfileError, Keypair

from distrain.keys import derived_seed

from .base import ChainError


def create_wallet(path: str, name: str, hotkey: str = "default", seed: str | None = None) -> bt.Wallet:
    """Create an unencrypted coldkey and hotkey under ``path/name``, offline and without prompts.

    Keys that already exist are kept: a throwaway wallet may still hold stake in a local chain, and a
    second call (a restarted swarm) should get the same keys back rather than new ones. With `seed`,
    the keys derive from it and the wallet's name: benchmarks get the same hotkeys, hence the same
    page assignments and batches, in every run. Never seed keys that will hold real value.
    """
    wallet = bt.Wallet(name=name, hotkey=hotkey, path=path)
    if not wallet.coldkeypub_file.exists_on_device():
        _make_key(wallet, "coldkey", seed)
    if not wallet.hotkey_file.exists_on_device():
        _make_key(wallet, "hotkey", seed)
    return wallet


def _make_key(wallet: bt.Wallet, kind: str, seed: str | None) -> None:
    options = {"use_password": False, "overwrite": True, "suppress": True}
    if seed is None:
        getattr(wallet, f"create_new_{kind}")(**options)
    else:
        getattr(wallet, f"regenerate_{kind}")(seed=derived_seed(seed, wallet.name, kind), **options)


def load_wallet(path: str, name: str, hotkey: str = "default") -> bt.Wallet:
    """Open an existing wallet whose hotkey and public coldkey are on disk; ChainError otherwise."""
    wallet = bt.Wallet(name=name, hotkey=hotkey, path=path)
    for keyfile in (wallet.coldkeypub_file, wallet.hotkey_file):
        if not keyfile.exists_on_device():
            raise ChainError(
                f"wallet {name!r} (hotkey {hotkey!r}) has no key file {keyfile.path}; "
                "create it with `distrain chain register --create-wallet` or check --wallet.path"
            )
    return wallet


def load_hotkey(path: str, name: str, hotkey: str = "default") -> Keypair:
    """The hotkey keypair of an existing wallet, ready to sign; ChainError if missing or unreadable."""
    wallet = load_wallet(path, name, hotkey)
    try:
        return wallet.hotkey
    except KeyfileError as e:
        raise ChainError(f"cannot read hotkey {wallet.hotkey_file.path}: {e}") from e
