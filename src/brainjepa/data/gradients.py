"""Functional gradients for the model's positional code: group FC -> diffusion-map embedding -> [R, G] file.

Brain-JEPA places each ROI by its coordinates on the first G functional gradients (reference file
``gradient_mapping_450.csv``: 450 x 30, no header, rows in the model's ROI order). The reference computed it with
BrainSpace from a group FC matrix; this module does the same for any atlas, with numpy and scipy only:

* `compute_group_fc` averages per-run Pearson FC over a store (Fisher-z mean, streaming, one run in memory);
* `compute_gradients` is BrainSpace 0.3.0's ``GradientMaps(approach, kernel).fit(fc, sparsity, alpha)``, step for
  step (`gradient_affinity`, then `diffusion_map` or `laplacian_eigenmaps`; same eigensolver, start vector and sign
  convention, so the same numbers: tests/test_gradients.py compares them with BrainSpace to 1e-6);
* `gradients_file` runs both and writes the headerless CSV (or ``.npy``) with `brainjepa.io.save_gradient`;
  `brainjepa.io.load_gradient` reads it (the models use it too, so it lives below them).

scipy (the ``data`` extra, like the store) is imported inside the functions that use it. BrainSpace itself (with
its 640 MB vtk dependency) is only a test dependency: the reference the tests compare with.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from brainjepa.data.store import RunStore, open_runs
from brainjepa.errors import ConfigError, DataError
from brainjepa.io import read_matrix, save_gradient

logger = logging.getLogger(__name__)

KERNELS = ("cosine", "normalized_angle", "pearson", "spearman", "gaussian", "none")
APPROACHES = ("dm", "le", "pca")
# |r| is clipped below 1 before arctanh so identical ROIs give a large finite z instead of inf.
_R_CLIP = 1.0 - 1e-7
# An FC matrix read for `brainjepa gradients --fc` must equal its transpose within this (times max(1, max |FC|)).
FC_SYMMETRY_TOL = 1e-6


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


# ------------------------------------------------------------------------------------------------ BrainSpace port
# BrainSpace 0.3.0 (O. Benkarim; BSD-3-Clause, notice in LICENSES/BSD-3-Clause-BrainSpace.txt):
# brainspace/gradient/{kernels,utils,embedding}.py. Every step below is the same operation in the same order
# (scikit-learn's cosine_similarity / rbf_kernel written out in numpy), so the result matches BrainSpace to the
# last bit; keep it that way, tests/test_gradients.py checks it.


def _row_normalized(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; a (near-)zero row is left as is (sklearn.preprocessing.normalize)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    norms[norms < 10 * np.finfo(norms.dtype).eps] = 1.0
    return x / norms[:, None]


def _kernel(x: np.ndarray, kernel: str, gamma: float | None) -> np.ndarray:
    """Similarity of the rows of `x` (BrainSpace `_build_kernel`)."""
    if kernel in ("pearson", "spearman"):
        if kernel == "spearman":
            from scipy.stats import rankdata

            x = np.apply_along_axis(rankdata, 1, x)
        return np.corrcoef(x)
    if kernel in ("cosine", "normalized_angle"):
        xn = _row_normalized(x)
        sim = xn @ xn.T
        if kernel == "normalized_angle":
            sim = np.clip(sim, -1.0, 1.0)
            sim = 1 - np.arccos(sim, sim) / np.pi
        return sim
    if kernel == "gaussian":
        gamma = 1.0 / x.shape[1] if gamma is None else gamma
        sq = np.einsum("ij,ij->i", x, x)[:, None]
        dist = -2 * (x @ x.T)
        dist += sq
        dist += sq.T
        np.maximum(dist, 0, out=dist)
        np.fill_diagonal(dist, 0)
        dist *= -gamma
        return np.exp(dist, dist)
    raise ConfigError(f"unknown kernel {kernel!r} (choose from {', '.join(KERNELS)})")


def gradient_affinity(fc: np.ndarray, *, kernel: str = "cosine", sparsity: float = 0.9,
                      gamma: float | None = None) -> np.ndarray:
    """Affinity between ROI connectivity profiles (BrainSpace `compute_affinity`, pre-sparsified, non-negative).

    Each row keeps its ``int(R * (1 - sparsity))`` largest entries (the rest set to 0), the kernel compares the
    rows, and negative affinities are set to 0.

    Args:
        fc: [R, R] connectivity matrix; each row is one ROI's profile (not modified).
        kernel: one of `KERNELS`; "none" uses the thresholded matrix itself.
        sparsity: fraction of each row's smallest entries zeroed before the kernel, in [0, 1); 0 keeps all.
        gamma: inverse width of the "gaussian" kernel (default 1 / R).

    Returns:
        [R, R] float64 affinity.

    Raises:
        ConfigError: sparsity so high that no entry of a row is kept.
    """
    x = np.array(fc, dtype=np.float64)
    if sparsity > 0:
        keep = int(x.shape[1] * (1 - sparsity))
        if keep <= 0:
            raise ConfigError(f"sparsity {sparsity} keeps int({x.shape[1]} x {1 - sparsity:g}) = 0 entries per "
                              "row; lower the sparsity")
        top = np.argpartition(x, x.shape[1] - keep, axis=1)[:, -keep:]
        rows = np.arange(x.shape[0])[:, None]
        kept = np.zeros_like(x)
        kept[rows, top] = x[rows, top]
        x = kept
    if kernel != "none":
        x = _kernel(x, kernel, gamma)
    x[x < 0] = 0
    return x


def _prepare_graph(affinity: np.ndarray) -> np.ndarray:
    """A symmetric copy of the affinity (BrainSpace averages it with its transpose when it is not symmetric)."""
    from scipy.sparse.csgraph import connected_components

    if not np.allclose(affinity, affinity.T, atol=1e-10):
        logger.warning("gradients: the affinity is not symmetric (kernel 'none' keeps each row's largest entries); "
                       "using (A + A^T) / 2, as BrainSpace does")
        affinity = 0.5 * (affinity + affinity.T)
    else:
        affinity = affinity.copy()
    isolated = np.flatnonzero(affinity.sum(axis=1) <= 0)
    if isolated.size:
        raise DataError(f"{isolated.size} ROI(s) have zero affinity to every ROI (first: row {isolated[0] + 1}); "
                        "is an FC row constant or zero? Lower the sparsity or check the matrix")
    if connected_components(affinity)[0] != 1:
        logger.warning("gradients: the affinity graph is not connected; the first gradients will separate its "
                       "components (lower the sparsity)")
    return affinity


def _eigsh(matrix: np.ndarray, k: int, seed: int, **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """ARPACK's k largest-magnitude eigenpairs from BrainSpace's start vector (uniform(-1, 1), RandomState(seed))."""
    from scipy.sparse.linalg import ArpackError, ArpackNoConvergence, eigsh

    v0 = np.random.RandomState(seed).uniform(-1, 1, matrix.shape[0])
    try:
        return eigsh(matrix, k=k, which="LM", tol=0, v0=v0, **options)
    except (ArpackError, ArpackNoConvergence) as err:
        raise DataError(f"the eigensolver failed on the affinity ({err}); try a lower sparsity") from None


def _sign_convention(v: np.ndarray) -> np.ndarray:
    """Flip each column so that its largest-magnitude entry is positive (BrainSpace's convention)."""
    return v * np.sign(v[np.abs(v).argmax(axis=0), range(v.shape[1])])


def diffusion_map(affinity: np.ndarray, n_components: int, *, alpha: float = 0.5, diffusion_time: float = 0,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Diffusion-map embedding of an affinity matrix (Coifman & Lafon 2006; BrainSpace `diffusion_mapping`).

    W(alpha) = D^-alpha W D^-alpha, P = D(alpha)^-1 W(alpha); the n_components + 1 largest eigenpairs of P
    (ARPACK, start vector from `seed`); eigenvectors divided by the first (trivial) one, which is then dropped;
    eigenvalues w turned into w / (1 - w) (diffusion_time 0: all scales) or w ** diffusion_time; each column
    scaled by its eigenvalue and signed so its largest-magnitude entry is positive.

    Returns:
        ([R, n_components] maps, [n_components] eigenvalues), largest eigenvalue first.
    """
    adj = _prepare_graph(affinity)
    if alpha > 0:
        d = np.power(adj.sum(axis=1, keepdims=True), -alpha)
        adj *= d.T
        adj *= d
    adj *= np.power(adj.sum(axis=1, keepdims=True), -1)
    w, v = _eigsh(adj, n_components + 1, seed)
    w, v = w[::-1], v[:, ::-1]
    v = v / v[:, [0]]
    w = w / w[0]
    w, v = w[1:], v[:, 1:]
    w = w / (1 - w) if diffusion_time <= 0 else w**diffusion_time
    return _sign_convention(v * w[None, :]), w


def laplacian_eigenmaps(affinity: np.ndarray, n_components: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Laplacian eigenmaps of an affinity matrix (Belkin & Niyogi 2003; BrainSpace `laplacian_eigenmaps`).

    The n_components + 1 smallest eigenpairs of the normalised graph Laplacian (shift-invert ARPACK around 1 of
    its negation, start vector from `seed`), eigenvectors divided by sqrt(degree), the trivial one dropped, columns
    signed as in `diffusion_map`.

    Returns:
        ([R, n_components] maps, [n_components] eigenvalues), smallest eigenvalue first.
    """
    from scipy.sparse.csgraph import laplacian

    adj = _prepare_graph(affinity)
    lap, dd = laplacian(adj, normed=True, return_diag=True)
    np.fill_diagonal(lap, 1)
    lap *= -1
    w, v = _eigsh(lap, n_components + 1, seed, sigma=1)
    w, v = -w[::-1], v[:, ::-1]
    v = v / dd[:, None]
    return _sign_convention(v[:, 1:]), w[1:]


def _pca(affinity: np.ndarray, n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the affinity's rows (BrainSpace `PCAMaps`: scikit-learn's PCA, part of the [data] extra)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, random_state=seed)
    return pca.fit_transform(affinity), pca.explained_variance_


def compute_gradients(
    fc: np.ndarray,
    n_components: int = 30,
    *,
    kernel: str = "cosine",
    sparsity: float = 0.9,
    alpha: float = 0.5,
    approach: str = "dm",
    diffusion_time: float = 0,
    seed: int = 0,
) -> np.ndarray:
    """Gradients of a connectivity matrix: BrainSpace's ``GradientMaps`` (no alignment), in numpy and scipy.

    Each row of `fc` is one ROI's connectivity profile. The top ``1 - sparsity`` fraction of each row is kept, an
    affinity is built with `kernel` (`gradient_affinity`), and embedded with `approach`; columns come out ordered
    by eigenvalue (largest first for "dm" and "pca") with BrainSpace's sign convention (each column's
    largest-magnitude entry is positive). Same output as ``GradientMaps(n_components, approach, kernel,
    random_state=seed).fit(fc, sparsity=sparsity, alpha=alpha).gradients_`` from brainspace 0.3.0.

    Args:
        fc: [R, R] connectivity matrix (e.g. from `compute_group_fc`).
        n_components: G, number of gradients (must be < R - 1).
        kernel: affinity kernel, one of `KERNELS` ("none" uses the thresholded matrix itself).
        sparsity: fraction of the smallest entries zeroed in each row, in [0, 1).
        alpha: anisotropic diffusion parameter in [0, 1] (approach "dm" only).
        approach: "dm" (diffusion map), "le" (Laplacian eigenmaps) or "pca".
        diffusion_time: 0 (default) for BrainSpace's multi-scale map (lambda / (1 - lambda)), else the power the
            eigenvalues are raised to (approach "dm" only).
        seed: random state for the eigensolver's start vector (fixed seed => same result).

    Returns:
        [R, G] float64 gradients, rows in the order of `fc`.

    Raises:
        DataError: `fc` is not a finite square matrix, an ROI has no affinity, or the embedding fails.
        ConfigError: an unknown kernel/approach, or a parameter out of range (G >= R - 1 included).
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
    if diffusion_time < 0:
        raise ConfigError(f"diffusion_time must be >= 0 (0: multi-scale), got {diffusion_time}")
    if approach != "dm":  # the diffusion map's own parameters would be accepted and ignored
        given = [name for name, value, unset in (("alpha", alpha, 0.5), ("diffusion_time", diffusion_time, 0))
                 if value != unset]
        if given:
            raise ConfigError(f"{' and '.join(given)} set the diffusion map (approach dm), and the approach is "
                              f"{approach}: remove {'it' if len(given) == 1 else 'them'}")
    affinity = gradient_affinity(fc, kernel=kernel, sparsity=sparsity)
    with np.errstate(divide="ignore", invalid="ignore"):  # a disconnected graph: said below, in one line
        if approach == "dm":
            grads, lambdas = diffusion_map(affinity, n_components, alpha=alpha, diffusion_time=diffusion_time,
                                           seed=seed)
        elif approach == "le":
            grads, lambdas = laplacian_eigenmaps(affinity, n_components, seed=seed)
        else:
            grads, lambdas = _pca(affinity, n_components, seed)
    if not np.isfinite(grads).all():
        raise DataError(f"the embedding produced NaN values: with sparsity {sparsity:g} of {fc.shape[0]} ROIs the "
                        "affinity graph is probably disconnected; lower the sparsity (data.gradient_sparsity for "
                        "pretrain, --sparsity for brainjepa gradients)")
    logger.info("gradients: %d ROIs x %d components; first eigenvalues %s", *grads.shape,
                np.array2string(np.asarray(lambdas[:3]), precision=3))
    return np.ascontiguousarray(grads, dtype=np.float64)


def check_symmetric(fc: np.ndarray, where: str) -> None:
    """Refuse an FC matrix that is not symmetric (a correlation or connectivity matrix always is)."""
    diff = np.abs(fc - fc.T)
    worst = float(diff.max()) if diff.size else 0.0
    if worst > FC_SYMMETRY_TOL * max(1.0, float(np.abs(fc).max())):
        i, j = np.unravel_index(int(diff.argmax()), diff.shape)
        raise DataError(f"{where}: the FC matrix is not symmetric (max |FC - FC^T| = {worst:.3g}, at row {i + 1}, "
                        f"column {j + 1}); give a symmetric [R, R] connectivity matrix")


def load_fc(path: str | Path) -> np.ndarray:
    """Read an [R, R] connectivity matrix from CSV/TSV/TXT (no header) or .npy, as float64.

    Raises:
        DataError: one line naming the file: unreadable, not square, NaN/Inf values (first row, 1-based), or not
            symmetric (the largest |FC - FC^T|).
    """
    path = Path(path)
    fc = read_matrix(path).astype(np.float64)
    if fc.shape[0] != fc.shape[1]:
        raise DataError(f"{path}: an FC matrix must be square, got shape {fc.shape}")
    bad = ~np.isfinite(fc)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{path}: FC matrix has {int(bad.sum())} NaN/Inf entries (first in row {row + 1}, column "
                        f"{col + 1})")
    check_symmetric(fc, str(path))
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
    (n_components, kernel, sparsity, alpha, approach, diffusion_time, seed). Returns the [R, G] gradients that were
    written. A given FC matrix must be symmetric (`check_symmetric`); a store's group FC is by construction.
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
        if matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1]:
            check_symmetric(matrix, "FC array")
    grads = compute_gradients(matrix, **settings)
    save_gradient(out, grads)
    logger.info("wrote %s (%d ROIs x %d gradients)", out, *grads.shape)
    return grads
