"""A chain that stops answering does not stop a node: the last metagraph stands in."""

import time

import pytest

from distrain.chain import BittensorChain, ChainError
from distrain.chain.cache import MetagraphCache


def test_the_last_good_metagraph_stands_in_for_an_unreachable_chain(make_chain, wallet):
    chain = make_chain()
    miner = wallet("miner")
    chain.register(miner.hotkey.ss58_address, miner.coldkeypub.ss58_address)
    cache = MetagraphCache(chain)
    good = cache.get()
    unreachable = BittensorChain(network="ws://127.0.0.1:9", netuid=1)
    started = time.time()
    with pytest.raises(ChainError):
        unreachable.metagraph()  # the outage is real: nothing listens on port 9
    assert time.time() - started < 60
    cache.chain = unreachable
    assert cache.get() is good and good.uid_of(miner.hotkey.ss58_address) == 0
    assert cache.age >= 0


def test_without_any_good_read_the_error_surfaces():
    with pytest.raises(ChainError):
        MetagraphCache(BittensorChain(network="ws://127.0.0.1:9", netuid=1)).get()
