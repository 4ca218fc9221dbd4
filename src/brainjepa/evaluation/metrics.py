"""Downstream metrics and subject-grouped splits, shared by probing and fine-tuning so both see the same folds.

Classification reports accuracy, balanced accuracy, F1 and ROC AUC (binary: F1 and AUC of the larger label;
multi-class: macro F1 and one-vs-rest macro AUC). Regression reports MAE, MSE and Pearson r (the reference's
"r2" is a Pearson r, not R^2). `paired_difference` compares two feature sets scored on the same folds.
scikit-learn and scipy are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainjepa.errors import ConfigError, DataError

CLASSIFICATION_METRICS = ("acc", "balanced_acc", "f1", "auc")
REGRESSION_METRICS = ("mae", "mse", "pearson_r")


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, y_score: np.ndarray | None = None, *, labels: Sequence | None = None
) -> dict[str, float]:
    """Accuracy, balanced accuracy, F1 and ROC AUC of one set of predictions.

    Args:
        y_true: true labels [N] (ints or strings).
        y_pred: predicted labels [N].
        y_score: class scores: [N] (score of the larger label, binary only) or [N, C] with columns in the order
            of ``labels``; ``None`` gives AUC = NaN.
        labels: all classes in sorted order (default: the sorted union of ``y_true`` and ``y_pred``); pass it
            when a test fold can miss a class, so F1/AUC keep the same class set across folds.

    Returns:
        ``{"acc", "balanced_acc", "f1", "auc"}`` as floats. AUC is NaN when ``y_true`` holds a single class.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    classes = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    binary = len(classes) <= 2
    out = {
        "acc": float(accuracy_score(y_true, y_pred)),
        "balanced_acc": float(balanced_accuracy_score(y_true, y_pred)),
        "f1": float(
            f1_score(y_true, y_pred, pos_label=classes[-1], average="binary", zero_division=0)
            if binary
            else f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)
        ),
        "auc": math.nan,
    }
    if y_score is None or len(np.unique(y_true)) < 2:
        return out
    score = np.asarray(y_score, dtype=np.float64)
    if binary:
        if score.ndim == 2:
            score = score[:, -1]
        out["auc"] = float(roc_auc_score(y_true == classes[-1], score))
    else:
        present = np.isin(classes, y_true)
        # One-vs-rest macro AUC over the classes present in this fold (an absent class has no positive).
        aucs = [roc_auc_score(y_true == c, score[:, i]) for i, c in enumerate(classes) if present[i]]
        out["auc"] = float(np.mean(aucs))
    return out


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MAE, MSE and Pearson r of one set of predictions ([N] each); r is NaN when either side is constant."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    err = y_pred - y_true
    if np.std(y_true) == 0 or np.std(y_pred) == 0:
        r = math.nan
    else:
        r = float(np.corrcoef(y_true, y_pred)[0, 1])
    return {"mae": float(np.mean(np.abs(err))), "mse": float(np.mean(err**2)), "pearson_r": r}


def grouped_splits(
    y: np.ndarray, groups: np.ndarray | None, *, task: str, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K train/test index splits in which no group (subject) is on both sides.

    Classification uses ``StratifiedGroupKFold`` (shuffled with ``seed``) so each fold keeps the class balance
    as far as the groups allow; regression shuffles the groups with ``seed`` and deals them into ``folds``
    near-equal parts. The same (y, groups, task, folds, seed) always gives the same splits.

    Args:
        y: labels [N].
        groups: group id per sample [N] (e.g. subject); ``None`` makes every sample its own group.
        task: ``"classification"`` or ``"regression"``.
        folds: number of folds K >= 2.
        seed: shuffling seed.

    Returns:
        K pairs ``(train_idx, test_idx)`` of sorted int64 index arrays.

    Raises:
        DataError: fewer than ``folds`` groups, ``folds < 2``, an unknown task, or a class too rare to split.
    """
    y = np.asarray(y)
    n = len(y)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if len(groups) != n:
        raise DataError(f"grouped_splits: {len(groups)} group ids for {n} labels")
    if folds < 2:
        raise DataError(f"grouped_splits: folds must be >= 2, got {folds}")
    uniq, group_idx = np.unique(groups, return_inverse=True)
    if len(uniq) < folds:
        raise DataError(f"grouped_splits: {len(uniq)} groups (subjects) cannot make {folds} folds")
    if task == "classification":
        from sklearn.model_selection import StratifiedGroupKFold

        classes = np.unique(y)
        if len(classes) < 2:
            raise DataError(f"grouped_splits: classification needs at least 2 classes, got {classes.tolist()}")
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        splits = list(splitter.split(np.zeros(n), y, group_idx))
    elif task == "regression":
        order = np.random.default_rng(seed).permutation(len(uniq))
        fold_of_group = np.empty(len(uniq), dtype=np.int64)
        for k, part in enumerate(np.array_split(order, folds)):
            fold_of_group[part] = k
        fold_of_sample = fold_of_group[group_idx]
        splits = [(np.flatnonzero(fold_of_sample != k), np.flatnonzero(fold_of_sample == k)) for k in range(folds)]
    else:
        raise DataError(f"grouped_splits: task must be 'classification' or 'regression', got {task!r}")
    return [(np.sort(tr).astype(np.int64), np.sort(te).astype(np.int64)) for tr, te in splits]


def summarize(results: Sequence[dict[str, float]]) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation (ddof=1; 0 for a single value) of each metric over folds/seeds.

    NaN values (e.g. AUC on a single-class fold) are left out of that metric's mean and std; a metric that is
    NaN everywhere stays NaN.
    """
    if not results:
        return {}
    out: dict[str, tuple[float, float]] = {}
    for name in results[0]:
        vals = np.array([r[name] for r in results], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        if len(vals) == 0:
            out[name] = (math.nan, math.nan)
        else:
            out[name] = (float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0)
    return out


@dataclass(frozen=True)
class PairedDiff:
    """Mean of the paired differences a - b, its confidence interval [low, high] and the number of pairs n."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def differs(self) -> bool:
        """Whether the interval excludes 0 (a NaN interval, from fewer than 2 pairs, never does)."""
        return bool(self.low > 0 or self.high < 0)


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, test_train_ratio: float = 0.0
) -> PairedDiff:
    """Mean difference a - b over paired scores (same folds, same seeds) with a t confidence interval.

    Folds of a cross-validation share training data, so their scores are not independent and a plain t-interval
    is too narrow. With ``test_train_ratio = n_test / n_train`` > 0 the variance of the mean is inflated to
    ``(1/n + n_test/n_train) * s^2`` (Nadeau & Bengio 2003, the corrected resampled t-test); 0 gives the
    plain paired t-interval, for independent pairs. Pairs where either score is NaN are left out.

    Args:
        a, b: scores of two methods, one per (seed, fold), in the same order.
        confidence: coverage of the interval, in (0, 1).
        test_train_ratio: test over training size of the folds (0 for independent pairs).

    Raises:
        DataError: `a` and `b` differ in length.
        ConfigError: `confidence` outside (0, 1) or a negative `test_train_ratio`.
    """
    from scipy.stats import t as student_t

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise DataError(f"paired_difference: {a.shape} and {b.shape} scores cannot be paired")
    if not 0 < confidence < 1:
        raise ConfigError(f"paired_difference: confidence must be in (0, 1), got {confidence}")
    if test_train_ratio < 0:
        raise ConfigError(f"paired_difference: test_train_ratio must be >= 0, got {test_train_ratio}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    n = len(d)
    if n == 0:
        return PairedDiff(math.nan, math.nan, math.nan, 0, confidence)
    mean = float(d.mean())
    if n == 1:
        return PairedDiff(mean, math.nan, math.nan, 1, confidence)
    half = float(student_t.ppf(0.5 + confidence / 2, n - 1) * math.sqrt((1 / n + test_train_ratio) * d.var(ddof=1)))
    return PairedDiff(mean, mean - half, mean + half, n, confidence)
