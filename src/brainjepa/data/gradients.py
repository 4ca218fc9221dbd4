"""Functional gradients for the model's positional code: group FC -> diffusion-map embedding -> [R, G] file.

Brain-JEPA places each ROI by its coordinates on the first G functional gradients (reference file
``gradient_mapping_450.csv``: 450 x 30, no header, rows in the model's ROI order). The reference computed it with
BrainSpace from a group FC matrix; this module does the same for any atlas:

* `compute_group_fc` averages per-run Pearson FC over a store (Fisher-z mean, streaming, one run in memory);
* `compute_gradients` runs BrainSpace's `GradientMaps` (diffusion map, cosine kernel by default);
* `gradients_file` runs both and writes the headerless CSV (or ``.npy``) with `brainjepa.io.save_gradient`;
  `brainjepa.io.load_gradient` reads it (the models use it too, so it lives below them).

BrainSpace is imported only inside `compute_gradients`; the ``gradients`` extra installs it
(``pip install 'brainjepa[gradients]'``: brainspace 0.3.0 with its vtk dependency).
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from brainjepa.data.store import RunStore, open_runs
from brainjepa.errors import BrainJEPAError, ConfigError, DataError
from brainjepa.io import read_matrix, save_gradient

logger = logging.getLogger(__name__)

KERNELS = ("cosine", "normalized_angle", "pearson", "spearman", "gaussian", "none")
APPROACHES = ("dm", "le", "pca")
# |r| is clipped below 1 before arctanh so identical ROIs give a large finite z instead of inf.
_R_CLIP = 1.0 - 1e-7


class MissingDependencyError(BrainJEPAError, ImportError):
    """An optional package needed for this step is not installed; the message says how to install it."""


def _pearson(ts: np.ndarray) -> np.ndarray:
    """[R, T] -> [R, R] Pearson correlation in float64 (NaN rows for constant ROIs)."""
    x = ts.astype(np.float64, copy=True)
    x -= x.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x @ x.T


def compute_group_fc(store: RunStore | str | Path, *, progress: bool = True) -> np.ndarray:
    """Group functional connectivity of a store: the Fisher-z mean of every run's Pearson FC.

    Recipe: for each run, r = Pearson correlation between ROI time series over all its frames; z = arctanh(r)
    (|r| clipped to 1 - 1e-7); the mean z over runs (each run weighs the same) is turned back with tanh; the
    diagonal is set to 1. Runs are read one at a time, so memory is O(R^2) whatever the store size.

    Args:
        store: a `RunStore` or the path of a store directory.
        progress: show a tqdm bar over runs.

    Returns:
        [R, R] float64 symmetric matrix, rows in the store's ROI order.

    Raises:
        DataError: empty store, a run shorter than 3 frames, or a run whose FC is undefined (constant ROI).
    """
    from tqdm.auto import tqdm

    store, _ = open_runs(store, None)
    if len(store) == 0:
        raise DataError(f"{store.path}: the store has no runs, so there is no FC to average")
    total = np.zeros((store.num_rois, store.num_rois), np.float64)
    for i in tqdm(range(len(store)), desc="group FC", unit="run", disable=not progress):
        who = f"{store.path}: run {i} (subject {store.manifest['subject'].iat[i]}, run {store.manifest['run'].iat[i]})"
        if store.frames(i) < 3:
            raise DataError(f"{who}: {store.frames(i)} frames are too few for a correlation (need at least 3)")
        r = _pearson(store.run(i))
        if not np.isfinite(r).all():
            raise DataError(f"{who}: FC is undefined because some ROI is constant")
        total += np.arctanh(np.clip(r, -_R_CLIP, _R_CLIP))
    fc = np.tanh(total / len(store))
    np.fill_diagonal(fc, 1.0)
    return fc


def _import_gradient_maps():
    try:
        from brainspace.gradient import GradientMaps
    except ImportError as err:
        raise MissingDependencyError(
            f"computing gradients needs BrainSpace ({err}); install it with: pip install 'brainjepa[gradients]'"
        ) from err
    return GradientMaps


def compute_gradients(
    fc: np.ndarray,
    n_components: int = 30,
    *,
    kernel: str = "cosine",
    sparsity: float = 0.9,
    alpha: float = 0.5,
    approach: str = "dm",
    seed: int = 0,
) -> np.ndarray:
    """Gradients of a connectivity matrix with BrainSpace's `GradientMaps`.

    Each row of `fc` is one ROI's connectivity profile. BrainSpace keeps the top ``1 - sparsity`` fraction of each
    row, builds an affinity with `kernel`, and embeds it (`approach`); columns come out ordered by eigenvalue
    (largest first) with BrainSpace's sign convention (each column's largest-magnitude entry is positive).

    Args:
        fc: [R, R] connectivity matrix (e.g. from `compute_group_fc`).
        n_components: G, number of gradients (must be < R - 1).
        kernel: affinity kernel, one of `KERNELS` ("none" uses the thresholded matrix itself).
        sparsity: fraction of the smallest entries zeroed in each row, in [0, 1).
        alpha: anisotropic diffusion parameter in [0, 1] (used by approach "dm" only).
        approach: "dm" (diffusion map), "le" (Laplacian eigenmaps) or "pca".
        seed: random state for the eigensolver's start vector (fixed seed => same result).

    Returns:
        [R, G] float64 gradients, rows in the order of `fc`.

    Raises:
        DataError: `fc` is not a finite square matrix.
        ConfigError: an unknown kernel/approach, or a parameter out of range (G >= R - 1 included).
        MissingDependencyError: BrainSpace is not installed.
    """
    fc = np.asarray(fc, dtype=np.float64)
    if fc.ndim != 2 or fc.shape[0] != fc.shape[1]:
        raise DataError(f"FC matrix must be square [R, R], got shape {fc.shape}")
    if not np.isfinite(fc).all():
        raise DataError(f"FC matrix has {int((~np.isfinite(fc)).sum())} NaN/Inf entries")
    if not 1 <= n_components < fc.shape[0] - 1:
        raise ConfigError(f"n_components must be between 1 and R - 2 = {fc.shape[0] - 2}, got {n_components}")
    if kernel not in KERNELS:
        raise ConfigError(f"unknown kernel {kernel!r} (choose from {', '.join(KERNELS)})")
    if approach not in APPROACHES:
        raise ConfigError(f"unknown approach {approach!r} (choose from {', '.join(APPROACHES)})")
    if not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1), got {sparsity}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    gradient_maps = _import_gradient_maps()
    gm = gradient_maps(
        n_components=n_components,
        approach=approach,
        kernel=None if kernel == "none" else kernel,
        random_state=seed,
    )
    extra = {"alpha": alpha} if approach == "dm" else {}
    gm.fit(fc, sparsity=sparsity, **extra)
    grads = np.asarray(gm.gradients_, dtype=np.float64)
    if not np.isfinite(grads).all():
        raise DataError("the embedding produced NaN values (is the affinity graph disconnected? try lower sparsity)")
    logger.info("gradients: %d ROIs x %d components; first eigenvalues %s", *grads.shape,
                np.array2string(np.asarray(gm.lambdas_[:3]), precision=3))
    return grads


def load_fc(path: str | Path) -> np.ndarray:
    """Read an [R, R] connectivity matrix from CSV/TSV/TXT (no header) or .npy, as float64."""
    path = Path(path)
    fc = read_matrix(path).astype(np.float64)
    if fc.shape[0] != fc.shape[1]:
        raise DataError(f"{path}: an FC matrix must be square, got shape {fc.shape}")
    if not np.isfinite(fc).all():
        raise DataError(f"{path}: FC matrix has {int((~np.isfinite(fc)).sum())} NaN/Inf entries")
    return fc


def gradients_file(
    out: str | Path,
    *,
    store: RunStore | str | Path | None = None,
    fc: np.ndarray | str | Path | None = None,
    progress: bool = True,
    **settings: Any,
) -> np.ndarray:
    """End to end (what `brainjepa gradients` runs): FC from a store or a matrix, gradients, CSV at `out`.

    Exactly one of `store` and `fc` must be given; `settings` are the keywords of `compute_gradients`
    (n_components, kernel, sparsity, alpha, approach, seed). Returns the [R, G] gradients that were written.
    """
    if (store is None) == (fc is None):
        raise DataError("give exactly one source of connectivity: a store (--data) or an FC matrix (--fc)")
    try:  # a misspelt setting is refused before the group FC is computed
        inspect.signature(compute_gradients).bind(None, **settings)
    except TypeError as err:
        raise ConfigError(f"gradients_file: {err}") from err
    if store is not None:
        matrix = compute_group_fc(store, progress=progress)
    elif isinstance(fc, (str, os.PathLike)):
        matrix = load_fc(fc)
    else:
        matrix = np.asarray(fc, dtype=np.float64)
    grads = compute_gradients(matrix, **settings)
    save_gradient(out, grads)
    logger.info("wrote %s (%d ROIs x %d gradients)", out, *grads.shape)
    return grads
