"""What miners and validators share: keys, chain, DHT peer, data, the global model θ and its outer step.

Both roles follow θ the same way — gather the round's submissions, check them, average, step — so
they hold the same parameters at every round boundary, which fingerprints confirm.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from distrain.chain import Metagraph, check_signer, load_hotkey, open_chain
from distrain.chain.cache import MetagraphCache
from distrain.clock import BlockClock, RoundClock, wait_for_genesis
from distrain.compression import (
    RECOMMENDED,
    CompressedDelta,
    PayloadError,
    decode_payload,
    estimated_payload_bytes,
    recipe_advice,
)
from distrain.config import Recipe
from distrain.data import PageBook, load_corpus
from distrain.files import append_jsonl, wait_for_file
from distrain.logs import round_summary
from distrain.models import build_model
from distrain.network import FetchError, Peer, round_key
from distrain.tracking import Tracker, open_tracker
from distrain.training import OuterOptimizer, aggregate, fingerprint, fingerprints_match
from distrain.validation import check_announcement, check_delta

log = logging.getLogger("distrain")

WAIT_FOR_FILE_SECONDS = 300.0
"""How long a node waits for a file another process writes for it (`--genesis-file`,
`--initial-peers-file`): the peers of a swarm start together and may take minutes on a busy machine."""
MIN_VALIDATOR_STAKE = 1.0
"""Stake below which a validator's aggregation sets and checkpoints are not followed."""


@dataclass
class NodeOptions:
    """Where and as whom a node runs: command-line flags, not part of the recipe."""

    wallet_path: str
    """Folder holding the wallets."""
    wallet_name: str
    """Wallet (coldkey) name."""
    wallet_hotkey: str = "default"
    """Hotkey name inside the wallet; it signs every record."""
    initial_peers: list[str] = field(default_factory=list)
    """Multiaddrs of DHT peers to join through (empty: start a new DHT)."""
    initial_peers_file: str | None = None
    """Alternatively, a file to wait for that lists them, one per line (`distrain dht --maddrs-file`):
    `distrain swarm` starts its bootstrap peer and the other peers at once."""
    host: str = "127.0.0.1"
    """Address the DHT/P2P node listens on."""
    port: int = 0
    """Port the DHT/P2P node listens on (0: any free port)."""
    out_dir: str = "."
    """Folder for this node's events, logs and state."""
    genesis: float | None = None
    """Unix time at which round 0 starts."""
    genesis_file: str | None = None
    """Alternatively, a file to wait for that holds the genesis (written by `distrain swarm`)."""
    rounds: int | None = None
    """Stop after this many rounds (None: run until stopped)."""


class Stopwatch:
    """Seconds spent in the named parts of a round, for its event record: `with watch("gather"): ...`."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.seconds[part] = time.monotonic() - started


class NodeError(Exception):
    """A node that cannot start as asked; the message is one line for the user."""


def _check_payload_size(recipe: Recipe, shapes: dict[str, torch.Size], max_payload_bytes: int) -> None:
    """Refuse a recipe whose payloads every peer would reject as oversized (fp32 of a 25M model is 97 MiB)."""
    codec = recipe.compression.codec
    estimate = estimated_payload_bytes(codec, shapes)
    if estimate > max_payload_bytes:
        parameters = sum(shape.numel() for shape in shapes.values())
        raise NodeError(
            f"codec {codec} makes payloads of about {estimate / 2**20:.0f} MiB for this model's "
            f"{parameters / 1e6:.1f}M parameters, above run.max_payload_mb {recipe.run.max_payload_mb:g}: "
            f"every peer would reject them as oversized; raise run.max_payload_mb or use a compressing "
            f"codec: topk, or {RECOMMENDED} with a third of its bytes at inner.steps 16 (its recipe advice "
            f"names the rest)"
        )


@dataclass
class Submission:
    """One miner's contribution to a round, as this node saw it."""

    hotkey: str
    body: dict
    delta: CompressedDelta | None = None
    """The validated pseudo-gradient, still compressed; None when rejected."""
    reason: str | None = None
    """Why it was rejected; None when it passed every check."""


class EventLog:
    """A node's one record per round, for three readers: `events.jsonl` (append-only JSON lines, read by
    the swarm and by reports), the node's log (a one-line summary), and the experiment tracker if there
    is one (the same keys as namespaced metrics, see `distrain.tracking`)."""

    def __init__(self, path: Path, logger: logging.Logger = log, tracker: Tracker | None = None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.logger, self.tracker = path, logger, tracker

    def write(self, record: dict) -> None:
        append_jsonl(self.path, [{"time": time.time(), **record}])
        message, fields = round_summary(record)
        self.logger.info(message, extra={"fields": fields})
        if self.tracker is not None:
            self.tracker.log(record)

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.close()


class Node:
    """A participant of a run: everything a miner and a validator both need."""

    def __init__(self, recipe: Recipe, options: NodeOptions):
        self.recipe, self.options = recipe, options
        self.recipe_hash = recipe.hash()
        self.out_dir = Path(options.out_dir)
        self.keypair = load_hotkey(options.wallet_path, options.wallet_name, options.wallet_hotkey)
        self.hotkey = self.keypair.ss58_address
        # The model first: a recipe whose payloads peers would refuse stops here, before a tracker run or
        # chain connection is opened.
        self.model = build_model(recipe.model, recipe.run.seed)
        self.outer = OuterOptimizer(self.model, recipe.outer)
        self.shapes = {name: param.shape for name, param in self.model.named_parameters()}
        self.max_payload_bytes = int(recipe.run.max_payload_mb * 2**20)
        _check_payload_size(recipe, self.shapes, self.max_payload_bytes)
        role = type(self).__name__.lower()
        tracker = open_tracker(
            recipe.tracking,
            self.out_dir,
            name=f"{role}-{self.hotkey[:8]}",
            group=recipe.run.run_id,
            config={**recipe.to_dict(), "hotkey": self.hotkey, "recipe_hash": self.recipe_hash},
        )
        self.events = EventLog(
            self.out_dir / "events.jsonl", logging.getLogger(type(self).__module__), tracker
        )
        self._traffic_reported = (0, 0)
        for advice in recipe_advice(recipe):
            log.warning("%s", advice)
        self.chain = open_chain(**recipe.chain.connection())
        self.metagraph = MetagraphCache(self.chain)
        if self.metagraph.get().uid_of(self.hotkey) is None:
            raise NodeError(f"hotkey {self.hotkey} is not registered on netuid {recipe.chain.netuid}")
        self.book = PageBook(load_corpus(recipe.data), recipe.data, recipe.run.seed, recipe.model.context)
        initial_peers = options.initial_peers
        if options.initial_peers_file:
            initial_peers = wait_for_file(options.initial_peers_file, timeout=WAIT_FOR_FILE_SECONDS).split()
        self.peer = Peer(initial_peers=initial_peers, host_maddrs=[f"/ip4/{options.host}/tcp/{options.port}"])

    # -- lifecycle -----------------------------------------------------------------------------------

    def start_clock(self) -> RoundClock | BlockClock:
        """Announce readiness (for a swarm); rounds follow the chain's blocks where it has a block clock,
        else the wall clock from the run's genesis, which this waits for."""
        (self.out_dir / "ready").write_text(json.dumps({"hotkey": self.hotkey, "peer_id": self.peer.peer_id}))
        block_clock = self.chain.round_clock(self.recipe.run.round_seconds)
        if block_clock is not None:
            return block_clock
        genesis = self.options.genesis
        if genesis is None:
            if not self.options.genesis_file:
                raise NodeError("give --genesis (unix time of round 0) or --genesis-file")
            genesis = wait_for_genesis(Path(self.options.genesis_file), WAIT_FOR_FILE_SECONDS)
        return RoundClock(genesis, self.recipe.run.round_seconds)

    def close(self) -> None:
        self.events.close()
        self.peer.shutdown()
        self.chain.close()

    def traffic(self) -> dict[str, int]:
        """Payload bytes uploaded and downloaded since the last call, for the round's event record (a slow
        peer's fetch of this round's payload may land in the next record)."""
        sent, received = self.peer.bytes_served, self.peer.bytes_fetched
        traffic = {
            "bytes_sent": sent - self._traffic_reported[0],
            "bytes_received": received - self._traffic_reported[1],
        }
        self._traffic_reported = (sent, received)
        return traffic

    # -- the shared round mechanics ------------------------------------------------------------------

    def key(self, round_: int, kind: str) -> str:
        return round_key(self.recipe.run.run_id, round_, kind)

    def submission_key(self, round_: int) -> str:
        return self.key(round_, "announcement")

    def record_body(self, kind: str, round_: int) -> dict:
        return {"kind": kind, "run": self.recipe.run.run_id, "recipe": self.recipe_hash, "round": round_}

    def publish_payload(
        self, round_: int, data: bytes, body: dict, signer=None, announced_size: int | None = None
    ) -> None:
        """Serve the payload over P2P and announce it, signed, in the DHT.

        `signer` and `announced_size` exist for the cheating behaviours of `distrain.adversaries`.
        """
        sha256 = self.peer.serve_payload(data)
        announcement = {
            **self.record_body("announcement", round_),
            "sha256": sha256,
            "size": len(data) if announced_size is None else announced_size,
            "peer_id": self.peer.peer_id,
            **body,
        }
        self.peer.publish(self.submission_key(round_), signer or self.keypair, announcement, self.ttl)

    @property
    def ttl(self) -> float:
        return 4 * self.recipe.run.round_seconds

    @property
    def fetch_timeout(self) -> float:
        return max(5.0, self.recipe.run.round_seconds / 4)

    def gather(
        self, round_: int, base_fp: list[float], announced: dict[str, dict] | None = None
    ) -> list[Submission]:
        """Every announced submission of the round, fetched and checked, in hotkey order."""
        metagraph = self.metagraph.get()
        if announced is None:
            announced = self.peer.read(self.submission_key(round_))
        submissions = [
            self._receive(hotkey, announced[hotkey], round_, metagraph, base_fp)
            for hotkey in sorted(announced)
        ]
        self._reject_norm_outliers(submissions)
        return submissions

    def _reject_norm_outliers(self, submissions: list[Submission]) -> None:
        """A delta far above the round's median norm is an attack, not an update to clip."""
        norms = {s.hotkey: s.delta.norm() for s in submissions if s.delta is not None}
        if not norms:
            return
        median = float(torch.tensor(list(norms.values())).median())
        for s in submissions:
            if s.delta is not None and norms[s.hotkey] > self.recipe.outer.max_norm_ratio * median:
                s.reason, s.delta = "norm_outlier", None

    def _receive(
        self, hotkey: str, body: dict, round_: int, metagraph: Metagraph, base_fp: list[float]
    ) -> Submission:
        submission = Submission(hotkey=hotkey, body=body)
        submission.reason = check_announcement(
            body,
            run_id=self.recipe.run.run_id,
            recipe_hash=self.recipe_hash,
            round_=round_,
            metagraph=metagraph,
            max_bytes=self.max_payload_bytes,
        )
        if submission.reason:
            return submission
        try:
            data = self.peer.fetch(
                body["peer_id"], body["sha256"], max_bytes=body["size"], timeout=self.fetch_timeout
            )
            meta, delta = decode_payload(data, self.shapes, self.recipe.compression.codec)
        except (FetchError, PayloadError) as error:
            submission.reason = error.reason
            return submission
        if meta.get("hotkey") != hotkey or meta.get("round") != round_:
            submission.reason = "meta_mismatch"
        elif not fingerprints_match(body["base_fp"], base_fp):
            submission.reason = "wrong_base"
        else:
            submission.reason = check_delta(delta)
        submission.delta = None if submission.reason else delta
        return submission

    def outer_step(
        self, base: dict[str, torch.Tensor], submissions: list[Submission], members: set[str] | None
    ) -> list[str]:
        """θ_{r+1} from the accepted submissions of the aggregation set (all accepted ones when no
        validator named a set); returns the hotkeys averaged."""
        accepted = [s for s in submissions if s.delta is not None and (not members or s.hotkey in members)]
        if accepted:
            self.outer.step(base, aggregate([s.delta for s in accepted], self.recipe.outer.average))
        else:
            self.outer.skip(base)
        return [s.hotkey for s in accepted]

    def publish_fingerprint(self, round_: int) -> list[float]:
        """Publish the fingerprint of θ_{round} so peers can check they hold the same model."""
        fp = fingerprint(self.model)
        self.peer.publish(
            self.key(round_, "fingerprint"),
            self.keypair,
            {**self.record_body("fingerprint", round_), "fp": fp},
            self.ttl,
        )
        return fp

    def leading_record(self, round_: int, kind: str) -> dict | None:
        """The `kind` record of `round_` published by the validator with the most stake, if any.

        Only permitted, staked validators may steer training (aggregation sets, checkpoints); a record
        from anyone else is ignored, however well signed.
        """
        metagraph = self.metagraph.get()
        candidates = [
            (metagraph.stake[metagraph.uid_of(hotkey)], hotkey, record)
            for hotkey, record in self.peer.read(self.key(round_, kind)).items()
            if record.get("recipe") == self.recipe_hash
            and check_signer(metagraph, hotkey, require_permit=True, min_stake=MIN_VALIDATOR_STAKE) is None
        ]
        return max(candidates, default=(None, None, None))[2]
