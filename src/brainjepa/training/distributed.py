"""torchrun-style process groups: RANK / WORLD_SIZE / LOCAL_RANK from the environment; absent means one process."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from brainjepa.runtime import resolve_device


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    progress: bool = True  # progress bars wanted (the CLI's --no-progress, or stderr not a terminal)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def bars(self) -> bool:
        """Draw progress bars here: on rank 0 only, and only if wanted."""
        return self.is_main and self.progress

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA); an init failure raises."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local, world)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank, world, local, dev)


def all_reduce_mean(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        value = value.detach().clone()
        dist.all_reduce(value)
        value /= env.world_size
    return value


def all_reduce_max(value: int, env: DistEnv) -> int:
    """The largest of every process's `value` (a host sync: call it where the processes meet anyway)."""
    if not env.distributed:
        return value
    tensor = torch.tensor(value, device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def cleanup(env: DistEnv, *, finished: bool = True) -> None:
    """Leave the process group, deterministically: every process exits, none hangs at interpreter shutdown.

    Drop every DistributedDataParallel wrapper before calling this. A gloo group's C++ destructor joins its worker
    threads while this thread holds the GIL, and a worker that is freeing the tensors of a finished collective
    needs the GIL: a deadlock, seen in about half the runs when the DDP reducer freed the group at exit. So, when
    the run `finished` (every process is here), a last barrier is kept open from Python: the barrier holds the
    last collectives (and their tensors) until `work` is dropped, so once it is done the worker threads have
    nothing left to free; reference cycles (DDP's hooks) are collected while the group is still registered; the
    group is destroyed (its threads joined, idle); only then are the held collectives freed, in this thread. After
    a failure (`finished` False) the other processes may be gone, so there is no barrier.
    """
    if not (env.distributed and dist.is_initialized()):
        return
    work = dist.barrier(async_op=True) if finished else None
    if work is not None:
        work.wait()
    gc.collect()  # wrappers in reference cycles release their hold on the group now, not at exit
    dist.destroy_process_group()
    del work  # the barrier's prior collectives are freed here, by this thread, after the gloo threads were joined
