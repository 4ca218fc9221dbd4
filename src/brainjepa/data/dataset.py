"""The torch Dataset the training loop reads: one normalised window per run, reproducible per (seed, epoch, item).

The random window of item i in epoch e comes from `numpy.random.default_rng((seed, e, i))`, so DataLoader
workers, reruns and resumed runs all draw the same windows without sharing any RNG state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from brainjepa.data.normalize import Identity, Normalizer
from brainjepa.data.store import open_runs
from brainjepa.data.windows import WindowSpec, sample_at, window_positions
from brainjepa.errors import ConfigError, DataError

if TYPE_CHECKING:
    from brainjepa.data.store import RunStore


class StoreDataset(torch.utils.data.Dataset):
    """Windows of the runs of a RunStore, normalised, as float32 tensors.

    Each item reads only the span of frames its window covers (`RunStore.window`), cuts the window
    (`brainjepa.data.windows`) and then normalises it, so z-scores are taken over the window, as in the
    reference's pretraining loader. Robust scaling is per-ROI affine, so its order does not matter.

    Args:
        store: a RunStore or the path of a store directory.
        indices: store run indices this dataset covers (None: every run); item i is run `indices[i]`.
        normalizer: applied to each [R, frames] window (None: no normalisation).
        window: how windows are cut (frames, stride or target TR, random/centre, short-run policy).
        seed: base seed of the per-item window generators.

    Items are dicts: ``x`` float32 tensor [R, frames], ``index`` the item position i, ``run`` the store run
    index, ``subject`` the subject id (str).
    """

    def __init__(
        self,
        store: RunStore | str | Path,
        *,
        indices: Sequence[int] | np.ndarray | None = None,
        normalizer: Normalizer | None = None,
        window: WindowSpec | None = None,
        seed: int = 0,
    ) -> None:
        self.store, self.indices = open_runs(store, indices)
        self.normalizer = normalizer if normalizer is not None else Identity()
        self.window = window if window is not None else WindowSpec()
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"dataset seed must be an integer >= 0, got {seed!r}")
        self.seed = int(seed)
        self.epoch = 0
        fitted = self.normalizer.num_rois
        if fitted is not None and fitted != self.store.num_rois:
            raise DataError(
                f"{self.store.path}: store has {self.store.num_rois} ROIs but the normaliser was fitted on {fitted}"
            )
        self._subjects = self.store.manifest["subject"].astype(str).to_numpy()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random windows `__getitem__` draws (call before each epoch, in every rank)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ConfigError(f"epoch must be an integer >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> dict[str, Any]:
        run = self._run(i)
        return {"x": self.sample(i, self.epoch), "index": i, "run": run, "subject": str(self._subjects[run])}

    def sample(self, i: int, epoch: int) -> torch.Tensor:
        """The normalised window of item i in `epoch`, float32 [R, frames]: a pure function of (seed, epoch, i),
        which is what the pretraining batches read (no `set_epoch` state to carry into DataLoader workers)."""
        run = self._run(i)
        subject = str(self._subjects[run])
        n = self.store.frames(run)
        rng = np.random.default_rng((self.seed, epoch, i)) if self.window.mode == "random" else None
        pos = window_positions(n, self.window, rng=rng, tr=self.store.tr(run), subject=f"subject {subject!r}")
        first = int(pos[0])  # positions are non-decreasing: read [floor(first), ceil(last)] only
        last = min(int(np.ceil(pos[-1])), n - 1)
        span = self.store.window(run, first, last - first + 1)
        try:
            x = self.normalizer(sample_at(span, pos - first))
        except DataError as err:
            raise DataError(f"{self.store.path}: subject {subject!r} (run index {run}): {err}") from err
        return torch.from_numpy(x)

    def _run(self, i: int) -> int:
        if not 0 <= i < len(self):
            raise IndexError(f"item {i} out of range for a dataset of {len(self)} runs")
        return int(self.indices[i])


def _apportion(fractions: np.ndarray, n: int) -> np.ndarray:
    """Integer sizes summing to n, each floor(f * n) or one more (largest remainders first, ties to the left)."""
    exact = fractions * n
    sizes = np.floor(exact + 1e-9).astype(np.int64)
    extra = np.argsort(-(exact - sizes), kind="stable")[: n - sizes.sum()]
    sizes[extra] += 1
    return sizes


def split_by_subject(
    store: RunStore | str | Path,
    fractions: Sequence[float] = (0.8, 0.2),
    seed: int = 0,
) -> tuple[np.ndarray, ...]:
    """Split the runs of a store into disjoint sets of subjects (all runs of a subject land together).

    Subjects (sorted, then shuffled with `seed`) are cut by the fractions, which must be positive and sum to
    1; split sizes count subjects, not runs, and are rounded by largest remainder (8 subjects at 0.6/0.2/0.2
    give 5/2/1). E.g. (0.8, 0.2) for train/val or (0.6, 0.2, 0.2) for
    train/val/test (the reference's downstream split).

    Returns:
        One sorted int64 array of store run indices per fraction.

    Raises:
        ConfigError: bad fractions. DataError: a split would have no subject.
    """
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.ndim != 1 or fr.size < 1 or not np.all(np.isfinite(fr)) or np.any(fr <= 0):
        raise ConfigError(f"split fractions must be positive numbers, got {list(fractions)!r}")
    if abs(fr.sum() - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must sum to 1, got {list(fractions)!r} (sum {fr.sum():g})")
    store, _ = open_runs(store, None)
    subjects = store.manifest["subject"].astype(str).to_numpy()
    unique = np.unique(subjects)
    order = unique[np.random.default_rng(seed).permutation(unique.size)]
    groups = np.split(order, np.cumsum(_apportion(fr, unique.size))[:-1])
    empty = [k for k, g in enumerate(groups) if g.size == 0]
    if empty:
        raise DataError(
            f"{store.path}: {unique.size} subjects cannot fill {fr.size} splits {list(fractions)!r} "
            f"(split {empty[0]} would be empty)"
        )
    return tuple(np.flatnonzero(np.isin(subjects, g)).astype(np.int64) for g in groups)
