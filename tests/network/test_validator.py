"""Forged records sent by a raw hivemind DHT node (no validator of its own) must not stick anywhere."""

from __future__ import annotations

import time

import pytest
from hivemind.dht.node import DHTNode
from hivemind.utils import get_dht_time

from distrain.network import BackgroundLoop, round_key, sign_record

RUN = "validator-test"


def fingerprint(round: int, **overrides):
    return {
        "kind": "fingerprint",
        "run": RUN,
        "recipe": "abc",
        "round": round,
        "fp": [0.5, 0.25],
        **overrides,
    }


@pytest.fixture(scope="module")
def attacker(bootstrap_peer, other_peer):
    """A plain hivemind DHTNode joined to the peers; it stores whatever it is told to."""
    loop = BackgroundLoop(name="attacker")
    node = loop.run(DHTNode.create(initial_peers=bootstrap_peer.maddrs), timeout=10)

    def store(key, subkey, value):
        return loop.run(node.store(key, value, get_dht_time() + 60, subkey=subkey), timeout=10)

    yield store
    loop.run(node.shutdown(), timeout=10)
    loop.shutdown()


def total_rejected(*peers) -> int:
    return sum(sum(peer.validator.rejected.values()) for peer in peers)


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_good_record_is_visible_from_another_peer(bootstrap_peer, other_peer, keypair_factory):
    keypair = keypair_factory()
    key = round_key(RUN, 1, "fingerprint")
    assert other_peer.publish(key, keypair, fingerprint(1), ttl_s=60)
    records = bootstrap_peer.read(key)
    assert list(records) == [keypair.ss58_address]
    assert records[keypair.ss58_address]["fp"] == [0.5, 0.25]


@pytest.mark.parametrize(
    "forgery", ["wrong_subkey", "bad_signature", "wrong_key", "junk_subkey", "not_a_record"]
)
def test_forged_records_are_rejected_on_arrival(
    bootstrap_peer, other_peer, attacker, keypair_factory, forgery
):
    victim, forger = keypair_factory(), keypair_factory()
    round = 2 + ["wrong_subkey", "bad_signature", "wrong_key", "junk_subkey", "not_a_record"].index(forgery)
    key = round_key(RUN, round, "fingerprint")
    assert other_peer.publish(key, victim, fingerprint(round), ttl_s=30)
    bootstrap_peer.read(key)  # both honest peers now expect this key

    if forgery == "wrong_subkey":  # the forger's own valid record, in the victim's slot
        subkey, value = victim.ss58_address, sign_record(forger, fingerprint(round))
    elif forgery == "bad_signature":  # a record claiming the victim's hotkey, signed by the forger
        subkey, value = (
            victim.ss58_address,
            {**sign_record(forger, fingerprint(round)), "hotkey": victim.ss58_address},
        )
    elif forgery == "wrong_key":  # the victim's genuine record of the previous round, replayed
        subkey, value = victim.ss58_address, sign_record(victim, fingerprint(round - 1))
    elif forgery == "junk_subkey":  # a valid record outside any hotkey slot, under an expected key
        subkey, value = "junk", sign_record(forger, fingerprint(round))
    else:
        subkey, value = victim.ss58_address, b"not a record"

    before = total_rejected(bootstrap_peer, other_peer)
    attacker(key, subkey, value)
    wait_for(lambda: total_rejected(bootstrap_peer, other_peer) >= before + 2)  # refused by both honest peers

    for peer in (bootstrap_peer, other_peer):
        records = peer.read(key)
        assert list(records) == [victim.ss58_address]
        unsigned = {name: value for name, value in records[victim.ss58_address].items() if name != "sig"}
        assert unsigned == {**fingerprint(round), "hotkey": victim.ss58_address}


def test_unrelated_keys_pass_through(bootstrap_peer, attacker):
    # Other hivemind users of the DHT keep working: plain values under keys that are not ours are fine.
    before = total_rejected(bootstrap_peer)
    assert attacker("someone-else/key", None, {"anything": 1})
    assert total_rejected(bootstrap_peer) == before
