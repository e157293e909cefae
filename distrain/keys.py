"""Seeded sr25519 keys: the same hotkeys in every run of a benchmark, with or without wallet files.

A benchmark's miners must get the same page assignments and batches in every run, and both follow
from their hotkeys. `distrain.chain.wallets.create_wallet(..., seed=...)` writes wallets whose keys
derive from a seed and the wallet's name; `seeded_hotkey_address` gives the same hotkey without
writing anything and without the bittensor SDK, only its key binding (a bare GPU image can carry it).
Never seed keys that will hold real value: anyone who knows the seed has them.
"""

from __future__ import annotations

import hashlib

import bittensor_core


def derived_seed(seed: str, wallet_name: str, kind: str) -> str:
    """The secret seed ("0x" + 64 hex digits) of wallet `wallet_name`'s `kind` key ("coldkey" or
    "hotkey") under `seed`."""
    return "0x" + hashlib.sha256(f"{seed}|{wallet_name}|{kind}".encode()).hexdigest()


def seeded_hotkey_address(seed: str, wallet_name: str) -> str:
    """The ss58 address of the hotkey that `create_wallet(path, wallet_name, seed=seed)` creates."""
    secret = bytes.fromhex(derived_seed(seed, wallet_name, "hotkey")[2:])
    return bittensor_core.Keypair.create_from_seed(secret).ss58_address
