"""The embedded local chain: one simulated subnet kept in a SQLite file.

Many OS processes (miners, validators, the swarm launcher) open the same file at once. SQLite's WAL mode
lets readers proceed while one writer holds the lock; every change runs inside ``BEGIN IMMEDIATE`` so it
sees and writes a consistent state.

Blocks come from the wall clock since the file's genesis. Epochs are due every ``tempo`` blocks and run
lazily: whichever call first touches the state after an epoch is due runs it, under the write lock, and
advances ``last_epoch_block`` in the same transaction, so no two processes ever run the same epoch.

Uids are handed out in registration order and never recycled (this chain has no deregistration), so a
neuron's uid is also its row and column in the weight and bond matrices.
"""

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from distrain.keys import is_ss58, verify_signature

from .base import Chain, ChainError, Metagraph, WeightsRejected
from .weights import U16_MAX, clip_to_limit, from_u16, to_u16, within_limit
from .yuma import VARIANTS, YumaParams, split_emission, yuma_epoch
from .yuma_math import top_k_nonzero

MAX_CATCHUP_EPOCHS = 100
"""Epochs run at most when catching up; older due epochs are skipped (nobody changed weights meanwhile,
so they would only repeat the same result and fill the history)."""

MAX_SERVE_BYTES = 4096
"""Largest contact info a neuron may serve, as JSON: addresses and keys, never payloads."""

BUSY_TIMEOUT_S = 30.0
"""How long a process waits for another's write lock before giving up."""


@dataclass(frozen=True)
class SubnetParams(YumaParams):
    """Hyperparameters of a local subnet, fixed when its file is created: the consensus ones of
    ``YumaParams`` plus the chain's weight rules, clock and emission."""

    tempo: int = 10
    """Blocks between epochs."""
    block_seconds: float = 1.0
    """Wall-clock seconds per block (the real chain uses 12; local swarms go faster)."""
    min_allowed_weights: int = 1
    """Fewest non-zero weights a validator must set (capped at the number of neurons)."""
    max_weight_limit: int = U16_MAX
    """Largest share one uid may get in a weight vector, as a fraction of 65535 (65535 = no limit)."""
    weights_rate_limit: int = 0
    """Blocks a validator must wait between two accepted ``set_weights``."""
    weights_version: int = 0
    """Lowest ``version_key`` accepted by ``set_weights``."""
    emission_per_block: float = 1.0
    """Tokens emitted to the subnet per block."""
    owner_cut: float = 0.18
    """Share of each epoch's emission paid to the subnet owner."""
    miner_share: float = 0.5
    """Share of the rest paid to miners by incentive while validators earn too (the chain's split is 0.5)."""
    yuma: str = "yuma3"
    """Consensus variant, a key of ``distrain.chain.yuma.VARIANTS`` (``yuma3`` or ``classic``)."""

    def __post_init__(self):
        checks = [
            (self.tempo >= 1, "tempo must be at least 1 block"),
            (self.block_seconds > 0, "block_seconds must be positive"),
            (self.max_validators >= 1, "max_validators must be at least 1"),
            (self.min_allowed_weights >= 0, "min_allowed_weights must be non-negative"),
            (1 <= self.max_weight_limit <= U16_MAX, f"max_weight_limit must be in 1..{U16_MAX}"),
            (self.weights_rate_limit >= 0, "weights_rate_limit must be non-negative"),
            (0 <= self.kappa <= 1, "kappa must be in [0, 1]"),
            (0 <= self.bonds_moving_avg <= 1, "bonds_moving_avg must be in [0, 1]"),
            (0 <= self.bonds_penalty <= 1, "bonds_penalty must be in [0, 1]"),
            (0 <= self.alpha_low <= self.alpha_high <= 1, "need 0 <= alpha_low <= alpha_high <= 1"),
            (self.emission_per_block >= 0, "emission_per_block must be non-negative"),
            (0 <= self.owner_cut <= 1, "owner_cut must be in [0, 1]"),
            (0 <= self.miner_share <= 1, "miner_share must be in [0, 1]"),
            (self.yuma in VARIANTS, f"yuma must be one of {sorted(VARIANTS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ChainError(f"invalid subnet params: {message}")

    def yuma_params(self) -> YumaParams:
        """The consensus hyperparameters among these params."""
        return YumaParams(**{f.name: getattr(self, f.name) for f in fields(YumaParams)})


_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # weights and bonds: {uid: u16} as the chain stores them; serving: contact info JSON.
    """CREATE TABLE neurons (
        uid INTEGER PRIMARY KEY,
        hotkey TEXT NOT NULL UNIQUE,
        coldkey TEXT NOT NULL,
        registered_block INTEGER NOT NULL,
        stake REAL NOT NULL DEFAULT 0,
        validator_permit INTEGER NOT NULL DEFAULT 0,
        last_update INTEGER,
        weights TEXT NOT NULL DEFAULT '{}',
        bonds TEXT NOT NULL DEFAULT '{}',
        incentive REAL NOT NULL DEFAULT 0,
        dividends REAL NOT NULL DEFAULT 0,
        emission REAL NOT NULL DEFAULT 0,
        consensus REAL NOT NULL DEFAULT 0,
        trust REAL NOT NULL DEFAULT 0,
        validator_trust REAL NOT NULL DEFAULT 0,
        serving TEXT
    )""",
    "CREATE TABLE epochs (block INTEGER NOT NULL, forced INTEGER NOT NULL, result TEXT NOT NULL)",
)

_EPOCH_FIELDS = ("incentive", "dividends", "emission", "consensus", "trust", "validator_trust")
"""Per-uid epoch outputs kept on each neuron row (and in the epoch history)."""


def _extrinsic_payload(
    netuid: int, uids: list[int], values: list[int], version_key: int, block: int
) -> bytes:
    """The bytes a ``set_weights`` extrinsic signs: a canonical encoding of all its arguments."""
    return json.dumps(
        ["set_weights", netuid, uids, values, version_key, block], separators=(",", ":")
    ).encode()


def _sparse(row: np.ndarray) -> str:
    """JSON ``{index: value}`` of a row's non-zero entries (integers stay integers: bonds are u16)."""
    return json.dumps({int(j): v.item() for j, v in enumerate(row) if v})


def _dense(rows: list[str], n: int) -> np.ndarray:
    """An n x n matrix from sparse JSON rows."""
    m = np.zeros((n, n))
    for i, row in enumerate(rows):
        for j, v in json.loads(row).items():
            m[i, int(j)] = v
    return m


class LocalChain(Chain):
    """A simulated subnet in one SQLite file, shared safely by many processes.

    Args:
        path: the SQLite file.
        netuid: the subnet id the file must hold.
        params: hyperparameters for a new file; when opening, if given they must match the stored ones.
        create: make a new file (genesis = now); fails if ``path`` exists. Without it the file must exist.
    """

    def __init__(
        self, path: str | Path, netuid: int = 1, params: SubnetParams | None = None, create: bool = False
    ):
        self.path = Path(path)
        if create and self.path.exists():
            raise ChainError(f"local chain {self.path} already exists; open it without create or delete it")
        if not create and not self.path.exists():
            raise ChainError(
                f"no local chain at {self.path}; create one with `distrain chain create --chain.path {self.path}`"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun explicitly, so their lock level is ours to choose.
        self._db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
        except sqlite3.DatabaseError as e:
            self.close()
            raise ChainError(f"{self.path} is not a distrain local chain ({e})") from e
        # One connection may be shared by a process's threads; SQLite transactions on it must not interleave.
        self._lock = threading.RLock()
        if create:
            self._create(netuid, params or SubnetParams())
        self._load_meta(netuid, params)

    def _create(self, netuid: int, params: SubnetParams) -> None:
        meta = {"genesis": time.time(), "netuid": netuid, "params": asdict(params), "last_epoch_block": 0}
        with self._locked() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])

    def _load_meta(self, netuid: int, params: SubnetParams | None) -> None:
        try:
            meta = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
            self.params = SubnetParams(**meta["params"])
            self.genesis = float(meta["genesis"])
            self.netuid = int(meta["netuid"])
        except (sqlite3.DatabaseError, KeyError, TypeError) as e:
            self.close()
            raise ChainError(f"{self.path} is not a distrain local chain ({e})") from e
        if self.netuid != netuid:
            self.close()
            raise ChainError(f"local chain {self.path} holds subnet {self.netuid}, not {netuid}")
        if params is not None and params != self.params:
            self.close()
            raise ChainError(f"local chain {self.path} was created with other params: {self.params}")

    # -- transactions and the epoch clock ------------------------------------------------------------

    @contextmanager
    def _locked(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute(f"BEGIN {mode}")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """A transaction on a state whose due epochs have run; reads take the write lock only if one is due."""
        with self._lock:
            catch_up = self._epoch_due()
            with self._locked("IMMEDIATE" if write or catch_up else "DEFERRED") as db:
                if catch_up:
                    self._catch_up(db)
                yield db

    def _last_epoch_block(self, db: sqlite3.Connection) -> int:
        return int(db.execute("SELECT value FROM meta WHERE key = 'last_epoch_block'").fetchone()[0])

    def _epoch_due(self) -> bool:
        # A lock-free peek: a stale answer only means the next transaction catches up instead.
        tempo = self.params.tempo
        return self.block() // tempo > self._last_epoch_block(self._db) // tempo

    def _catch_up(self, db: sqlite3.Connection) -> None:
        """Run the epochs due since the last one; caller holds the write lock, so each runs exactly once."""
        tempo = self.params.tempo
        last = self._last_epoch_block(db)
        due = self.block() // tempo - last // tempo
        if due <= 0:
            return
        last += max(0, due - MAX_CATCHUP_EPOCHS) * tempo
        for _ in range(min(due, MAX_CATCHUP_EPOCHS)):
            last += tempo
            self._run_epoch(db, last, forced=False)
        db.execute("UPDATE meta SET value = ? WHERE key = 'last_epoch_block'", (json.dumps(last),))

    def block(self) -> int:
        """Blocks since genesis on the wall clock."""
        return max(0, int((time.time() - self.genesis) / self.params.block_seconds))

    def blocks_until_epoch(self) -> int:
        """Blocks left before the next scheduled epoch."""
        return self.params.tempo - self.block() % self.params.tempo

    # -- epochs --------------------------------------------------------------------------------------

    def run_epoch(self) -> dict:
        """Run an epoch now, outside the schedule (which it does not shift), and return its record."""
        with self._transaction(write=True) as db:
            return self._run_epoch(db, self.block(), forced=True)

    def _assign_permits(self, db: sqlite3.Connection) -> None:
        """Validator permits go to the top ``max_validators`` uids by stake, by the epoch's own rule."""
        stake = np.array(
            [r[0] for r in db.execute("SELECT stake FROM neurons ORDER BY uid")], dtype=np.float64
        )
        permits = top_k_nonzero(stake, self.params.max_validators)
        db.executemany(
            "UPDATE neurons SET validator_permit = ? WHERE uid = ?",
            [(int(v), uid) for uid, v in enumerate(permits)],
        )

    def _run_epoch(self, db: sqlite3.Connection, block: int, forced: bool) -> dict:
        """Yuma on the current weights; stores per-uid results, bonds and permits, appends to the history."""
        p = self.params
        rows = db.execute(
            "SELECT stake, validator_permit, weights, bonds FROM neurons ORDER BY uid"
        ).fetchall()
        n = len(rows)
        stake = np.array([r[0] for r in rows], dtype=np.float64)
        permit = np.array([bool(r[1]) for r in rows], dtype=bool)
        result = yuma_epoch(
            _dense([r[2] for r in rows], n),
            stake,
            permit,
            _dense([r[3] for r in rows], n),
            p.yuma_params(),
            p.yuma,
        )
        emission = split_emission(result, p.tempo * p.emission_per_block, p.owner_cut, p.miner_share)

        per_uid = {
            "incentive": result.incentive,
            "dividends": result.dividends,
            "emission": emission.per_uid,
            "consensus": result.consensus,
            "trust": result.trust,
            "validator_trust": result.validator_trust,
        }
        db.executemany(
            f"UPDATE neurons SET {', '.join(f'{k} = ?' for k in _EPOCH_FIELDS)}, bonds = ?, validator_permit = ? "
            "WHERE uid = ?",
            [
                (
                    *(float(per_uid[k][uid]) for k in _EPOCH_FIELDS),
                    _sparse(result.bonds[uid]),
                    bool(result.validator_permit[uid]),
                    uid,
                )
                for uid in range(n)
            ],
        )
        record = {
            "block": block,
            "forced": forced,
            "owner_emission": emission.owner,
            "uids": list(range(n)),
            "stake": stake.tolist(),
            "validator_permit": permit.tolist(),
            **{k: v.tolist() for k, v in per_uid.items()},
        }
        db.execute("INSERT INTO epochs VALUES (?, ?, ?)", (block, forced, json.dumps(record)))
        return record

    def history(self, limit: int | None = None) -> list[dict]:
        """Epoch records, oldest first (the last ``limit`` only, if given)."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT result FROM epochs ORDER BY rowid DESC LIMIT ?", (-1 if limit is None else limit,)
            ).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    # -- the Chain interface -------------------------------------------------------------------------

    def metagraph(self) -> Metagraph:
        columns = ("uid", "hotkey", "coldkey", "stake", "validator_permit", "last_update", *_EPOCH_FIELDS)
        with self._transaction(write=False) as db:
            block = self.block()
            rows = db.execute(f"SELECT {', '.join(columns)} FROM neurons ORDER BY uid").fetchall()
        col = dict(zip(columns, map(list, zip(*rows)))) if rows else {c: [] for c in columns}
        return Metagraph(
            block=block,
            netuid=self.netuid,
            uids=col["uid"],
            hotkeys=col["hotkey"],
            coldkeys=col["coldkey"],
            stake=col["stake"],
            validator_permit=[bool(v) for v in col["validator_permit"]],
            last_update=col["last_update"],
            **{k: col[k] for k in _EPOCH_FIELDS},
        )

    def register(self, hotkey_ss58: str, coldkey_ss58: str) -> int:
        for address in (hotkey_ss58, coldkey_ss58):
            if not is_ss58(address):
                raise ChainError(f"not a valid SS58 address: {address!r}")
        with self._transaction(write=True) as db:
            row = db.execute("SELECT uid, coldkey FROM neurons WHERE hotkey = ?", (hotkey_ss58,)).fetchone()
            if row is not None:
                uid, owner = row
                if owner != coldkey_ss58:
                    raise ChainError(f"hotkey {hotkey_ss58} is already registered to coldkey {owner}")
                return uid
            uid = db.execute("SELECT COUNT(*) FROM neurons").fetchone()[0]
            db.execute(
                "INSERT INTO neurons (uid, hotkey, coldkey, registered_block) VALUES (?, ?, ?, ?)",
                (uid, hotkey_ss58, coldkey_ss58, self.block()),
            )
            self._assign_permits(db)
            return uid

    def add_stake(self, hotkey_ss58: str, amount: float) -> None:
        if not (math.isfinite(amount) and amount > 0):
            raise ChainError(f"stake amount must be a positive number, got {amount}")
        with self._transaction(write=True) as db:
            self._uid(db, hotkey_ss58)
            db.execute("UPDATE neurons SET stake = stake + ? WHERE hotkey = ?", (amount, hotkey_ss58))
            # Permits follow stake at once, so a fresh subnet's validator can set weights before any epoch.
            self._assign_permits(db)

    def set_weights(self, keypair, uids: list[int], weights: list[float], version_key: int = 0) -> None:
        """Check the chain's rules in order, conform to u16, verify the caller's signature, store the row."""
        p = self.params
        hotkey = keypair.ss58_address
        with self._transaction(write=True) as db:
            block = self.block()
            row = db.execute(
                "SELECT uid, validator_permit, last_update FROM neurons WHERE hotkey = ?", (hotkey,)
            ).fetchone()
            if row is None:
                raise WeightsRejected(
                    "not_registered", f"hotkey {hotkey} is not registered on subnet {self.netuid}"
                )
            uid, permit, last_update = row
            if not permit:
                raise WeightsRejected("no_permit", f"uid {uid} has no validator permit (stake too low)")
            if last_update is not None and block - last_update < p.weights_rate_limit:
                wait = p.weights_rate_limit - (block - last_update)
                raise WeightsRejected(
                    "rate_limited", f"uid {uid} set weights too recently; wait {wait} blocks"
                )
            if version_key < p.weights_version:
                raise WeightsRejected(
                    "version_mismatch", f"version_key {version_key} is below the subnet's {p.weights_version}"
                )
            if len(uids) != len(weights):
                raise WeightsRejected("length_mismatch", f"{len(uids)} uids but {len(weights)} weights")
            uids = [int(u) for u in uids]
            if len(set(uids)) != len(uids):
                raise WeightsRejected("duplicate_uids", "uids contain duplicates")
            n = db.execute("SELECT COUNT(*) FROM neurons").fetchone()[0]
            unknown = [u for u in uids if not 0 <= u < n]
            if unknown:
                raise WeightsRejected("unknown_uid", f"uids {unknown} are not registered (n = {n})")
            w = np.asarray(weights, dtype=np.float64)
            if not np.isfinite(w).all() or (w < 0).any():
                raise WeightsRejected("invalid_weights", "weights must be finite and non-negative")
            # At least one, even when min_allowed_weights is 0: an all-zero vector has nothing to normalise.
            needed = max(1, min(p.min_allowed_weights, n))
            if np.count_nonzero(w) < needed:
                raise WeightsRejected("too_few_weights", f"need at least {needed} non-zero weights")
            if within_limit(w, p.max_weight_limit):
                clipped = w / w.sum()
            else:
                clipped = clip_to_limit(w, p.max_weight_limit / U16_MAX)
            if clipped is None:
                raise WeightsRejected(
                    "over_weight_limit",
                    f"{np.count_nonzero(w)} non-zero weights cannot each stay under max_weight_limit "
                    f"{p.max_weight_limit}/{U16_MAX}; weight more uids",
                )
            values = to_u16(clipped)
            payload = _extrinsic_payload(self.netuid, uids, values, version_key, block)
            if not verify_signature(hotkey, payload, keypair.sign(payload)):
                raise WeightsRejected("bad_signature", f"signature does not match hotkey {hotkey}")
            stored = json.dumps({u: v for u, v in zip(uids, values) if v})
            db.execute("UPDATE neurons SET weights = ?, last_update = ? WHERE uid = ?", (stored, block, uid))

    def weights(self) -> dict[int, dict[int, float]]:
        return {uid: from_u16(row) for uid, row in self.stored_weights().items()}

    def stored_weights(self) -> dict[int, dict[int, int]]:
        """Weight rows as the chain stores them: ``{validator uid: {uid: u16 value}}``."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT uid, weights FROM neurons WHERE weights != '{}' ORDER BY uid"
            ).fetchall()
        return {uid: {int(j): v for j, v in json.loads(row).items()} for uid, row in rows}

    def serve(self, hotkey_ss58: str, info: dict) -> None:
        encoded = json.dumps(info, sort_keys=True)
        if len(encoded) > MAX_SERVE_BYTES:
            raise ChainError(f"served info is {len(encoded)} bytes; the limit is {MAX_SERVE_BYTES}")
        with self._transaction(write=True) as db:
            self._uid(db, hotkey_ss58)
            db.execute("UPDATE neurons SET serving = ? WHERE hotkey = ?", (encoded, hotkey_ss58))

    def served(self) -> dict[str, dict]:
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT hotkey, serving FROM neurons WHERE serving IS NOT NULL").fetchall()
        return {hotkey: json.loads(info) for hotkey, info in rows}

    def _uid(self, db: sqlite3.Connection, hotkey_ss58: str) -> int:
        row = db.execute("SELECT uid FROM neurons WHERE hotkey = ?", (hotkey_ss58,)).fetchone()
        if row is None:
            raise ChainError(f"hotkey {hotkey_ss58} is not registered on subnet {self.netuid}")
        return row[0]

    def close(self) -> None:
        self._db.close()
