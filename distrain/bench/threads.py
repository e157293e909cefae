"""One torch thread for the length of a measurement: the targets are per core."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one torch thread, then restore the caller's count: more threads would flatter
    the big tensors only, and a calibration on two cores would not match the swarm's miners, which
    share them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
