"""The chain: one interface (``Chain``), backends by name, wallets and Yuma Consensus.

with open_chain("local", path="runs/chain.db") as chain:
    uid = chain.register(hotkey.ss58_address, coldkey_ss58)
with open_chain("bittensor", network="finney", netuid=N) as chain:
    chain.set_weights(hotkey, uids, weights)
"""

from .base import Chain, ChainError, Metagraph, WeightsRejected, check_signer
from .bittensor_backend import BittensorChain
from .local import LocalChain, SubnetParams
from .local_substrate import LocalSubstrate
from .wallets import create_wallet, load_hotkey, load_wallet
from .yuma import EpochResult, YumaParams, yuma_epoch

BACKENDS: dict[str, type[Chain]] = {"local": LocalChain, "bittensor": BittensorChain}
"""Chain backends by name; ``open_chain`` passes its keyword arguments to the chosen class."""


def open_chain(backend: str, **kwargs) -> Chain:
    """Open the chain backend called ``backend`` (e.g. ``open_chain("local", path=..., netuid=1)``)."""
    try:
        cls = BACKENDS[backend]
    except KeyError:
        raise ChainError(f"unknown chain backend {backend!r}; known: {', '.join(sorted(BACKENDS))}") from None
    return cls(**kwargs)


__all__ = [
    "BACKENDS",
    "BittensorChain",
    "Chain",
    "ChainError",
    "EpochResult",
    "LocalChain",
    "LocalSubstrate",
    "Metagraph",
    "SubnetParams",
    "WeightsRejected",
    "YumaParams",
    "check_signer",
    "create_wallet",
    "load_hotkey",
    "load_wallet",
    "open_chain",
    "yuma_epoch",
]
