"""A hivemind record validator that enforces hotkey signatures on every DHT node a record reaches.

hivemind calls ``validate(record)`` when a peer asks this node to store a record and when a peer
answers one of this node's lookups. It presents everything as bytes: ``record.key`` is the 20-byte
``DHTID`` hash of the raw key (the raw key string never travels), ``record.subkey`` is the msgpack
encoding of the subkey (``msgpack(None)`` for a plain value), and ``record.value`` is the msgpack
encoding of the value. Returning False makes the node refuse to store (or to accept) the record.

Which records are ours? Two rules, because a node only learns raw keys it computed itself:

1. **Hotkey slots.** A subkey that is a valid ss58 address claims that hotkey's slot, under any key.
   Its value must be a record signed by that very hotkey and bound to that very key (its run, round
   and kind hash to ``record.key``). This needs no knowledge of the key, so *every* node - bootstrap
   nodes included - refuses forgeries, overwrites of another hotkey's record, and replays of an old
   round's record under a new round's key.
2. **Expected keys.** Keys this node has published or read (``expect(key)``, done by ``Peer``) admit
   nothing else: under them, plain values and non-hotkey subkeys are refused too.

Anything else is not ours and passes untouched, so other hivemind users of the DHT keep working.
Readers verify again (``check_entry``) because a node without this validator may answer lookups.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

from hivemind.dht.routing import DHTID
from hivemind.dht.validation import DHTRecord, RecordValidatorBase
from hivemind.utils import MSGPackSerializer

from distrain.keys import is_ss58
from distrain.network.records import round_key, verify_record


def key_id(key: str) -> bytes:
    """The bytes hivemind shows validators for the raw DHT key ``key``."""
    return DHTID.generate(source=key).to_bytes()


def check_entry(key: bytes, subkey: Any, value: Any) -> str | None:
    """Why ``value`` may not stand under DHT key id ``key`` and ``subkey``, or None if it may.

    Reason codes are those of ``verify_record`` plus ``wrong_subkey`` (the subkey is not the signer's
    hotkey) and ``wrong_key`` (the record's run/round/kind do not hash to ``key``: e.g. a replay).
    """
    reason = verify_record(value)
    if reason is not None:
        return reason
    if subkey != value["hotkey"]:
        return "wrong_subkey"
    if key_id(round_key(value["run"], value["round"], value["kind"])) != key:
        return "wrong_key"
    return None


class HotkeyRecordValidator(RecordValidatorBase):
    """Refuses DHT records in hotkey slots or under expected keys unless signed by the slot's hotkey.

    The signature travels inside the value (see ``records.py``), so ``sign_value``/``strip_value``
    keep their identity defaults. ``rejected`` counts refusals by reason code, for metrics.

    :param remember: how many expected keys to keep (oldest forgotten first); a few rounds' worth suffices.
    """

    def __init__(self, remember: int = 4096):
        self._remember = remember
        self._expected: OrderedDict[bytes, None] = OrderedDict()
        self.rejected: Counter[str] = Counter()

    def expect(self, key: str) -> None:
        """Treat ``key`` as ours: only signed hotkey records may be stored under it.

        Call this from the event loop's thread (as ``Peer`` does): hivemind calls ``validate`` there.
        """
        raw_id = key_id(key)
        self._expected[raw_id] = None
        self._expected.move_to_end(raw_id)
        while len(self._expected) > self._remember:
            self._expected.popitem(last=False)

    def validate(self, record: DHTRecord) -> bool:
        subkey = _loads(record.subkey)
        if not is_ss58(subkey) and record.key not in self._expected:
            return True
        reason = check_entry(record.key, subkey, _loads(record.value))
        if reason is not None:
            self.rejected[reason] += 1
            return False
        return True


_UNDECODABLE = object()


def _loads(data: bytes) -> Any:
    # Bytes from the network may be anything; an undecodable value simply fails verification.
    try:
        return MSGPackSerializer.loads(data)
    except Exception:
        return _UNDECODABLE
