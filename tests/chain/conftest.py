import pytest

from distrain.chain import LocalChain, SubnetParams, create_wallet

from .helpers import FROZEN


@pytest.fixture
def wallet(tmp_path):
    """``wallet(name)``: a real sr25519 wallet under tmp_path (the same keys on every call with that name)."""
    return lambda name: create_wallet(str(tmp_path / "wallets"), name)


@pytest.fixture
def make_chain(tmp_path):
    """``make_chain(**params)``: a fresh local chain whose clock stands still unless ``advance`` moves it."""
    opened = []

    def make(**params) -> LocalChain:
        params.setdefault("block_seconds", FROZEN)
        chain = LocalChain(tmp_path / f"chain{len(opened)}.db", params=SubnetParams(**params), create=True)
        opened.append(chain)
        return chain

    yield make
    for chain in opened:
        chain.close()
