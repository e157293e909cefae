"""The bittensor backend, running the SDK's real code against the local chain through ``LocalSubstrate``."""

import bittensor as bt
import numpy as np
import pytest
from bittensor.intents.weights import clip_to_max_weight, normalize

from distrain.chain import (
    BittensorChain,
    ChainError,
    LocalSubstrate,
    WeightsRejected,
    check_signer,
    open_chain,
)
from distrain.chain.weights import U16_MAX

from .helpers import advance, join


@pytest.fixture
def subnet(make_chain, wallet):
    """``subnet(**params)``: (local chain, SDK-backed chain on it, wallets): validator 0, miners 1..3."""
    opened = []

    def make(**params):
        chain = make_chain(**params)
        wallets = [wallet("validator"), *(wallet(f"miner{i}") for i in range(1, 4))]
        join(chain, wallets[0], stake=100.0)
        for w in wallets[1:]:
            join(chain, w, stake=0.5)
        sdk = BittensorChain("local", chain.netuid, substrate=LocalSubstrate(chain))
        opened.append(sdk)
        return chain, sdk, wallets

    yield make
    for sdk in opened:
        sdk.close()


def test_sdk_metagraph_equals_local(subnet):
    chain, sdk, wallets = subnet(max_validators=1)
    advance(chain, 3)  # at block 0, last_update 0 would read as "never" through the SDK
    chain.set_weights(wallets[0].hotkey, [1, 2, 3], [1.0, 2.0, 3.0])
    chain.run_epoch()
    local, through_sdk = chain.metagraph(), sdk.metagraph()
    for field in (
        "block",
        "netuid",
        "uids",
        "hotkeys",
        "coldkeys",
        "stake",
        "validator_permit",
        "last_update",
    ):
        assert getattr(through_sdk, field) == getattr(local, field), field
    # Scores travel as the runtime's u16 fractions, emission in rao.
    for field in ("incentive", "dividends", "consensus", "trust"):
        np.testing.assert_allclose(getattr(through_sdk, field), getattr(local, field), atol=0.5 / U16_MAX)
    np.testing.assert_allclose(through_sdk.emission, local.emission, atol=1e-9)
    assert sum(through_sdk.incentive) > 0.99


def test_the_sdks_own_metagraph_and_block(subnet):
    chain, _, wallets = subnet()
    advance(chain, 7)
    sub = bt.Subtensor("local", substrate=LocalSubstrate(chain))
    try:
        graph = sub.subnets.metagraph(chain.netuid)  # the default read, commitments included
        assert sub.block == 7
        assert graph.hotkeys == [w.hotkey.ss58_address for w in wallets]
        assert [n.validator_permit for n in graph] == chain.metagraph().validator_permit
        assert graph.tempo == chain.params.tempo and graph.blocks_since_last_step == 7
        assert sub.subnets.metagraph(chain.netuid + 1) is None
    finally:
        sub.close()


@pytest.mark.parametrize("max_weight_limit", [U16_MAX, 20000])
def test_set_weights_lands_as_the_sdk_conforms_them(subnet, max_weight_limit):
    chain, sdk, wallets = subnet(max_weight_limit=max_weight_limit)
    rng = np.random.default_rng(0)
    for _ in range(20):
        weights = list(rng.random(4) ** 3)
        sdk.set_weights(wallets[0].hotkey, [0, 1, 2, 3], weights)
        if max_weight_limit < U16_MAX:
            weights = clip_to_max_weight(weights, max_weight_limit / U16_MAX)
        uids, values = normalize([0, 1, 2, 3], weights)
        assert chain.stored_weights() == {0: dict(zip(uids, values))}
    assert sdk.weights() == chain.weights()


def test_set_weights_accepts_a_wallet(subnet):
    chain, sdk, wallets = subnet()
    sdk.set_weights(wallets[0], [1, 2], [1.0, 3.0])
    assert chain.stored_weights() == {0: {1: 21845, 2: U16_MAX}}


@pytest.mark.parametrize(
    "reason, signer, uids, weights, params, version_key",
    [
        ("no_permit", 1, [2, 3], [1.0, 1.0], {"max_validators": 1}, 0),  # the chain refuses
        ("version_mismatch", 0, [1, 2], [1.0, 1.0], {"weights_version": 5}, 4),  # the chain refuses
        ("invalid_weights", 0, [1, 2], [1.0, 1.0], {"min_allowed_weights": 3}, 0),  # the SDK refuses
        ("invalid_weights", 0, [1, 1], [1.0, 1.0], {}, 0),
        ("invalid_weights", 0, [1, 2], [0.0, 0.0], {}, 0),
        ("unknown_uid", 0, [1, 9], [1.0, 1.0], {}, 0),
    ],
)
def test_set_weights_rejections(subnet, reason, signer, uids, weights, params, version_key):
    _, sdk, wallets = subnet(**params)
    with pytest.raises(WeightsRejected) as rejected:
        sdk.set_weights(wallets[signer].hotkey, uids, weights, version_key=version_key)
    assert rejected.value.reason == reason


def test_sdk_preflight_rejections(subnet, wallet):
    chain, sdk, wallets = subnet(weights_rate_limit=5)
    with pytest.raises(WeightsRejected) as rejected:
        sdk.set_weights(wallet("stranger").hotkey, [1], [1.0])
    assert rejected.value.reason == "not_registered"
    # At block 0 the SDK would read last_update 0 as "never" and leave the rate limit to the chain.
    advance(chain, 1)
    sdk.set_weights(wallets[0].hotkey, [1], [1.0])
    with pytest.raises(WeightsRejected, match="Retry in ~5 blocks") as rejected:
        sdk.set_weights(wallets[0].hotkey, [1], [1.0])
    assert rejected.value.reason == "rate_limited"
    advance(chain, 5)
    sdk.set_weights(wallets[0].hotkey, [2], [1.0])
    assert chain.weights() == {0: {2: 1.0}}


def test_what_the_bittensor_backend_leaves_to_btcli(subnet, wallet):
    _, sdk, _ = subnet()
    newcomer = wallet("newcomer")
    with pytest.raises(ChainError, match="btcli subnets register --netuid 1"):
        sdk.register(newcomer.hotkey.ss58_address, newcomer.coldkeypub.ss58_address)
    with pytest.raises(ChainError, match="btcli stake add"):
        sdk.add_stake(newcomer.hotkey.ss58_address, 1.0)
    with pytest.raises(ChainError, match="DHT"):
        sdk.serve(newcomer.hotkey.ss58_address, {})
    signature = newcomer.hotkey.sign(b"round 3")
    assert sdk.verify(newcomer.hotkey.ss58_address, b"round 3", signature)


def test_open_by_name_on_a_local_file(make_chain, wallet, tmp_path):
    chain = make_chain()
    validator = wallet("validator")
    join(chain, validator, stake=10.0)
    join(chain, wallet("miner"))
    # The call shape the miner and validator use for every backend.
    with open_chain("bittensor", path=chain.path, netuid=chain.netuid) as sdk:
        assert sdk.metagraph().hotkeys == chain.metagraph().hotkeys
        sdk.set_weights(validator.hotkey, [1], [1.0])
    assert chain.weights() == {0: {1: 1.0}}


def test_construction_errors(make_chain, tmp_path):
    with pytest.raises(ChainError, match="Unknown network 'nowhere'"):
        BittensorChain("nowhere")
    with pytest.raises(ChainError, match="not both"):
        BittensorChain(path=tmp_path / "x.db", substrate=LocalSubstrate(make_chain()))
    with pytest.raises(ChainError, match="no local chain at"):
        BittensorChain(path=tmp_path / "missing.db")
    sdk = BittensorChain("local", netuid=3, substrate=LocalSubstrate(make_chain()))
    with sdk, pytest.raises(ChainError, match="subnet 3 does not exist"):
        sdk.metagraph()


def test_unreachable_network_is_one_line():
    chain = BittensorChain("ws://127.0.0.1:1", 1)
    with chain, pytest.raises(ChainError, match="cannot read the block number from ws://127.0.0.1:1") as e:
        chain.block()
    assert "\n" not in str(e.value)


def test_check_signer(make_chain, wallet):
    chain = make_chain(max_validators=1)
    validator, miner = wallet("validator"), wallet("miner")
    join(chain, validator, stake=10.0)
    join(chain, miner, stake=1.0)
    graph = chain.metagraph()
    assert check_signer(graph, validator.hotkey.ss58_address, require_permit=True, min_stake=10.0) is None
    assert (
        check_signer(graph, validator.hotkey.ss58_address, require_permit=True, min_stake=11.0) == "low_stake"
    )
    assert check_signer(graph, miner.hotkey.ss58_address, require_permit=True, min_stake=0.0) == "no_permit"
    assert check_signer(graph, miner.hotkey.ss58_address, require_permit=False, min_stake=1.0) is None
    assert check_signer(graph, "5nobody", require_permit=False, min_stake=0.0) == "not_registered"
