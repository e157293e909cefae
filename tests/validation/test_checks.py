"""Reason codes of the cheap checks on an announcement and on a decoded delta."""

from __future__ import annotations

import pytest
import torch

from distrain.chain import Metagraph
from distrain.compression import CompressedDelta, decode_payload, encode_payload
from distrain.validation import check_announcement, check_delta

HOTKEYS = ["5Validator", "5Miner"]
GOOD = {"run": "run-1", "recipe": "hash-1", "round": 7, "hotkey": "5Miner", "size": 1000}


def metagraph(hotkeys: list[str]) -> Metagraph:
    n = len(hotkeys)
    return Metagraph(
        block=100, netuid=1, uids=list(range(n)), hotkeys=hotkeys, coldkeys=[f"5Cold{i}" for i in range(n)],
        stake=[0.0] * n, validator_permit=[False] * n, incentive=[0.0] * n, dividends=[0.0] * n,
        emission=[0.0] * n, consensus=[0.0] * n, trust=[0.0] * n, validator_trust=[0.0] * n,
        last_update=[None] * n,
    )  # fmt: skip


def check(**changes) -> str | None:
    body = {key: value for key, value in {**GOOD, **changes}.items() if value is not None}
    return check_announcement(
        body, run_id="run-1", recipe_hash="hash-1", round_=7, metagraph=metagraph(HOTKEYS), max_bytes=4096
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"run": "run-2"}, "wrong_recipe"),
        ({"recipe": "hash-2"}, "wrong_recipe"),
        ({"round": 6}, "wrong_round"),
        ({"hotkey": "5Stranger"}, "not_registered"),
        ({"size": 0}, "oversized"),
        ({"size": 4097}, "oversized"),
        ({"size": 4096}, None),
    ],
)
def test_announcement_reasons(changes, reason):
    assert check(**changes) == reason


def test_an_announcement_without_a_size_is_refused():
    assert check(size=None) == "oversized"


def decoded(delta: dict[str, torch.Tensor], codec: str) -> CompressedDelta:
    shapes = {name: tensor.shape for name, tensor in delta.items()}
    return decode_payload(encode_payload(delta, codec, {}), shapes, codec)[1]


@pytest.mark.parametrize("codec", ["fp32", "topk"])
def test_a_delta_of_zeros_is_a_free_ride(codec):
    assert check_delta(decoded({"w": torch.zeros(3, 3), "b": torch.zeros(3)}, codec)) == "zero_delta"
    # 1e-40 squares to 0 in float32: the norm is summed in float64.
    for tiny in (1e-6, 1e-40):
        assert (
            check_delta(decoded({"w": torch.zeros(3, 3), "b": torch.tensor([0.0, tiny, 0.0])}, codec)) is None
        )
