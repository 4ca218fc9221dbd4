"""Deterministic, resumable, rank-sharded batches.

Each epoch is a permutation drawn from (seed, epoch); global batch b holds items perm[b*G:(b+1)*G] with
G = batch_size * world_size, and rank r takes its slice r*B:(r+1)*B. So the same seed gives the same
batches whatever the number of processes, and a resumed run restarts at (epoch, batch) exactly.

The sampler yields keys (epoch, batch, item indices of this rank); `brainjepa.training.batch.MaskedBatches`
turns a key into a `Batch` (the samples and the global batch's masks), inside DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from brainjepa.errors import ConfigError


class GlobalBatchSampler:
    """Which items make each batch of each epoch on this rank: `keys(epoch, start_batch)`, a pure function of
    (seed, epoch), so nothing has to be set before an epoch (`batch.RunKeys` is the DataLoader's sampler)."""

    def __init__(self, num_items: int, batch_size: int, *, world_size: int = 1, rank: int = 0, seed: int = 0,
                 shuffle: bool = True) -> None:
        self.num_items, self.batch_size = num_items, batch_size
        self.world_size, self.rank, self.seed, self.shuffle = world_size, rank, seed, shuffle
        if self.batches_per_epoch < 1:
            raise ConfigError(
                f"data.batch_size={batch_size} x {world_size} process(es) needs at least {self.global_batch} runs, "
                f"the dataset has {num_items}"
            )

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // self.global_batch  # drop_last, as the reference

    def global_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.num_items)
        return np.random.default_rng((self.seed, epoch)).permutation(self.num_items)

    def keys(self, epoch: int, start_batch: int = 0) -> Iterator[tuple[int, int, list[int]]]:
        """This rank's keys (epoch, batch, item indices) of `epoch` from `start_batch` on."""
        order = self.global_order(epoch)
        for b in range(start_batch, self.batches_per_epoch):
            start = b * self.global_batch + self.rank * self.batch_size
            yield epoch, b, order[start : start + self.batch_size].tolist()
