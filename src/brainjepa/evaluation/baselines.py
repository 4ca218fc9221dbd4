"""Baselines a probe of Brain-JEPA embeddings is compared with.

* ``random_init_like``: the same architecture with fresh weights from a fixed seed, embedded exactly like the
  pretrained model; the gap to it is what pretraining added.
* ``functional_connectivity``: the classic connectome features: the Pearson correlation of every ROI pair over
  the **whole run** (all frames, independent of any model window), Fisher z-transformed, upper triangle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch

from brainjepa.errors import DataError
from brainjepa.models import BrainJEPA

logger = logging.getLogger(__name__)

_FISHER_CLIP = 1.0 - 1e-7  # |r| = 1 would give an infinite z


def random_init_like(model: BrainJEPA, seed: int = 0) -> BrainJEPA:
    """A freshly initialised BrainJEPA with `model`'s architecture, gradient and metadata (normalisation).

    The global torch RNG is forked, so the caller's random state is untouched and a seed always gives the
    same weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = BrainJEPA(model.config, model.gradient.detach().cpu(), metadata=model.metadata)
    return fresh.eval()


def functional_connectivity(series: Iterable[np.ndarray], *, names: Iterable[str] | None = None) -> np.ndarray:
    """Fisher-z FC features [N, R(R-1)/2] of runs [R, T_i] (upper triangle, row-major, diagonal excluded).

    A constant ROI has no defined correlation; its pairs are set to 0 and a warning is logged.

    Raises:
        DataError: runs with different ROI counts or fewer than 2 frames (named).
    """
    names = iter(names) if names is not None else None
    rows: list[np.ndarray] = []
    constant = 0
    upper: tuple[np.ndarray, np.ndarray] | None = None
    for i, ts in enumerate(series):
        name = next(names) if names is not None else f"sample {i}"
        arr = np.asarray(ts, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] < 2:
            raise DataError(f"{name}: FC needs a [ROIs, frames] series with >= 2 frames, got shape {list(arr.shape)}")
        if upper is None:
            num_rois, upper = arr.shape[0], np.triu_indices(arr.shape[0], k=1)
        elif arr.shape[0] != num_rois:
            raise DataError(f"{name}: has {arr.shape[0]} ROIs but the runs before it have {num_rois}")
        flat = arr.std(axis=1) == 0
        constant += bool(flat.any())
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.corrcoef(arr)[upper]
        rows.append(np.arctanh(np.clip(np.nan_to_num(r, nan=0.0), -_FISHER_CLIP, _FISHER_CLIP)))
    if constant:
        logger.warning("%d runs have a constant ROI; its FC pairs were set to 0", constant)
    if not rows:
        return np.empty((0, 0), dtype=np.float32)
    return np.stack(rows).astype(np.float32)
