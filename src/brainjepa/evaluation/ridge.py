"""The evaluation suite's linear probe: ridge regression (or a ridge classifier) in closed form, so that the same
pipeline can be refitted on hundreds of permuted label vectors in seconds.

The pipeline, per outer fold of a subject-grouped plan (`cv_plan`, the splits `grouped_splits` makes, repeated
over seeds):

1. standardise every feature with the training fold's mean and standard deviation (scikit-learn's
   ``StandardScaler``);
2. choose the penalty alpha by an inner subject-grouped CV inside the training fold, minimising the mean squared
   error of the targets (regression: the value; classification: the one-hot class indicators, a Brier-type loss);
   each inner training part is re-centred on its own mean and keeps the training fold's feature scales (the
   scaling is label-free and fitted on the training fold only, so the outer test fold never informs it);
3. refit on the whole training fold with that alpha and predict the test fold: the value (regression) or the class
   with the largest score (classification; a ridge classifier, least squares on one-hot targets).

alpha is searched on `ALPHAS`, multiples of the mean eigenvalue of the training fold's kernel (= the number of
non-constant features, as they are standardised), so one grid fits feature sets of 200 and of 7,000 dimensions
alike. Fits use the kernel form: with n training rows, an eigendecomposition of the n x n kernel serves every
alpha and every target vector, which is what makes permutation nulls (`brainjepa.evaluation.nulls`) cheap: a
permuted label vector costs a few n x n matrix products per fold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from brainjepa.errors import DataError
from brainjepa.evaluation.metrics import grouped_splits

# Features computed per fold from (training rows, test rows), for features fitted on the training data only.
FoldFeatures = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
ALPHAS = tuple((10.0 ** np.arange(-3, 5)).tolist())  # x the mean kernel eigenvalue (1e-3 ... 1e4)
INNER_FOLDS = 3


@dataclass(frozen=True)
class Split:
    """One outer fold: row indices of `train` and `test`, and the inner (train, validation) splits of the training
    rows, as positions into `train` (empty when the fold has too few subjects or class members for an inner CV)."""

    train: np.ndarray
    test: np.ndarray
    inner: tuple[tuple[np.ndarray, np.ndarray], ...]


def cv_plan(y: np.ndarray, groups: np.ndarray, *, task: str, folds: int, seeds: int,
            inner_folds: int = INNER_FOLDS) -> list[list[Split]]:
    """The outer and inner subject-grouped splits of every seed: ``plan[seed][fold]``.

    Outer splits are `grouped_splits(y, groups, folds, seed)` for seeds 0..seeds-1 (stratified for
    classification); each training fold gets `grouped_splits` with min(inner_folds, its subjects, its smallest
    class) folds and the same seed, as `brainjepa.evaluation.probe.probe` does.
    """
    y, groups = np.asarray(y), np.asarray(groups)
    plan = []
    for seed in range(seeds):
        splits = []
        for train, test in grouped_splits(y, groups, task=task, folds=folds, seed=seed):
            k = min(inner_folds, len(np.unique(groups[train])))
            if task == "classification":
                k = min(k, int(np.unique(y[train], return_counts=True)[1].min()))
            inner = grouped_splits(y[train], groups[train], task=task, folds=k, seed=seed) if k >= 2 else []
            splits.append(Split(train, test, tuple(inner)))
        plan.append(splits)
    return plan


class _Solver:
    """Ridge in kernel form for one (training rows, test rows) pair: `predict` gives the test predictions for every
    alpha of the grid and every target vector at once.

    Args:
        kernel: [n, n] inner products of the (centred, standardised) training rows.
        cross: [m, n] inner products of the test rows with the training rows.
        alphas: the grid, in multiples of the kernel's mean eigenvalue.
    """

    def __init__(self, kernel: np.ndarray, cross: np.ndarray, alphas: np.ndarray) -> None:
        lam, vec = np.linalg.eigh((kernel + kernel.T) / 2)
        self.lam, self.vec = np.clip(lam, 0.0, None), vec
        self.cross = cross @ vec  # [m, n]
        scale = self.lam.sum() / max(len(kernel), 1)
        self.alphas = alphas * (scale if scale > 0 else 1.0)

    @classmethod
    def standardised(cls, x_train: np.ndarray, x_test: np.ndarray, alphas: np.ndarray) -> tuple[_Solver, np.ndarray]:
        """The solver of features standardised with the training rows' mean and standard deviation, and the
        training kernel (for the inner CV)."""
        mean, std = x_train.mean(0), x_train.std(0)
        std[std == 0] = 1.0
        z_train, z_test = (x_train - mean) / std, (x_test - mean) / std
        kernel = z_train @ z_train.T
        return cls(kernel, z_test @ z_train.T, alphas), kernel

    @classmethod
    def inner(cls, kernel: np.ndarray, train: np.ndarray, valid: np.ndarray, alphas: np.ndarray) -> _Solver:
        """The solver of an inner split of a training fold, from that fold's kernel: features re-centred on the
        inner training rows (exactly, in kernel space), scaled by the fold's standard deviations."""
        k_tt, k_vt = kernel[np.ix_(train, train)], kernel[np.ix_(valid, train)]
        col, total = k_tt.mean(0), k_tt.mean()
        return cls(k_tt - k_tt.mean(1)[:, None] - col[None] + total, k_vt - k_vt.mean(1)[:, None] - col[None] + total,
                   alphas)

    def predict(self, targets: np.ndarray) -> np.ndarray:
        """targets [P, n, K] of the training rows -> test predictions [A, P, m, K] for the A alphas."""
        mean = targets.mean(1, keepdims=True)
        proj = np.einsum("ni,pnk->pik", self.vec, targets - mean)  # [P, n, K] in the kernel's eigenbasis
        shrink = 1.0 / (self.lam[None, :] + self.alphas[:, None])  # [A, n]
        return self.cross @ (shrink[:, None, :, None] * proj[None]) + mean  # [A, P, m, K]


class RidgeCV:
    """One feature set prepared for a `cv_plan`: every fold's standardised kernels, so that `predict` refits the
    whole pipeline (inner CV, refit, out-of-fold predictions) for any number of target vectors.

    Args:
        features: [N, F] (higher ranks flattened per row), or a function (training rows, test rows) ->
            (training features, test features) called once per outer fold, for features fitted on training data
            (tangent space); its inner CV reuses the outer training fold's features.
        plan: `cv_plan` of the labels the features will predict.
        alphas: the penalty grid, in multiples of the training kernel's mean eigenvalue.

    Raises:
        DataError: features with NaN / Inf.
    """

    def __init__(self, features: np.ndarray | FoldFeatures, plan: list[list[Split]],
                 alphas: tuple[float, ...] = ALPHAS) -> None:
        grid = np.asarray(alphas, dtype=np.float64)
        x = None if callable(features) else np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        if x is not None and not np.isfinite(x).all():
            raise DataError("probe: features contain NaN or Inf")
        self.plan = plan
        self.folds: list[list[tuple[_Solver, list[_Solver]]]] = []
        for splits in plan:
            prepared = []
            for split in splits:
                x_train, x_test = features(split.train, split.test) if x is None else (x[split.train], x[split.test])
                outer, kernel = _Solver.standardised(np.asarray(x_train, np.float64), np.asarray(x_test, np.float64),
                                                     grid)
                prepared.append((outer, [_Solver.inner(kernel, tr, va, grid) for tr, va in split.inner]))
            self.folds.append(prepared)
        self.n = sum(len(s.test) for s in plan[0])

    def predict(self, targets: np.ndarray, *, balanced: bool = False) -> np.ndarray:
        """Out-of-fold predictions [P, S, N, K] for target sets [P, N, K] (P label vectors: the true one and
        permutations; K target columns), with alpha chosen per target set and fold by the inner CV (ties: the
        smallest alpha; no inner CV possible: the grid's middle value).

        ``balanced=True`` (classes, one-hot targets) gives each prediction minus its training fold's target mean,
        so that `decode` picks the class scored highest above its base rate. Without it a training fold whose
        classes lean one way predicts that class, which is the test fold's minority; folds stratified for the
        true labels hide this, but not for a permutation of them, whose null then sits below chance and lets noise
        clear it."""
        targets = np.asarray(targets, dtype=np.float64)
        out = np.empty((len(targets), len(self.plan), targets.shape[1], targets.shape[2]))
        for s, (splits, prepared) in enumerate(zip(self.plan, self.folds, strict=True)):
            for split, (outer, inner) in zip(splits, prepared, strict=True):
                t_train = targets[:, split.train]
                pred = outer.predict(t_train)  # [A, P, m, K]
                if inner:
                    loss = np.mean([((solver.predict(t_train[:, tr]) - t_train[None, :, va]) ** 2).mean((2, 3))
                                    for solver, (tr, va) in zip(inner, split.inner, strict=True)], axis=0)  # [A, P]
                    best = loss.argmin(0)
                else:
                    best = np.full(len(targets), len(outer.alphas) // 2)
                out[:, s, split.test] = pred[best, np.arange(len(targets))]
                if balanced:
                    out[:, s, split.test] -= t_train.mean(1, keepdims=True)
        return out


def encode(y: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Targets [N, K] of labels y [N]: the value (regression, K = 1) or one-hot indicators of the sorted classes
    (classification); and the classes (None for regression)."""
    if task == "regression":
        return np.asarray(y, dtype=np.float64)[:, None], None
    classes, index = np.unique(np.asarray(y), return_inverse=True)
    return np.eye(len(classes))[index], classes


def decode(scores: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """Predictions [..., N] from target scores [..., N, K]: the value, or the class with the largest score."""
    return scores[..., 0] if classes is None else classes[scores.argmax(-1)]


__all__ = ["ALPHAS", "FoldFeatures", "RidgeCV", "Split", "cv_plan", "decode", "encode"]
