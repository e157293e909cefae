"""Cheap checks run on every submission before anything is fetched, averaged or evaluated.

Each returns `None` when the submission passes, or a short reason code that is logged per miner per
round. Miners run them too before aggregating, so junk never reaches θ.
"""

from __future__ import annotations

from distrain.chain import Metagraph
from distrain.compression import CompressedDelta


def check_announcement(
    body: dict, *, run_id: str, recipe_hash: str, round_: int, metagraph: Metagraph, max_bytes: int
) -> str | None:
    """Checks on the signed announcement alone (its signature was verified when it was read)."""
    if body.get("run") != run_id or body.get("recipe") != recipe_hash:
        return "wrong_recipe"
    if body.get("round") != round_:
        return "wrong_round"
    if metagraph.uid_of(body.get("hotkey", "")) is None:
        return "not_registered"
    if not 0 < body.get("size", 0) <= max_bytes:
        return "oversized"
    return None


def check_delta(delta: CompressedDelta) -> str | None:
    """Checks on the decoded pseudo-gradient (shapes and finiteness are the decoder's)."""
    if delta.norm() == 0:  # summed in float64: no nonzero float32 squares to 0
        return "zero_delta"
    return None
