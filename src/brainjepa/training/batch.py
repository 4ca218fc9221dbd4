"""The pretraining batch pipeline: sampler keys -> typed `Batch`es (windows + masks) -> a seeded DataLoader.

`GlobalBatchSampler` yields keys (epoch, batch, this rank's item indices); `MaskedBatches` turns a key into a
`Batch` inside DataLoader workers: the items' windows (`StoreDataset.sample`, seeded by (seed, epoch, item)) and
the masks of the whole global batch (`draw_masks`, seeded by (seed, epoch, batch)), sharded to this rank's rows.
Every value is a function of the seed and the position, so process count, worker layout and resuming change
nothing; `epoch_loader` also gives the DataLoader its own generator, so it never draws from torch's global RNG,
and can span many epochs with one loader (its workers then live for the whole run).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from brainjepa.masks import MaskConfig, draw_masks
from brainjepa.training.sampler import GlobalBatchSampler

if TYPE_CHECKING:
    from brainjepa.data.dataset import StoreDataset

# Stream tags of `derive_seed`, so the loader and drop path never share a stream with each other.
LOADER_STREAM, DROP_PATH_STREAM = 1, 2


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that is a well-mixed function of the integer keys (numpy SeedSequence)."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, np.uint64)[0] >> np.uint64(1))


@dataclass(frozen=True)
class Batch:
    """One process's micro-batch.

    x: float32 [B, R, T] windows; context_idx [B, K_enc] and target_idx [B, K_pred]: LongTensor token indices
    (token = roi * P + time patch); index: LongTensor [B] dataset items; epoch, batch: where it sits in the run.
    """

    x: Tensor
    context_idx: Tensor
    target_idx: Tensor
    index: Tensor
    epoch: int
    batch: int

    def pin_memory(self) -> Batch:
        """Page-locked copy (DataLoader `pin_memory=True` calls this), so `.to(cuda, non_blocking=True)` is async."""
        return self._map(Tensor.pin_memory)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """Every tensor moved to `device`."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def _map(self, fn) -> Batch:
        return replace(self, **{f.name: fn(getattr(self, f.name)) for f in fields(self)
                                if isinstance(getattr(self, f.name), Tensor)})


class MaskedBatches(torch.utils.data.Dataset):
    """Key (epoch, batch, indices) -> `Batch` of this rank.

    Args:
        dataset: the windows (`StoreDataset.sample(i, epoch)`).
        mask: the mask section of the config; grid: (ROIs, time patches) of the model.
        seed: the run's seed (masks of batch b of epoch e come from (seed, e, b)).
        batch_size: rows per process; rank, world_size: this process and how many there are. Masks are drawn for
            the global batch (batch_size * world_size) and rank r keeps rows r*B:(r+1)*B, so every process count
            sees the same masks for the same samples.
    """

    def __init__(self, dataset: StoreDataset, mask: MaskConfig, grid: tuple[int, int], *, seed: int,
                 batch_size: int, rank: int = 0, world_size: int = 1) -> None:
        mask.check_grid(*grid)
        self.dataset, self.mask, self.grid, self.seed = dataset, mask, grid, seed
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, list[int]]) -> Batch:
        epoch, batch, indices = key
        x = torch.stack([self.dataset.sample(i, epoch) for i in indices])
        ctx, tgt = draw_masks(self.mask, *self.grid, seed=self.seed, epoch=epoch, batch=batch,
                              batch_size=self.batch_size * self.world_size)
        rows = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        return Batch(x, ctx[rows], tgt[rows], torch.as_tensor(indices, dtype=torch.long), epoch, batch)


class RunKeys(torch.utils.data.Sampler[tuple[int, int, list[int]]]):
    """The sampler's keys from (epoch, start_batch) to the end of epoch end_epoch - 1, epoch after epoch."""

    def __init__(self, sampler: GlobalBatchSampler, epoch: int, start_batch: int, end_epoch: int) -> None:
        self.sampler, self.epoch, self.start_batch, self.end_epoch = sampler, epoch, start_batch, end_epoch

    def __iter__(self):
        for e in range(self.epoch, self.end_epoch):
            yield from self.sampler.keys(e, self.start_batch if e == self.epoch else 0)

    def __len__(self) -> int:
        return max(0, (self.end_epoch - self.epoch) * self.sampler.batches_per_epoch - self.start_batch)


def epoch_loader(batches: MaskedBatches, sampler: GlobalBatchSampler, epoch: int, start_batch: int = 0, *,
                 end_epoch: int | None = None, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int | None = None) -> torch.utils.data.DataLoader:
    """DataLoader over the `Batch`es from (`epoch`, `start_batch`) to the end of epoch `end_epoch` - 1 (default:
    the end of `epoch`); batches are built whole in the workers, `prefetch_factor` ahead per worker.

    Spanning the run with one loader keeps its workers alive across epoch boundaries (what `persistent_workers`
    gives a loader that is iterated once per epoch) and stays deterministic: a batch is a pure function of its key,
    whichever worker builds it. The generator is seeded from (seed, epoch): creating an iterator draws the workers'
    base seed from it, which would otherwise advance torch's global RNG at a point that differs between a run and
    its resumption.
    """
    keys = RunKeys(sampler, epoch, start_batch, epoch + 1 if end_epoch is None else end_epoch)
    generator = torch.Generator().manual_seed(derive_seed(batches.seed, LOADER_STREAM, epoch))
    return torch.utils.data.DataLoader(batches, sampler=keys, batch_size=None, num_workers=num_workers,
                                       pin_memory=pin_memory, generator=generator, worker_init_fn=_ignore_sigint,
                                       prefetch_factor=prefetch_factor if num_workers else None)


def _ignore_sigint(worker_id: int) -> None:
    """Workers leave Ctrl-C to the main process, which stops at a step boundary (training/interrupt.py)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
