"""Signed DHT records: small dicts, typed by a schema, signed by the sr25519 hotkey that publishes them.

A record is a flat dict of JSON-compatible values. Its signature covers a canonical encoding of every
field except ``sig`` (sorted keys, compact separators, UTF-8), so any peer can re-derive the signed
bytes from the value alone, whatever serializer carried it (hivemind's msgpack round-trips our types
exactly: str, int, float, lists of floats).

Every record names its run, round and kind, and lives under ``round_key(run, round, kind)`` with
subkey = its hotkey. Because the key is derived from the record's own fields, a record replayed under
another round's key is detectable (see ``validator.py``).

``verify_record`` answers with ``None`` (valid) or one short reason code:

- ``malformed``: not a dict, missing / extra / wrongly typed fields, values JSON cannot encode;
- ``unknown_kind``: no schema for the ``kind`` field;
- ``oversized``: the encoded record exceeds ``MAX_RECORD_BYTES``;
- ``bad_signature``: the signature does not verify against the ``hotkey`` field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from distrain.keys import verify_signature

# hivemind's DHT misbehaves on values of ~16 KB and more (see DESIGN.md); half of that leaves headroom
# for msgpack framing and DHT bookkeeping. Bytes belong on the P2P transport, not in records.
MAX_RECORD_BYTES = 8192

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{128}")  # sr25519 signatures are 64 bytes
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]+")


class Signer(Protocol):
    """What we need from a hotkey: ``bt.Wallet(...).hotkey`` or ``bittensor_core.Keypair``."""

    @property
    def ss58_address(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


def round_key(run_id: str, round: int, kind: str) -> str:
    """The DHT key holding every ``kind`` record of ``round`` in run ``run_id`` (one subkey per hotkey)."""
    return f"{run_id}/r{round}/{kind}"


def _is_natural(value: int) -> bool:
    return value >= 0


@dataclass(frozen=True)
class RecordSchema:
    """The fields one kind of record must have, with their exact Python types.

    Types are checked exactly (``type(v) is int``, so ``True`` is not an int and ``1.0`` is not an int),
    because the signature covers the encoded value: a lenient check would let two differently encoded
    records pass as "the same". ``list[float]`` means a list whose items are all floats. Every field is
    required and no other field is allowed (besides ``sig``), which keeps records small and unambiguous.

    :param kind: the value of the record's ``kind`` field
    :param fields: field name -> type (``str``, ``int``, ``float``, ``list[float]`` or ``list[str]``)
    :param checks: optional field name -> predicate for constraints beyond the type (e.g. "64 hex digits")
    """

    kind: str
    fields: Mapping[str, Any]
    checks: Mapping[str, Callable[[Any], bool]] = field(default_factory=dict)

    def problem(self, record: Mapping[str, Any]) -> str | None:
        """A human-readable description of what is wrong with ``record`` (without ``sig``), or None."""
        missing = self.fields.keys() - record.keys()
        if missing:
            return f"missing field(s) {sorted(missing)}"
        extra = record.keys() - self.fields.keys()
        if extra:
            return f"unexpected field(s) {sorted(extra)}"
        for name, expected in self.fields.items():
            value = record[name]
            if not _has_type(value, expected):
                return f"field {name!r} must be {_type_name(expected)}, got {type(value).__name__}"
            check = self.checks.get(name)
            if check is not None and not check(value):
                return f"field {name!r} has an invalid value {value!r:.80}"
        if record["kind"] != self.kind:
            return f"kind is {record['kind']!r}, expected {self.kind!r}"
        return None


_LIST_TYPES = {list[float]: float, list[str]: str}


def _has_type(value: Any, expected: Any) -> bool:
    if expected in _LIST_TYPES:
        return type(value) is list and all(type(item) is _LIST_TYPES[expected] for item in value)
    return type(value) is expected


def _type_name(expected: Any) -> str:
    return str(expected) if expected in _LIST_TYPES else expected.__name__


_ROUND_FIELDS = {"kind": str, "run": str, "recipe": str, "round": int, "hotkey": str}
_ROUND_CHECKS = {"round": _is_natural}

ANNOUNCEMENT = RecordSchema(
    kind="announcement",
    fields={
        **_ROUND_FIELDS,
        "sha256": str,
        "size": int,
        "peer_id": str,
        "codec": str,
        "base_fp": list[float],
        "tokens": int,
    },
    checks={
        **_ROUND_CHECKS,
        "sha256": lambda v: _HEX64.fullmatch(v) is not None,
        "size": _is_natural,
        "peer_id": lambda v: _BASE58.fullmatch(v) is not None,
        "tokens": _is_natural,
    },
)
"""A miner's pseudo-gradient for a round: where to fetch the payload, its hash and its metadata."""

FINGERPRINT = RecordSchema(
    kind="fingerprint",
    fields={**_ROUND_FIELDS, "fp": list[float]},
    checks=_ROUND_CHECKS,
)
"""A fingerprint (a few random projections) of the global parameters at the start of a round."""

CHECKPOINT = RecordSchema(
    kind="checkpoint",
    fields={**_ROUND_FIELDS, "fp": list[float], "sha256": str, "size": int, "peer_id": str},
    checks={
        **_ROUND_CHECKS,
        "sha256": lambda v: _HEX64.fullmatch(v) is not None,
        "size": _is_natural,
        "peer_id": lambda v: _BASE58.fullmatch(v) is not None,
    },
)
"""A validator's global state at the start of a round (θ and outer momentum): its fingerprint, and where a
peer that drifted or joined late fetches it."""

AGGREGATION = RecordSchema(
    kind="aggregation", fields={**_ROUND_FIELDS, "members": list[str]}, checks=_ROUND_CHECKS
)
"""The hotkeys whose submissions of a round enter the average, chosen by a validator from earlier scores."""

SCHEMAS: dict[str, RecordSchema] = {
    schema.kind: schema for schema in (ANNOUNCEMENT, FINGERPRINT, CHECKPOINT, AGGREGATION)
}


def _encode(record: Mapping[str, Any]) -> bytes:
    try:
        text = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except TypeError as e:
        raise ValueError(str(e)) from None
    return text.encode()


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: every field but ``sig``, as sorted-key compact JSON in UTF-8.

    :raises ValueError: for values JSON cannot encode exactly (NaN/inf, bytes, arbitrary objects).
    """
    return _encode({name: value for name, value in record.items() if name != "sig"})


def encoded_size(record: Mapping[str, Any]) -> int:
    """Size in bytes of the whole record (``sig`` included) in the canonical encoding."""
    return len(_encode(record))


def _schema_for(record: Mapping[str, Any]) -> RecordSchema | None:
    kind = record.get("kind")
    return SCHEMAS.get(kind) if isinstance(kind, str) else None


def sign_record(keypair: Signer, body: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``body`` plus ``hotkey`` (the keypair's ss58 address) and ``sig`` (hex sr25519 signature).

    :raises ValueError: if the result would not pass ``verify_record`` (unknown kind, schema mismatch,
      oversized), so a bad record fails where it is made rather than on every peer that reads it.
    """
    if "sig" in body:
        raise ValueError("body must not contain 'sig'")
    if body.get("hotkey", keypair.ss58_address) != keypair.ss58_address:
        raise ValueError(f"body names hotkey {body['hotkey']!r} but is signed by {keypair.ss58_address!r}")
    record = {**body, "hotkey": keypair.ss58_address}
    schema = _schema_for(record)
    if schema is None:
        raise ValueError(f"unknown record kind {record.get('kind')!r}; known kinds: {sorted(SCHEMAS)}")
    problem = schema.problem(record)
    if problem is not None:
        raise ValueError(f"invalid {schema.kind} record: {problem}")
    record["sig"] = keypair.sign(canonical_bytes(record)).hex()
    size = encoded_size(record)
    if size > MAX_RECORD_BYTES:
        raise ValueError(f"{schema.kind} record is {size} bytes encoded, the limit is {MAX_RECORD_BYTES}")
    return record


def verify_record(value: Any) -> str | None:
    """None if ``value`` is a well-formed record correctly signed by its ``hotkey``, else a reason code."""
    if not isinstance(value, dict) or not all(isinstance(name, str) for name in value):
        return "malformed"
    signature = value.get("sig")
    if not isinstance(signature, str) or _HEX_SIGNATURE.fullmatch(signature) is None:
        return "malformed"
    try:
        signed_bytes = canonical_bytes(value)
    except ValueError:
        return "malformed"
    if encoded_size(value) > MAX_RECORD_BYTES:
        return "oversized"
    schema = _schema_for(value)
    if schema is None:
        return "unknown_kind"
    if schema.problem({name: item for name, item in value.items() if name != "sig"}) is not None:
        return "malformed"
    if not verify_signature(value["hotkey"], signed_bytes, bytes.fromhex(signature)):
        return "bad_signature"
    return None
