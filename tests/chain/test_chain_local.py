import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import distrain
from distrain.chain import ChainError, LocalChain, SubnetParams, WeightsRejected, open_chain
from distrain.chain.local import MAX_CATCHUP_EPOCHS

from .helpers import advance, join


@pytest.fixture
def subnet(make_chain, wallet):
    """A chain with validator uid 0 (stake 100) and miners uids 1, 2; returns (chain, validator hotkey)."""

    def make(**params):
        chain = make_chain(**params)
        validator = wallet("validator")
        join(chain, validator, stake=100.0)
        join(chain, wallet("miner1"))
        join(chain, wallet("miner2"))
        return chain, validator.hotkey

    return make


def stored_u16(chain: LocalChain, uid: int) -> dict[int, int]:
    with sqlite3.connect(chain.path) as db:
        row = db.execute("SELECT weights FROM neurons WHERE uid = ?", (uid,)).fetchone()
    return {int(k): v for k, v in json.loads(row[0]).items()}


def test_open_and_create_errors(tmp_path):
    path = tmp_path / "chain.db"
    with pytest.raises(ChainError, match=str(path)):
        LocalChain(path)
    LocalChain(path, netuid=3, create=True).close()
    with pytest.raises(ChainError, match="already exists"):
        LocalChain(path, netuid=3, create=True)
    with pytest.raises(ChainError, match="holds subnet 3, not 1"):
        LocalChain(path)
    with pytest.raises(ChainError, match="other params"):
        LocalChain(path, netuid=3, params=SubnetParams(tempo=99))
    with open_chain("local", path=path, netuid=3) as chain:
        assert chain.params == SubnetParams()
    with pytest.raises(ChainError, match="known: bittensor, local"):
        open_chain("nope")
    with pytest.raises(ChainError, match="kappa"):
        SubnetParams(kappa=2.0)
    (tmp_path / "junk.db").write_text("not a database")
    with pytest.raises(ChainError, match="not a distrain local chain"):
        LocalChain(tmp_path / "junk.db")


def test_register_is_idempotent(make_chain, wallet):
    chain = make_chain()
    a, b = wallet("a"), wallet("b")
    assert join(chain, a) == 0
    assert join(chain, b) == 1
    assert join(chain, a) == 0
    graph = chain.metagraph()
    assert graph.n == 2 and graph.uids == [0, 1]
    assert graph.uid_of(b.hotkey.ss58_address) == 1 and graph.uid_of("nobody") is None
    assert graph.coldkeys[0] == a.coldkeypub.ss58_address
    with pytest.raises(ChainError, match="already registered to coldkey"):
        chain.register(a.hotkey.ss58_address, b.coldkeypub.ss58_address)
    with pytest.raises(ChainError, match="SS58"):
        chain.register("not-an-address", a.coldkeypub.ss58_address)


def test_stake_grants_permits_at_once(make_chain, wallet):
    chain = make_chain(max_validators=2)
    uids = [join(chain, wallet(f"n{i}")) for i in range(4)]
    assert chain.metagraph().validator_permit == [False] * 4
    for uid, amount in zip(uids, [1.0, 5.0, 3.0, 0.0]):
        if amount:
            chain.add_stake(chain.metagraph().hotkeys[uid], amount)
    graph = chain.metagraph()
    assert graph.stake == [1.0, 5.0, 3.0, 0.0]
    assert graph.validator_permit == [False, True, True, False]
    with pytest.raises(ChainError, match="not registered"):
        chain.add_stake(wallet("stranger").hotkey.ss58_address, 1.0)
    with pytest.raises(ChainError, match="positive"):
        chain.add_stake(graph.hotkeys[0], -1.0)


class ImpostorKeypair:
    """Claims a registered hotkey's address but signs with another key."""

    def __init__(self, address: str, signer):
        self.ss58_address = address
        self.sign = signer.sign


@pytest.mark.parametrize(
    "reason, caller, uids, weights, kwargs, params",
    [
        ("not_registered", "stranger", [1], [1.0], {}, {}),
        ("no_permit", "miner1", [2], [1.0], {}, {}),
        ("version_mismatch", "validator", [1], [1.0], {"version_key": 1}, {"weights_version": 2}),
        ("length_mismatch", "validator", [1, 2], [1.0], {}, {}),
        ("duplicate_uids", "validator", [1, 1], [1.0, 1.0], {}, {}),
        ("unknown_uid", "validator", [1, 7], [1.0, 1.0], {}, {}),
        ("invalid_weights", "validator", [1, 2], [1.0, -1.0], {}, {}),
        ("too_few_weights", "validator", [1, 2], [1.0, 0.0], {}, {"min_allowed_weights": 2}),
        ("too_few_weights", "validator", [], [], {}, {}),
        ("over_weight_limit", "validator", [1, 2], [1.0, 1.0], {}, {"max_weight_limit": 65535 // 4}),
        ("bad_signature", "impostor", [1], [1.0], {}, {}),
    ],
)
def test_set_weights_rejections(subnet, wallet, reason, caller, uids, weights, kwargs, params):
    chain, validator = subnet(**params)
    keypair = {
        "validator": validator,
        "stranger": wallet("stranger").hotkey,
        "miner1": wallet("miner1").hotkey,
        "impostor": ImpostorKeypair(validator.ss58_address, wallet("stranger").hotkey),
    }[caller]
    with pytest.raises(WeightsRejected) as rejected:
        chain.set_weights(keypair, uids, weights, **kwargs)
    assert rejected.value.reason == reason
    assert chain.weights() == {}


def test_weights_are_max_upscaled_to_u16(subnet):
    chain, validator = subnet()
    chain.set_weights(validator, [1, 2], [1.0, 3.0])
    # 1/3 * 65535 = 21845
    assert stored_u16(chain, 0) == {1: 21845, 2: 65535}
    assert chain.weights() == {0: pytest.approx({1: 0.25, 2: 0.75}, abs=1e-5)}


def test_weights_are_clipped_to_max_weight_limit(make_chain, wallet):
    chain = make_chain(max_weight_limit=32768)  # L = 32768 / 65535, just over one half
    validator = wallet("validator")
    join(chain, validator, stake=1.0)
    for name in ("m1", "m2", "m3"):
        join(chain, wallet(name))
    chain.set_weights(validator.hotkey, [1, 2, 3], [1.0, 2.0, 7.0])
    # 0.7 is cut to L; 1 - L is shared 1:2, so relative to the top: (1 - L) / L * [1/3, 2/3]
    # = 32767 / 32768 * [21845, 43690] = [21844.33, 43688.67].
    assert stored_u16(chain, 0) == {1: 21844, 2: 43689, 3: 65535}
    # Within the limit up to u16 rounding.
    assert max(chain.weights()[0].values()) <= 32768 / 65535 + 1 / 65535


def test_zero_weights_are_not_stored(subnet):
    chain, validator = subnet()
    chain.set_weights(validator, [1, 2], [1.0, 0.0])
    assert stored_u16(chain, 0) == {1: 65535}


def test_rate_limit(subnet):
    chain, validator = subnet(weights_rate_limit=5)
    chain.set_weights(validator, [1], [1.0])
    advance(chain, 4)
    with pytest.raises(WeightsRejected) as rejected:
        chain.set_weights(validator, [2], [1.0])
    assert rejected.value.reason == "rate_limited"
    advance(chain, 1)
    chain.set_weights(validator, [2], [1.0])
    assert chain.metagraph().last_update == [5, None, None]


def test_epoch_pays_miners_validators_and_owner(subnet):
    chain, validator = subnet(tempo=10, emission_per_block=1.0, owner_cut=0.18, miner_share=0.5)
    chain.set_weights(validator, [1, 2], [1.0, 3.0])
    advance(chain, 10)
    graph = chain.metagraph()  # any read runs the epoch that is due
    assert graph.incentive == pytest.approx([0, 0.25, 0.75], abs=1e-4)
    assert graph.dividends == pytest.approx([1, 0, 0])
    # 10 tokens: 1.8 to the owner, 4.1 to miners by incentive, 4.1 to validators by dividends.
    assert graph.emission == pytest.approx([4.1, 1.025, 3.075], abs=1e-3)
    (record,) = chain.history()
    assert record["block"] == 10 and not record["forced"] and record["owner_emission"] == pytest.approx(1.8)


def test_epochs_catch_up_lazily_and_forced_ones_keep_the_schedule(subnet):
    chain, _ = subnet(tempo=10)
    advance(chain, 25)
    assert chain.blocks_until_epoch() == 5
    chain.served()
    chain.run_epoch()
    advance(chain, 5)
    assert [(r["block"], r["forced"]) for r in chain.history()] == [
        (10, False),
        (20, False),
        (25, True),
        (30, False),
    ]
    assert [r["block"] for r in chain.history(limit=1)] == [30]


def test_long_absence_runs_only_the_last_epochs(subnet):
    chain, _ = subnet(tempo=2)
    advance(chain, 2 * (MAX_CATCHUP_EPOCHS + 50))
    blocks = [r["block"] for r in chain.history()]
    assert len(blocks) == MAX_CATCHUP_EPOCHS and blocks[-1] == 2 * (MAX_CATCHUP_EPOCHS + 50)


def test_serve(subnet, wallet):
    chain, validator = subnet()
    chain.serve(validator.ss58_address, {"addrs": ["/ip4/127.0.0.1/tcp/1"]})
    assert chain.served() == {validator.ss58_address: {"addrs": ["/ip4/127.0.0.1/tcp/1"]}}
    with pytest.raises(ChainError, match="limit"):
        chain.serve(validator.ss58_address, {"blob": "x" * 5000})
    with pytest.raises(ChainError, match="not registered"):
        chain.serve(wallet("stranger").hotkey.ss58_address, {})


def test_verify(make_chain, wallet):
    hotkey = wallet("a").hotkey
    chain = make_chain()
    signature = hotkey.sign(b"round 3")
    assert chain.verify(hotkey.ss58_address, b"round 3", signature)
    assert not chain.verify(hotkey.ss58_address, b"round 4", signature)
    assert not chain.verify("garbage", b"round 3", signature)
    assert not chain.verify(hotkey.ss58_address, b"round 3", b"short")


# Separate interpreters, not multiprocessing: its spawn start method leaves a resource-tracker process
# running until the test session ends, which the session's leak reaper counts as a leak.
_READER = """
import sys, time
from distrain.chain import LocalChain
path, start, deadline = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
with LocalChain(path) as chain:
    time.sleep(max(0.0, start - time.time()))
    while time.time() < deadline:
        chain.metagraph()
"""


def test_two_processes_never_run_an_epoch_twice(subnet):
    chain, validator = subnet(tempo=2, block_seconds=0.005)
    chain.set_weights(validator, [1, 2], [1.0, 1.0])
    # Both start reading at the same instant, after both interpreters have imported everything.
    start = time.time() + 2.0
    args = [sys.executable, "-c", _READER, str(chain.path), str(start), str(start + 2.0)]
    env = {**os.environ, "PYTHONPATH": str(Path(distrain.__file__).parents[1])}
    readers = [subprocess.Popen(args, env=env) for _ in range(2)]
    assert [reader.wait(timeout=30) for reader in readers] == [0, 0]
    blocks = [r["block"] for r in chain.history()]
    steps = [b - a for a, b in zip(blocks, blocks[1:])]
    assert len(blocks) > 100
    # Every epoch exactly once: no repeats, and consecutive multiples of tempo, except for the one jump
    # over the epochs that fell due (beyond MAX_CATCHUP_EPOCHS) while the readers were starting.
    assert all(step > 0 and step % 2 == 0 for step in steps)
    assert sum(step != 2 for step in steps) <= 1
