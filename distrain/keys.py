"""sr25519 keys with the SDK's key binding (`bittensor_core`) only: address and signature checks, and
seeded keys for benchmarks.

The chain backends and the DHT's record checks both verify hotkeys and signatures; they do it here, so
that `distrain.network` checks keys without importing the chain package, and the bittensor SDK with it.

Seeded keys: a benchmark's miners must get the same page assignments and batches in every run, and both
follow from their hotkeys. `distrain.chain.wallets.create_wallet(..., seed=...)` writes wallets whose
keys derive from a seed and the wallet's name; `seeded_hotkey_address` gives the same hotkey without
writing anything and without the bittensor SDK (a bare GPU image can carry its key binding). Never seed
keys that will hold real value: anyone who knows the seed has them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import bittensor_core


def is_ss58(address: Any) -> bool:
    """True if `address` is a string that decodes as an SS58 address."""
    if not isinstance(address, str):
        return False
    try:
        bittensor_core.ss58_decode(address)
    except (ValueError, TypeError):
        return False
    return True


def verify_signature(hotkey_ss58: str, message: bytes, signature: bytes) -> bool:
    """True if `signature` is `hotkey_ss58`'s sr25519 signature of `message`; False on any malformed input
    (about 40 µs a call)."""
    try:
        return bool(bittensor_core.verify(message, signature, hotkey_ss58))
    except (ValueError, TypeError):
        return False


def derived_seed(seed: str, wallet_name: str, kind: str) -> str:
    """The secret seed ("0x" + 64 hex digits) of wallet `wallet_name`'s `kind` key ("coldkey" or
    "hotkey") under `seed`."""
    return "0x" + hashlib.sha256(f"{seed}|{wallet_name}|{kind}".encode()).hexdigest()


def seeded_hotkey_address(seed: str, wallet_name: str) -> str:
    """The ss58 address of the hotkey that `create_wallet(path, wallet_name, seed=seed)` creates."""
    secret = bytes.fromhex(derived_seed(seed, wallet_name, "hotkey")[2:])
    return bittensor_core.Keypair.create_from_seed(secret).ss58_address
