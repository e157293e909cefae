"""A metagraph that survives a chain outage: the last good read stands in until the chain answers again.

A validator or miner reads the metagraph every round; a node or RPC endpoint that is down for a few
minutes must not stop training or scoring (weights are retried at the next interval anyway).
"""

from __future__ import annotations

import logging
import time

from .base import Chain, ChainError, Metagraph

log = logging.getLogger("distrain.chain")


class MetagraphCache:
    """`get()` reads the chain's metagraph, or returns the last one read when the chain fails."""

    def __init__(self, chain: Chain):
        self.chain = chain
        self.last: Metagraph | None = None
        self.last_read: float | None = None

    def get(self) -> Metagraph:
        """The current metagraph; on a ChainError the last good one (raises only if there is none yet)."""
        try:
            self.last, self.last_read = self.chain.metagraph(), time.time()
        except ChainError as error:
            if self.last is None:
                raise
            log.warning("chain unavailable (%s); using the metagraph read %.0f s ago", error, self.age)
        return self.last

    @property
    def age(self) -> float:
        """Seconds since the last good read."""
        return time.time() - self.last_read if self.last_read is not None else float("inf")
