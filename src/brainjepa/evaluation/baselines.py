"""Baselines a probe of Brain-JEPA embeddings is compared with.

* ``random_init_like``: the same architecture with fresh weights from a fixed seed, embedded exactly like the
  pretrained model; the gap to it is what pretraining added.
* ``functional_connectivity``: the classic connectome features: the Pearson correlation of every ROI pair over
  the frames given (`brainjepa probe`: the whole run; `brainjepa evaluate`: the frames the encoders see),
  Fisher z-transformed, upper triangle.
* ``TangentFeatures``: tangent-space connectivity, with the reference covariance fitted on training runs only.
* ``mean_patch_profile``: the raw input, first order: each ROI's time patches averaged ([R, patch_size]), what an
  encoder that reduces to a per-patch linear map followed by per-ROI averaging can at most see.
* ``patch_embedding_tokens``: a no-learning patch embedding (as brainmarks' ``patch_embed`` baseline): a randomly
  initialised per-patch linear map and a LayerNorm, no positions, no transformer blocks.
* ``token_fc``: the second-order readout of tokens [R*P, D]: the Fisher-z correlation between ROIs of their
  centred token trajectories (for encoders without a ``"tokenfc"`` pooling of their own).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

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


# ------------------------------------------------------------------------------------------ tangent space
class TangentFeatures:
    """Tangent-space connectivity of runs, with the reference covariance fitted on the given training runs only,
    so no test run informs its own features.

    Each run [R, T] is z-scored per ROI over time; its covariance is the Ledoit-Wolf shrinkage estimate
    (computed once per run). For a set of training runs, the reference is their log-Euclidean mean
    expm(mean(logm C_i)) (a closed-form stand-in for nilearn's iterated geometric mean, to which it is close for
    covariances this similar, at a fraction of the cost); each run's features are logm(M^-1/2 C M^-1/2), upper
    triangle without the diagonal (as nilearn's ``ConnectivityMeasure(kind="tangent", discard_diagonal=True)``
    vectorises). Calling it with (training runs, test runs) returns their features; fits are cached per training
    set.

    Args:
        series: runs [R, T_i] (any lengths, the same R).
    """

    def __init__(self, series: Sequence[np.ndarray]) -> None:
        from sklearn.covariance import ledoit_wolf

        self.covariances, self.logs = [], []
        for ts in series:
            x = np.asarray(ts, dtype=np.float64).T  # [T, R]
            sd = x.std(0, ddof=1)
            x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
            cov = ledoit_wolf(x)[0]
            self.covariances.append(cov)
            self.logs.append(_map_eigenvalues(cov, np.log))
        self.upper = np.triu_indices(len(self.covariances[0]), k=1) if self.covariances else None
        self._whitening: dict[bytes, np.ndarray] = {}

    def __call__(self, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
        whiten = self._fit(train)
        rows = [self._features(i, whiten) for i in np.concatenate([train, test])]
        both = np.stack(rows) if rows else np.empty((0, 0))
        return both[: len(train)], both[len(train):]

    def all_runs(self) -> np.ndarray:
        """Features of every run with the reference fitted on all of them (for tasks that use no labels)."""
        everything = np.arange(len(self.covariances))
        return self(everything, everything[:0])[0]

    def _fit(self, train: np.ndarray) -> np.ndarray:
        key = np.sort(train).tobytes()
        if key not in self._whitening:
            mean_log = np.mean([self.logs[i] for i in train], axis=0)
            self._whitening[key] = _map_eigenvalues(mean_log, lambda v: np.exp(-0.5 * v))  # M^-1/2
        return self._whitening[key]

    def _features(self, i: int, whiten: np.ndarray) -> np.ndarray:
        return _map_eigenvalues(whiten @ self.covariances[i] @ whiten, np.log)[self.upper]


def _map_eigenvalues(matrix: np.ndarray, fn: Any) -> np.ndarray:
    """fn applied to the eigenvalues of a symmetric matrix (logm, expm, inverse square root)."""
    vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vecs * fn(np.clip(vals, 1e-12, None) if fn is np.log else vals)) @ vecs.T


# ------------------------------------------------------------------------------------------ the raw window
def mean_patch_profile(windows: np.ndarray, patch_size: int) -> np.ndarray:
    """The raw input, first order: each ROI's time patches averaged, [N, R, patch_size] from windows [N, R, F]
    (F a multiple of `patch_size`)."""
    n, r, f = windows.shape
    if f % patch_size:
        raise DataError(f"mean_patch_profile: {f} frames are not a whole number of {patch_size}-frame patches")
    return windows.reshape(n, r, f // patch_size, patch_size).mean(2)


@torch.inference_mode()
def patch_embedding_tokens(model: BrainJEPA, windows: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
    """Tokens [N, R*P, D] of a no-learning patch embedding: `model`'s patch embedding (pass a random-init model)
    and a LayerNorm without parameters, no positional embedding, no blocks, from normalised windows [N, R, F]."""
    proj = model.target_encoder.patch_embed.float().cpu()
    out = []
    for start in range(0, len(windows), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(windows[start:start + batch_size], dtype=np.float32))
        tokens = proj(x)
        out.append(torch.nn.functional.layer_norm(tokens, tokens.shape[-1:]).numpy())
    return np.concatenate(out) if out else np.empty((0, 0, 0), np.float32)


def token_fc(tokens: np.ndarray, num_rois: int) -> np.ndarray:
    """Token FC [N, R(R-1)/2] of ROI-major tokens [N, R*P, D]: each ROI's tokens [P, D] centred over its P time
    patches and flattened to a trajectory, the Pearson correlation of every ROI pair's trajectories, Fisher z
    (|r| clipped as in `functional_connectivity`), upper triangle; a constant trajectory gives r = 0."""
    n, tokens_per_run, dim = tokens.shape
    if tokens_per_run % num_rois or tokens_per_run // num_rois < 2:
        raise DataError(f"token_fc needs at least 2 tokens per ROI: {tokens_per_run} tokens, {num_rois} ROIs")
    x = np.asarray(tokens, dtype=np.float64).reshape(n, num_rois, tokens_per_run // num_rois, dim)
    x = (x - x.mean(2, keepdims=True)).reshape(n, num_rois, -1)
    norm = np.linalg.norm(x, axis=2, keepdims=True)
    x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    upper = np.triu_indices(num_rois, k=1)
    r = (x @ x.transpose(0, 2, 1))[:, upper[0], upper[1]]
    return np.arctanh(np.clip(r, -_FISHER_CLIP, _FISHER_CLIP)).astype(np.float32)
