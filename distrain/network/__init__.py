"""The network layer: hotkey-signed DHT records and peer-to-peer payloads, over hivemind.

A miner or validator holds one ``Peer``: it publishes signed records under ``round_key(...)``, reads
back the valid ones, serves its payloads by sha256 and fetches other peers' payloads.
"""

from distrain.network.bootstrap import add_dht_command, run_bootstrap
from distrain.network.errors import FETCH_ERRORS, FetchError, NetworkError
from distrain.network.loop import BackgroundLoop
from distrain.network.peer import Peer, listen_maddr
from distrain.network.records import (
    ANNOUNCEMENT,
    FINGERPRINT,
    MAX_RECORD_BYTES,
    SCHEMAS,
    RecordSchema,
    canonical_bytes,
    round_key,
    sign_record,
    verify_record,
)
from distrain.network.transport import PayloadServer, fetch_payload
from distrain.network.validator import HotkeyRecordValidator, check_entry

__all__ = [
    "ANNOUNCEMENT",
    "FETCH_ERRORS",
    "FINGERPRINT",
    "MAX_RECORD_BYTES",
    "SCHEMAS",
    "BackgroundLoop",
    "FetchError",
    "HotkeyRecordValidator",
    "NetworkError",
    "PayloadServer",
    "Peer",
    "RecordSchema",
    "add_dht_command",
    "canonical_bytes",
    "check_entry",
    "fetch_payload",
    "listen_maddr",
    "round_key",
    "run_bootstrap",
    "sign_record",
    "verify_record",
]
