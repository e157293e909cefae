"""Miner behaviours: the honest one, and the known cheats a validator must withstand.

Each behaviour overrides one step of a miner's round — which pages it trains on, what it does to its
pseudo-gradient, what bytes it serves, how it announces — and is started with `distrain miner
--behaviour NAME` (or `distrain swarm --adversaries a,b,...`). They exist so that tests and swarms
attack the validator with real processes over the real network, not with mocks.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import torch

from distrain.compression import PayloadError, decode_payload, encode_payload
from distrain.network import FetchError
from distrain.validation import check_delta

if TYPE_CHECKING:
    from distrain.miner import Miner

Delta = dict[str, torch.Tensor]


class Behaviour:
    """The honest miner: every hook is the identity. Cheats override one hook each."""

    name = "honest"
    trains = True
    """Whether the miner runs its inner steps at all."""

    def pages(self, miner: Miner, round_: int) -> list[int]:
        return miner.book.assignment(miner.hotkey, round_)

    def delta(self, miner: Miner, round_: int, delta: Delta) -> Delta:
        return delta

    def payload(self, miner: Miner, round_: int, payload: bytes) -> bytes:
        return payload

    def publish(self, miner: Miner, round_: int, payload: bytes, body: dict) -> None:
        miner.publish_payload(round_, payload, body)


class FreeRider(Behaviour):
    """Claims a reward without training: a zero delta."""

    name, trains = "freerider", False

    def delta(self, miner, round_, delta):
        return {name: torch.zeros_like(t) for name, t in delta.items()}


class Noise(Behaviour):
    """Trains (to learn an honest norm) but publishes random noise of that norm."""

    name = "noise"

    def delta(self, miner, round_, delta):
        norm = torch.sqrt(sum((t**2).sum() for t in delta.values()))
        noise = {name: torch.randn_like(t) for name, t in delta.items()}
        scale = norm / torch.sqrt(sum((t**2).sum() for t in noise.values()))
        return {name: t * scale for name, t in noise.items()}


class NaN(Behaviour):
    """Publishes non-finite values."""

    name, trains = "nan", False

    def delta(self, miner, round_, delta):
        return {name: torch.full_like(t, float("nan")) for name, t in delta.items()}


class Huge(Behaviour):
    """Inflates an honest update's norm a thousandfold, to dominate the average."""

    name = "huge"

    def delta(self, miner, round_, delta):
        return {name: 1000 * t for name, t in delta.items()}


class Stale(Behaviour):
    """Trains once, then replays that old update every round."""

    name = "stale"

    def __init__(self):
        self.first: Delta | None = None

    @property
    def trains(self) -> bool:  # type: ignore[override]
        return self.first is None

    def delta(self, miner, round_, delta):
        if self.first is None:
            self.first = delta
        return self.first


class WrongData(Behaviour):
    """Trains well, but on pages that were assigned to somebody else."""

    name = "wrongdata"

    def pages(self, miner, round_):
        return miner.book.assignment(f"not-{miner.hotkey}", round_)


class Garbage(Behaviour):
    """Serves bytes that are not a safetensors file."""

    name, trains = "garbage", False

    def payload(self, miner, round_, payload):
        return os.urandom(len(payload))


class Oversized(Behaviour):
    """Announces an honest size but serves far more bytes (pads the payload)."""

    name, trains = "oversized", False

    def publish(self, miner, round_, payload, body):
        padded = payload + bytes(4 * len(payload))
        miner.publish_payload(round_, padded, body, announced_size=len(payload))


class BadSignature(Behaviour):
    """Announces with a signature that its hotkey did not make."""

    name, trains = "badsig", False

    def publish(self, miner, round_, payload, body):
        miner.publish_payload(round_, payload, body, signer=_ForgedSigner(miner.hotkey))


class _ForgedSigner:
    def __init__(self, ss58_address: str):
        self.ss58_address = ss58_address

    def sign(self, data: bytes) -> bytes:
        return os.urandom(64)


class Copycat(Behaviour):
    """Waits for another miner's useful announcement, fetches its payload and republishes it as its own."""

    name, trains = "copycat", False

    def publish(self, miner, round_, payload, body):
        deadline = miner.clock.end(round_) - 1.0
        while time.time() < deadline:
            for hotkey, record in miner.peer.read(miner.submission_key(round_)).items():
                if hotkey == miner.hotkey:
                    continue
                try:
                    data = miner.peer.fetch(record["peer_id"], record["sha256"], record["size"], timeout=5)
                    _, delta = decode_payload(data, miner.shapes, miner.recipe.compression.codec)
                except (FetchError, PayloadError):
                    continue
                if check_delta(delta):  # nothing worth stealing
                    continue
                meta = {"hotkey": miner.hotkey, "round": round_, "tokens": record["tokens"]}
                stolen = encode_payload(delta, miner.recipe.compression.codec, meta)
                miner.publish_payload(round_, stolen, {**body, "tokens": record["tokens"]})
                return
            time.sleep(0.2)


BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (
        Behaviour,
        FreeRider,
        Noise,
        NaN,
        Huge,
        Stale,
        WrongData,
        Garbage,
        Oversized,
        BadSignature,
        Copycat,
    )
}
"""Every behaviour a miner can be started with; anything but `honest` is a cheat for tests."""
