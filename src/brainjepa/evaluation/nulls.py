"""Permutation nulls: the score a task gives when its labels carry no information.

A task's nominal chance level (1 / classes, r = 0) is what a random guess scores; a cross-validated probe can score
systematically below or above it. Under subject-grouped cross-validation, for example, a regularised ridge's pooled
out-of-fold Pearson r on pure-noise features is biased negative: the training folds' mean, which a heavily
regularised model predicts, is anti-correlated with the held-out fold's. The null is therefore measured: the labels
are permuted in a way the design makes exchangeable (`permutations`), the very same pipeline (same splits, same
in-fold scaling and hyper-parameter search) is refitted on each permutation, and the scores form the null
distribution (`Null`). A score is above chance only when it clears that distribution (`Null.cleared_by`).

Schemes:

* ``"within-subject"``: each subject's labels are shuffled among that subject's own units. Right for labels that
  vary within subject by design (regulation up vs down, counterbalanced within subject; a rating's deviation from
  the subject's mean): it keeps every subject's label counts, so stratified subject-grouped folds are unchanged.
* ``"across-subjects"``: labels are shuffled across units; only for data with one unit per subject, where it is the
  same as shuffling subjects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.metrics import Interval

Scheme = Literal["within-subject", "across-subjects"]
SCHEMES = ("within-subject", "across-subjects")
ALPHA = 0.05  # a score is above chance when its permutation p-value is at most this
NULL_QUANTILE = 0.95  # the null's "high" end shown beside a score: its 1 - ALPHA quantile


def permutations(groups: np.ndarray, scheme: str, n: int, seed: int = 0) -> np.ndarray:
    """`n` permutations of the units [n, N]: ``y[perm[k]]`` is the k-th permuted label vector.

    Args:
        groups: subject of each unit [N].
        scheme: "within-subject" or "across-subjects" (see the module docstring).
        n: permutations drawn.
        seed: seed of the draws (the same seed, the same permutations).

    Raises:
        ConfigError: an unknown scheme.
        DataError: "across-subjects" on data where a subject has several units (shuffling units would move labels
            between a subject's runs and other subjects' at once: shuffle subjects instead).
    """
    g = np.asarray(groups).astype(str)
    rng = np.random.default_rng(seed)
    if scheme == "across-subjects":
        if len(np.unique(g)) != len(g):
            raise DataError("across-subjects permutations need one unit per subject; this task has subjects with "
                            "several units (use within-subject permutations)")
        return np.stack([rng.permutation(len(g)) for _ in range(n)]) if n else np.empty((0, len(g)), np.int64)
    if scheme != "within-subject":
        raise ConfigError(f"permutation scheme must be one of {list(SCHEMES)}, got {scheme!r}")
    members = [np.flatnonzero(g == s) for s in np.unique(g)]
    out = np.tile(np.arange(len(g)), (n, 1))
    for idx in members:
        if len(idx) > 1:
            out[:, idx] = idx[np.argsort(rng.random((n, len(idx))), axis=1)]
    return out


def score_many(metric: str, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """`metric` of each permutation's out-of-fold predictions, averaged over CV seeds.

    Args:
        metric: "balanced_acc", "accuracy" or "pearson_r".
        truth: [P, N] the labels each prediction set was fitted to (permuted).
        pred: [P, S, N] out-of-fold predictions of S CV seeds.

    Returns:
        [P] scores (NaN where Pearson r is undefined).
    """
    truth, pred = np.asarray(truth), np.asarray(pred)
    if metric == "accuracy":
        return (pred == truth[:, None]).mean(2).mean(1)
    if metric == "balanced_acc":
        recalls = []
        for c in np.unique(truth):
            is_c = truth == c  # [P, N]
            support = is_c.sum(1)  # every permutation keeps the class counts
            recalls.append(((pred == c) & is_c[:, None]).sum(2) / np.maximum(support, 1)[:, None])
        return np.mean(recalls, axis=0).mean(1)
    if metric == "pearson_r":
        x = truth.astype(np.float64) - truth.mean(1, keepdims=True)
        p = pred.astype(np.float64) - pred.mean(2, keepdims=True)
        num = (p * x[:, None]).sum(2)
        den = np.sqrt((p**2).sum(2) * (x**2).sum(1)[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where(den > 0, num / np.where(den > 0, den, 1.0), math.nan)
        return r.mean(1)
    raise ConfigError(f"null metric must be 'accuracy', 'balanced_acc' or 'pearson_r', got {metric!r}")


@dataclass(frozen=True)
class Null:
    """A row's permutation null.

    Attributes:
        values: the score under each permutation [n] (for a method with several model seeds, averaged over its
            seeds as the score is).
        observed: the score with the true labels.
        scheme: how labels were permuted.
    """

    values: np.ndarray
    observed: float
    scheme: str

    @property
    def n(self) -> int:
        return int(np.isfinite(self.values).sum())

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.values)) if self.n else math.nan

    @property
    def high(self) -> float:
        """The null's 95th percentile, shown beside the score (the verdict is `cleared_by`'s, by the p-value)."""
        return float(np.nanquantile(self.values, NULL_QUANTILE)) if self.n else math.nan

    @property
    def p_value(self) -> float:
        """One-sided permutation p-value (1 + #null >= observed) / (1 + n)."""
        if not self.n or not np.isfinite(self.observed):
            return math.nan
        finite = self.values[np.isfinite(self.values)]
        return float((1 + np.sum(finite >= self.observed)) / (1 + len(finite)))

    def cleared_by(self, score: Interval) -> bool:
        """Above chance: the observed score's p-value is at most `ALPHA` (the p printed beside it decides, not an
        interpolated percentile that can disagree with it) and its interval excludes the null mean from below
        (False without a null or an interval)."""
        return bool(self.n and self.p_value <= ALPHA and score.low > self.mean)


__all__ = ["ALPHA", "NULL_QUANTILE", "SCHEMES", "Null", "Scheme", "permutations", "score_many"]
