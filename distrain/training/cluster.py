"""One miner's processes: every rank trains, only the main one (rank 0) talks to the network.

`accelerate launch` (or torchrun, slurm) starts N processes of the same miner. Rank 0 holds the
hotkey, the DHT peer and the global model θ; the others hold a training replica and follow rank 0
through the few collectives below, called in the same order on every rank. With one process every
helper reduces to the identity, so a single-process miner runs the very same code.

θ lives on rank 0 as a plain module on the CPU; the replica that trains (wrapped by DDP or sharded
by FSDP) is separate. They meet only as *full* state dicts — gathered onto rank 0 after the inner
steps, broadcast from rank 0 after the outer step — which is what makes the snapshot, the
pseudo-gradient and the outer step identical for DDP, FSDP and a single process.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, broadcast_object_list
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    set_model_state_dict,
)


class Cluster:
    """Rank, world size and the collectives of one miner's processes, over one `Accelerator`."""

    def __init__(self, accelerator: Accelerator):
        self.accelerator = accelerator
        self.rank, self.world_size = accelerator.process_index, accelerator.num_processes
        self.is_main = accelerator.is_main_process

    @classmethod
    def start(cls, idle_seconds: float = 1800.0) -> Cluster:
        """Join the processes started by the launcher (a lone process needs none).

        Mixed precision and the distributed type come from `accelerate launch`'s environment; without
        a GPU the processes meet over gloo on the CPU. `idle_seconds` bounds how long the other ranks
        may wait in a collective while rank 0 publishes and gathers: more than a round, or they time out.
        """
        timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=idle_seconds))
        return cls(Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[timeout]))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank (pickled: only ever between this miner's own processes)."""
        if not self.distributed:
            return obj
        box = [obj]
        broadcast_object_list(box, from_process=0)
        return box[0]

    def decide(self, flag: bool) -> bool:
        """Rank 0's `flag` on every rank: a stop that one rank took alone would hang DDP's next all-reduce."""
        if not self.distributed:
            return flag
        tensor = torch.tensor([int(flag)], device=self.accelerator.device)
        dist.broadcast(tensor, src=0)
        return bool(tensor.item())

    def mean(self, value: float) -> float:
        """The mean of `value` over ranks."""
        if not self.distributed:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.accelerator.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def gather_state(self, replica: nn.Module) -> dict[str, torch.Tensor]:
        """The replica's full (unsharded) state dict, on the CPU of rank 0; empty on the other ranks."""
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(replica, options=options)

    def scatter_state(self, replica: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load rank 0's full `state` into every rank's replica (the other ranks pass an empty dict)."""
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=self.distributed)
        set_model_state_dict(replica, state, options=options)

    def finish(self) -> None:
        """Leave together at the end of a run: a rank exiting while another still talks to it can abort it.

        Not for an interrupted run: the other ranks may be inside another collective; they stop on
        their own signal, or when the launcher sees a rank gone.
        """
        if self.distributed:
            self.barrier()
            dist.destroy_process_group()


def exit_launched_rank(code: int) -> int:
    """End a process that `accelerate launch` (or torchrun) started with `code`, skipping the interpreter's
    finalization; a process started on its own just gets `code` back.

    Why: Gloo's and autograd's C++ threads may still release tensors while Python tears itself down, and a
    thread that takes the GIL then aborts the process (SIGABRT; pytorch/pytorch#190489). The launcher
    reports such a rank as failed, and with it the whole miner, although every round was done and saved.
    Call it once the node is closed (events written, checkpoint committed, p2pd stopped): only the logs
    and stdio are left to flush.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return code
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
