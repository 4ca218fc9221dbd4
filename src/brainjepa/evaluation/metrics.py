"""Downstream metrics and subject-grouped splits, shared by probing and fine-tuning so both see the same folds.

Classification reports accuracy, balanced accuracy, F1 and ROC AUC (binary: F1 and AUC of the larger label;
multi-class: macro F1 and one-vs-rest macro AUC). Regression reports MAE, MSE and Pearson r (the reference's
"r2" is a Pearson r, not R^2). Intervals on a score or a difference come from `bootstrap_interval` /
`paired_bootstrap`, a subject-level (cluster) bootstrap of the out-of-fold predictions, two-level (model seeds,
then subjects) when a method was run with several seeds (`brainjepa evaluate` and the quickstart's findings); each
is an `Interval`. scikit-learn and scipy are imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brainjepa.errors import ConfigError, DataError

CLASSIFICATION_METRICS = ("acc", "balanced_acc", "f1", "auc")
REGRESSION_METRICS = ("mae", "mse", "pearson_r")
BOOTSTRAP_METRICS = ("accuracy", "balanced_acc", "pearson_r")
MIN_BOOTSTRAP = 100  # fewer resamples leave too few values in each tail for percentile limits


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
        ``{"acc", "balanced_acc", "f1", "auc"}`` as floats. AUC is NaN when ``y_true`` holds a single class. F1
        leaves out a class that is in neither ``y_true`` nor ``y_pred`` (its F1 is 0 / 0), and is NaN when that
        is the binary positive class: a fold that is all one class, all predicted right, is not an F1 of 0.
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
            f1_score(y_true, y_pred, pos_label=classes[-1], average="binary", zero_division=np.nan)
            if binary
            else f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=np.nan)
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
class Interval:
    """A score or a difference of scores with its confidence interval.

    Attributes:
        mean: the point estimate (a score, or score a - score b for a paired difference).
        low, high: the interval's limits (NaN when there is none: fewer than 2 subjects).
        n: subjects resampled.
        confidence: the interval's coverage.
        seeds: model seeds the estimate averages (1: one model, or a method without weights); with several, the
            interval resamples them too (two-level bootstrap). For a difference, the seeds of side a.
    """

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    seeds: int = 1

    @property
    def differs(self) -> bool:
        """Whether the interval excludes 0 (a NaN interval, from too few subjects, never does)."""
        return self.excludes(0.0)

    def excludes(self, value: float) -> bool:
        """Whether `value` lies outside [low, high] (never, for a NaN interval)."""
        return bool(self.low > value or self.high < value)

    def decimals(self, at_least: int = 3, at_most: int = 6) -> int:
        """Decimals to print the interval with: `at_least`, more while a limit that is not 0 would print as 0,
        so that an interval called different from 0 never reads "+0.000 to +0.021" (up to `at_most`)."""
        for k in range(at_least, at_most):
            if all(v == 0 or not np.isfinite(v) or round(v, k) != 0 for v in (self.low, self.high)):
                return k
        return at_most


# ------------------------------------------------------------------------------------------ subject bootstrap
def bootstrap_interval(
    y_true: Sequence, y_pred: Sequence | np.ndarray, groups: Sequence, metric: str, *, n_boot: int = 2000,
    confidence: float = 0.95, seed: int = 0,
) -> Interval:
    """One method's score with a subject-level (cluster) bootstrap percentile interval; two-level with seeds.

    The score is `metric` of all out-of-fold predictions, averaged over the CV seeds, then over the model seeds.
    Each of `n_boot` resamples draws as many subjects (`groups`) as there are, with replacement, takes every run of
    each drawn subject (several times if drawn several times) and recomputes the score; with M > 1 model seeds
    (predictions [M, S, N]: several pretraining or random-init seeds) it also draws M seeds with replacement and
    averages the drawn seeds' scores on the drawn subjects, so the interval covers seed variance as well. The
    interval is the resamples' percentiles. Resampling subjects, not runs, because the runs of one subject are not
    independent. The interval stays inside the metric's range (a balanced accuracy interval inside [0, 1]).

    Args:
        y_true: true label or value of each of the N units (runs) [N].
        y_pred: out-of-fold predictions, [N], [S, N] for S cross-validation seeds, or [M, S, N] for M model seeds.
        groups: subject of each unit [N].
        metric: one of `BOOTSTRAP_METRICS`: "accuracy", "balanced_acc" (mean recall over the classes of
            the resample's true labels) or "pearson_r".
        n_boot: number of resamples (>= `MIN_BOOTSTRAP`).
        confidence: coverage of the interval, in (0, 1).
        seed: seed of the subject (and model-seed) draws; the same seed draws the same subjects, so intervals
            repeat exactly.

    Returns:
        `Interval` with `mean` the score, [`low`, `high`] the interval, `n` the number of subjects and `seeds` = M;
        NaN limits with fewer than 2 subjects.

    Raises:
        DataError: mismatched lengths, or non-finite predictions or labels for "pearson_r".
        ConfigError: an unknown metric, `n_boot` below `MIN_BOOTSTRAP` or `confidence` outside (0, 1).
    """
    point, reps, n, seeds = _bootstrap(y_true, [y_pred], groups, metric, n_boot, confidence, seed)
    return _percentile_interval(point[0], reps[:, 0], n, confidence, seeds[0])


def paired_bootstrap(
    y_true: Sequence, pred_a: Sequence | np.ndarray, pred_b: Sequence | np.ndarray, groups: Sequence, metric: str,
    *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0,
) -> Interval:
    """Score of method a minus that of method b on the same units, with a subject-level paired bootstrap interval.

    Both methods are rescored on the same resamples of subjects (as in `bootstrap_interval`), so what the two share
    (which subjects are easy) cancels in the difference. Model seeds, where a method has several ([M, S, N]), are
    drawn for each method independently (they are separate random processes, e.g. pretraining seeds and
    random-init seeds). Identical single-seed predictions give a difference of exactly 0 with a zero-width interval.

    Args:
        y_true, groups, metric, n_boot, confidence, seed: as in `bootstrap_interval`.
        pred_a, pred_b: out-of-fold predictions of the two methods, [N], [S, N] or [M, S, N] each, on the same N
            units (M may differ).

    Returns:
        `Interval`: `mean` = score(a) - score(b), its percentile interval, `n` = subjects.

    Raises:
        DataError / ConfigError: as in `bootstrap_interval`; also predictions of different units or CV seeds.
    """
    a, b = _as_3d(pred_a), _as_3d(pred_b)
    if a.shape[1:] != b.shape[1:]:
        raise DataError(f"paired_bootstrap: predictions of shape {np.shape(pred_a)} and {np.shape(pred_b)} cannot "
                        "be paired")
    point, reps, n, seeds = _bootstrap(y_true, [a, b], groups, metric, n_boot, confidence, seed)
    return _percentile_interval(point[0] - point[1], reps[:, 0] - reps[:, 1], n, confidence, seeds[0])


def _as_3d(pred: Sequence | np.ndarray) -> np.ndarray:
    """Predictions as [M model seeds, S CV seeds, N units]."""
    p = np.asarray(pred)
    return p.reshape((1,) * (3 - p.ndim) + p.shape) if p.ndim <= 3 else p


def _percentile_interval(point: float, reps: np.ndarray, n: int, confidence: float, seeds: int) -> Interval:
    reps = reps[np.isfinite(reps)]  # a resample can leave Pearson r undefined (one value drawn)
    if n < 2 or not np.isfinite(point) or len(reps) == 0:
        return Interval(float(point), math.nan, math.nan, n, confidence, seeds)
    low, high = np.percentile(reps, [50 * (1 - confidence), 50 * (1 + confidence)])
    return Interval(float(point), float(low), float(high), n, confidence, seeds)


def _bootstrap(y_true: Sequence, preds: list, groups: Sequence, metric: str, n_boot: int, confidence: float,
               seed: int) -> tuple[np.ndarray, np.ndarray, int, list[int]]:
    """Score of each prediction set on all units [P] and on every resample [n_boot, P], the number of subjects
    and each set's model seeds. A subject resample is a count per subject; each run weighs its subject's count,
    which is the same as stacking the drawn copies, and lets every resample be scored in a few matrix products.
    A set with M > 1 model seeds averages, per resample, the scores of M seeds drawn with replacement."""
    if metric not in BOOTSTRAP_METRICS:
        raise ConfigError(f"bootstrap metric must be one of {list(BOOTSTRAP_METRICS)}, got {metric!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < MIN_BOOTSTRAP:
        raise ConfigError(f"bootstrap: n_boot must be an integer >= {MIN_BOOTSTRAP}, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"bootstrap: confidence must be in (0, 1), got {confidence}")
    y = np.asarray(y_true)
    preds = [_as_3d(p) for p in preds]
    g = np.asarray(groups)
    if y.ndim != 1 or len(g) != len(y) or any(p.ndim != 3 or p.shape[2] != len(y) for p in preds):
        raise DataError(f"bootstrap: {len(y)} true labels, {len(g)} subjects and predictions of shape "
                        f"{[list(p.shape) for p in preds]} do not describe the same units")
    if len(y) == 0:
        raise DataError("bootstrap: no units to score")
    if metric == "pearson_r":
        y = y.astype(np.float64)
        preds = [p.astype(np.float64) for p in preds]
        if not (np.isfinite(y).all() and all(np.isfinite(p).all() for p in preds)):
            raise DataError("bootstrap: pearson_r needs finite true values and predictions")
    _, subject = np.unique(g.astype(str), return_inverse=True)
    n = int(subject.max()) + 1
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    flat = [p.reshape(-1, len(y)) for p in preds]  # [M * S, N]
    point = np.array([_weighted_score(metric, y, f, np.ones((1, len(y))))[0].mean() for f in flat])
    per_seed = [np.empty((n_boot, p.shape[0])) for p in preds]
    chunk = max(1, 2**20 // len(y))  # bounds the [resamples, runs] weight matrix to ~8 MB
    for start in range(0, n_boot, chunk):
        weights = counts[start:start + chunk][:, subject]
        for m, (p, f) in enumerate(zip(preds, flat, strict=True)):
            scores = _weighted_score(metric, y, f, weights)  # [B, M * S]
            per_seed[m][start:start + chunk] = scores.reshape(len(scores), p.shape[0], p.shape[1]).mean(2)
    reps = np.empty((n_boot, len(preds)))
    for m, scores in enumerate(per_seed):
        seeds = scores.shape[1]
        if seeds == 1:
            reps[:, m] = scores[:, 0]
            continue
        # Model seeds drawn per set from its own stream, so adding a set does not change another's draws.
        draws = np.random.default_rng([seed, m + 1]).multinomial(seeds, np.full(seeds, 1.0 / seeds), size=n_boot)
        # A seed left undrawn adds nothing, even where its score is undefined (NaN); a drawn NaN stays NaN.
        reps[:, m] = np.where(draws > 0, scores * draws, 0.0).sum(1) / seeds
    return point, reps, n, [p.shape[0] for p in preds]


def _weighted_score(metric: str, y: np.ndarray, pred: np.ndarray, w: np.ndarray) -> np.ndarray:
    """`metric` of predictions [S, N] under run weights [B, N] (integer copies of each run): [B, S]."""
    if metric == "accuracy":
        return (w @ (pred == y).T) / w.sum(1, keepdims=True)
    if metric == "balanced_acc":
        classes, truth = np.unique(y, return_inverse=True)
        onehot = np.eye(len(classes))[truth]  # [N, K]
        support = w @ onehot  # [B, K]
        hits = np.einsum("bn,snk->bsk", w, (pred == y)[..., None] * onehot)
        recall = np.divide(hits, support[:, None], out=np.zeros_like(hits), where=support[:, None] > 0)
        # Mean recall over the classes present in the resample's true labels (as scikit-learn's).
        return recall.sum(-1) / (support > 0).sum(-1, keepdims=True)
    # Pearson r from weighted moments, centred on the full-data means for numerical stability.
    x, p = y - y.mean(), pred - pred.mean(1, keepdims=True)
    total = w.sum(1, keepdims=True)
    mx, mp = (w @ x)[:, None] / total, (w @ p.T) / total
    cov = (w @ (p * x).T) / total - mx * mp
    vx, vp = (w @ x**2)[:, None] / total - mx**2, (w @ (p**2).T) / total - mp**2
    # A resample (or data set) with no spread in either side has no correlation: NaN, as `regression_metrics`.
    tiny_x, tiny_p = 1e-10 * max(x.var(), 1e-300), 1e-10 * np.maximum(p.var(1), 1e-300)
    ok = (vx > tiny_x) & (vp > tiny_p)
    return np.where(ok, cov / np.sqrt(np.where(ok, vx * vp, 1.0)), math.nan)
