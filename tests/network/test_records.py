from __future__ import annotations

import pytest

from distrain.network.records import MAX_RECORD_BYTES, canonical_bytes, round_key, sign_record, verify_record
from distrain.network.validator import check_entry, key_id


def announcement(**overrides):
    body = {
        "kind": "announcement",
        "run": "test-run",
        "recipe": "f" * 16,
        "round": 7,
        "sha256": "a" * 64,
        "size": 1234,
        "peer_id": "12D3KooWCcrZXBHYCgdw79REFE3ydey79epTzbs3Pi757rnzd9A7",
        "codec": "topk",
        "base_fp": [0.25, -1.5, 3.0],
        "tokens": 4096,
    }
    return {**body, **overrides}


def test_sign_verify_round_trip(keypair_factory):
    keypair = keypair_factory()
    record = sign_record(keypair, announcement())
    assert record["hotkey"] == keypair.ss58_address
    assert len(record["sig"]) == 128
    assert verify_record(record) is None
    fingerprint = sign_record(
        keypair, {"kind": "fingerprint", "run": "r", "recipe": "x", "round": 0, "fp": [1.0]}
    )
    assert verify_record(fingerprint) is None


def test_canonical_encoding_ignores_field_order_and_sig(keypair_factory):
    record = sign_record(keypair_factory(), announcement())
    shuffled = dict(reversed(list(record.items())))
    assert canonical_bytes(shuffled) == canonical_bytes(record)
    assert b'"sig"' not in canonical_bytes(record)
    assert verify_record(shuffled) is None


@pytest.mark.parametrize(
    "field, value",
    [("round", 8), ("sha256", "b" * 64), ("base_fp", [0.25, -1.5, 3.5]), ("peer_id", "12D3KooWother")],
)
def test_tampered_field_is_bad_signature(keypair_factory, field, value):
    record = sign_record(keypair_factory(), announcement())
    assert verify_record({**record, field: value}) == "bad_signature"


def test_signature_by_another_key_is_bad_signature(keypair_factory):
    honest, forger = keypair_factory(), keypair_factory()
    forged = sign_record(forger, announcement())
    assert verify_record({**forged, "hotkey": honest.ss58_address}) == "bad_signature"
    assert verify_record({**forged, "hotkey": "not-an-ss58-address"}) == "bad_signature"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: {k: v for k, v in r.items() if k != "tokens"},  # missing field
        lambda r: {**r, "extra": 1},  # unexpected field
        lambda r: {**r, "round": "7"},  # str for int
        lambda r: {**r, "round": 7.0},  # float for int
        lambda r: {**r, "size": True},  # bool is not an int
        lambda r: {**r, "base_fp": [1, 2]},  # ints in a float list
        lambda r: {**r, "base_fp": [float("nan")]},  # not encodable exactly
        lambda r: {**r, "sha256": "A" * 64},  # not lowercase hex
        lambda r: {**r, "round": -1},
        lambda r: {**r, "sig": "zz"},
        lambda r: {k: v for k, v in r.items() if k != "sig"},
    ],
)
def test_malformed_records(keypair_factory, mutate):
    record = sign_record(keypair_factory(), announcement())
    assert verify_record(mutate(record)) == "malformed"


@pytest.mark.parametrize("value", [None, b"bytes", [1, 2], "string", {1: 2}])
def test_non_records_are_malformed(value):
    assert verify_record(value) == "malformed"


def test_unknown_kind(keypair_factory):
    record = sign_record(keypair_factory(), announcement())
    assert verify_record({**record, "kind": "payload"}) == "unknown_kind"
    with pytest.raises(ValueError, match="unknown record kind"):
        sign_record(keypair_factory(), announcement(kind="payload"))


def test_sign_rejects_invalid_bodies(keypair_factory):
    keypair = keypair_factory()
    with pytest.raises(ValueError, match="'round' must be int"):
        sign_record(keypair, announcement(round="7"))
    with pytest.raises(ValueError, match="but is signed by"):
        sign_record(keypair, announcement(hotkey=keypair_factory().ss58_address))


def test_oversized_records_are_rejected(keypair_factory):
    keypair = keypair_factory()
    big = announcement(base_fp=[0.123456789] * (MAX_RECORD_BYTES // 10))
    with pytest.raises(ValueError, match="limit is 8192"):
        sign_record(keypair, big)
    record = sign_record(keypair, announcement())
    assert verify_record({**record, "codec": "x" * MAX_RECORD_BYTES}) == "oversized"


def test_check_entry_binds_records_to_their_key_and_slot(keypair_factory):
    keypair = keypair_factory()
    record = sign_record(keypair, announcement())
    key = key_id(round_key("test-run", 7, "announcement"))
    assert check_entry(key, keypair.ss58_address, record) is None
    assert check_entry(key, keypair_factory().ss58_address, record) == "wrong_subkey"
    assert (
        check_entry(key_id(round_key("test-run", 8, "announcement")), keypair.ss58_address, record)
        == "wrong_key"
    )
