"""Helpers shared by the chain tests."""

from distrain.chain import LocalChain

FROZEN = 1e9
"""Seconds per block that keep the clock at block 0 for a whole test: no epoch runs unless asked."""


def advance(chain: LocalChain, blocks: int) -> None:
    """Move this handle's clock forward by ``blocks`` (by moving its genesis back)."""
    chain.genesis -= blocks * chain.params.block_seconds


def join(chain: LocalChain, wallet, stake: float = 0.0) -> int:
    """Register ``wallet`` and add ``stake``; returns the uid."""
    uid = chain.register(wallet.hotkey.ss58_address, wallet.coldkeypub.ss58_address)
    if stake:
        chain.add_stake(wallet.hotkey.ss58_address, stake)
    return uid
