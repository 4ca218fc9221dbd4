"""What a pretraining config will cost before it runs (`brainjepa pretrain --print-config`): its optimizer steps,
its time from a few timed steps, and its peak memory.

The run is built as `pretrain` builds it (store, held-out split, normaliser, gradients, model, optimizer, on the
config's device and precision) in a throwaway folder; then one warm-up step and `timed_steps` timed steps run,
each timed from fetching its micro-batches to the end of its update (as metrics.csv's data_time_s + step_time_s).
Time = total steps x the median step. Not counted: start-up, the held-out checks every logging.eval_every steps,
checkpoints. Peak memory is measured on CUDA (torch.cuda.max_memory_allocated, from building the run to the last
timed step); on a CPU it is the analytic `step_memory_bytes` of the model at the largest mask drawn (weights,
optimizer state and the activations kept for backward), since a process's CPU memory has no such counter.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from brainjepa.config import TrainConfig
from brainjepa.models.flops import step_memory_bytes
from brainjepa.runtime import resolve_device
from brainjepa.training.distributed import DistEnv
from brainjepa.training.loop import Trainer


@dataclass(frozen=True)
class RunEstimate:
    """The cost of one pretraining run of a config, for one process."""

    total_steps: int  # optimizer steps of the run (schedule, capped by optimization.max_steps)
    train_runs: int  # runs it trains on (data.holdout's subjects held out)
    device: str
    precision: str
    step_seconds: float | None  # median of the timed steps; None when none were timed
    timed_steps: int
    peak_bytes: int
    peak_measured: bool  # True: measured on CUDA; False: the analytic estimate

    @property
    def seconds(self) -> float | None:
        """Estimated training time: total steps x the median timed step."""
        return None if self.step_seconds is None else self.total_steps * self.step_seconds


def estimate_run(cfg: TrainConfig, *, timed_steps: int = 3) -> RunEstimate:
    """Build the run `cfg` describes and time `timed_steps` optimizer steps after one warm-up step (0: none).

    Raises:
        ConfigError, DataError: what `pretrain` itself would refuse (no data.path, a batch larger than the store).
    """
    device = resolve_device(cfg.meta.device)
    cuda = device.type == "cuda"
    accum = cfg.meta.accumulation_steps
    with tempfile.TemporaryDirectory() as tmp:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(cfg, Path(tmp), DistEnv(device=device, progress=False), resume=False)
        batches = trainer.micro_batches()
        try:
            ks: list[tuple[int, int]] = []
            times: list[float] = []
            for i in range(timed_steps + 1 if timed_steps else 0):
                _sync(cuda)
                t0 = time.perf_counter()
                row = trainer.train_step(list(itertools.islice(batches, accum)))
                _sync(cuda)
                if i:  # the first step is the warm-up (allocations, DataLoader start, kernel choice)
                    times.append(time.perf_counter() - t0)
                ks.append((row["k_context"], row["k_target"]))
            if not ks:  # untimed: the masks of the first batch size the memory estimate
                first = next(batches)
                ks.append((first.context_idx.shape[1], first.target_idx.shape[1]))
            measured = cuda and bool(times)
            peak = torch.cuda.max_memory_allocated(device) if measured else step_memory_bytes(
                cfg.model, max(k[0] for k in ks), max(k[1] for k in ks), cfg.data.batch_size,
                bf16=trainer.precision.dtype == torch.bfloat16, grad_checkpointing=cfg.meta.grad_checkpointing)
            return RunEstimate(total_steps=trainer.total_steps, train_runs=len(trainer.dataset), device=str(device),
                               precision=trainer.precision.name,
                               step_seconds=statistics.median(times) if times else None, timed_steps=len(times),
                               peak_bytes=int(peak), peak_measured=measured)
        finally:
            batches.close()  # its DataLoader workers stop now
            trainer.release()


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()
