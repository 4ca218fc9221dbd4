"""What a label column must be before a probe or a fine-tuning run starts, checked in one place for both.

A bad label found after an hour of embedding or training wastes the hour, and one that slips through (infinite
values, text read as numbers, a single class) gives numbers that look like results. `read_labels` therefore
refuses, before any work and with one line naming the store, the column and a few subjects: a column that is
all missing, non-finite or out-of-float32-range values, text labels for a regression, a single class, and too
few labelled subjects for the folds. Missing values (empty, NaN) are dropped with a logged count.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from brainjepa.data.store import RunStore
from brainjepa.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

TaskKind = Literal["classification", "regression"]  # how a label is learned: classes or a number
TASK_KINDS: tuple[TaskKind, ...] = get_args(TaskKind)
MAX_CLASSES = 10  # an integer or text label with at most this many values is taken as classes
FLOAT32_MAX = float(np.finfo(np.float32).max)  # training casts labels to float32; larger values become inf
_SHOWN = 3  # examples named in a message


def missing(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of missing labels: None, NaN, empty or blank text."""
    import pandas as pd

    labels = np.asarray(labels)
    miss = np.asarray(pd.isna(labels), dtype=bool)
    if labels.dtype.kind in "OUS":
        miss |= np.array([isinstance(v, str) and not v.strip() for v in labels], dtype=bool)
    return miss


def present(labels: np.ndarray) -> np.ndarray:
    """The non-missing labels; an object array of numbers becomes float64."""
    labels = np.asarray(labels)
    y = labels[~missing(labels)]
    if y.dtype.kind == "O" and all(isinstance(v, (int, float, np.number)) for v in y):
        y = y.astype(np.float64)
    return y


def infer_task(labels: np.ndarray) -> TaskKind:
    """Classification for text/bool labels or integer-valued labels with at most 10 distinct values,
    regression otherwise (missing values ignored)."""
    y = present(np.asarray(labels))
    if y.dtype.kind in "OUSb":
        return "classification"
    values = np.unique(y.astype(np.float64))
    if np.all(values == np.round(values)) and len(values) <= MAX_CLASSES:
        return "classification"
    return "regression"


def drop_missing(labels: np.ndarray, *arrays: np.ndarray, what: str = "label") -> tuple[np.ndarray, ...]:
    """Rows whose label is missing (NaN, None, empty text) removed from labels and every array; the count is
    logged at warning level, never dropped silently."""
    labels = np.asarray(labels)
    miss = missing(labels)
    if miss.any():
        logger.warning("dropped %d of %d rows with a missing %s", int(miss.sum()), len(labels), what)
    keep = ~miss
    return (present(labels), *(np.asarray(a)[keep] for a in arrays))


def value_problem(values: np.ndarray) -> tuple[str, np.ndarray] | None:
    """Why numeric labels cannot be trained on: (what is wrong, mask of the bad values), or None if they can.

    Non-finite values, and values beyond the float32 range (training casts labels to float32, where they become
    infinite)."""
    y = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(y)
    if bad.any():
        return f"{_count(bad, 'non-finite value')} ({', '.join(map(str, y[bad][:_SHOWN]))})", bad
    bad = np.abs(y) > FLOAT32_MAX
    if bad.any():
        return f"{_count(bad, 'value')} beyond the float32 range (up to {np.abs(y).max():.3g})", bad
    return None


@dataclass(frozen=True)
class Labels:
    """The labelled runs of one store column, checked; every array has one entry per labelled run.

    Attributes:
        name: the column.
        task: "classification" or "regression".
        runs: int64 store run indices, ascending.
        groups: group id (e.g. subject) per run, kept on one side of every split.
        values: the labels: float64 (regression) or the class values.
        classes: class values in output order (classification), else None.
        targets: class index (int64) or the float64 value, what a model is trained on.
        n_dropped: runs left out for a missing label.
    """

    name: str
    task: TaskKind
    runs: np.ndarray
    groups: np.ndarray
    values: np.ndarray
    classes: list[Any] | None
    targets: np.ndarray
    n_dropped: int

    def at(self, runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values, groups) of the given labelled store runs."""
        pos = np.searchsorted(self.runs, np.asarray(runs, dtype=np.int64))
        if len(pos) and (pos.max() >= len(self.runs) or not np.array_equal(self.runs[pos], runs)):
            raise DataError(f"label {self.name!r}: runs without a label were asked for")
        return self.values[pos], self.groups[pos]


def read_labels(store: RunStore, column: str, task: str | None = None, *, groups: str = "subject",
                folds: int | None = None) -> Labels:
    """Check the label `column` of `store` for `task` (None or "auto": inferred) and return its labelled runs.

    Args:
        store: the store holding the runs and the column.
        column: manifest column to predict.
        task: "classification", "regression", or None / "auto" to infer it (`infer_task`).
        groups: column whose values stay on one side of every split (default subject).
        folds: outer folds the caller will make; fewer labelled groups than this is refused.

    Raises:
        DataError: a missing column, no value at all, non-finite or out-of-range values, text for a regression,
            a single class, or too few labelled groups for `folds`; one line naming the store and column.
        ConfigError: an unknown task.
    """
    where = f"{store.path}: label {column!r}"
    raw = np.asarray(store.phenotype(column))
    group_all = store.phenotype(groups).astype(str)
    subjects = store.manifest["subject"].astype(str).to_numpy()
    miss = missing(raw)
    if miss.all():
        raise DataError(f"{where} has no values: all {len(raw)} runs are empty or NaN")
    runs = np.flatnonzero(~miss)
    y, group, names = present(raw), group_all[runs], subjects[runs]
    inferred = task in (None, "auto")
    task = infer_task(y) if inferred else task
    if task not in TASK_KINDS:
        raise ConfigError(f"label task must be 'classification' or 'regression', got {task!r}")
    numeric = _numeric(y)
    if task == "regression" and numeric is None:
        text = [i for i, v in enumerate(y) if _as_float(v) is None]
        raise DataError(f"{store.path}: regression label {column!r} has non-numeric values "
                        f"{', '.join(repr(y[i]) for i in text[:_SHOWN])} (subjects "
                        f"{', '.join(names[i] for i in text[:_SHOWN])}); fix the column or use --task classification")
    if numeric is not None and (problem := value_problem(numeric)) is not None:
        what, bad = problem
        raise DataError(f"{where} has {what} in subjects {', '.join(names[bad][:_SHOWN])}; fix those cells, or "
                        "empty them to leave the runs out")
    if task == "regression":
        y = numeric
        classes, targets = None, numeric
    else:
        uniq, inverse = np.unique(y, return_inverse=True)
        if len(uniq) < 2:
            raise DataError(f"{where} has a single class {uniq.tolist()}; nothing to learn")
        classes, targets = uniq.tolist(), inverse.astype(np.int64)
    n_groups = len(np.unique(group))
    if folds is not None and n_groups < folds:
        what = "subjects" if groups == "subject" else f"{groups!r} values"
        raise DataError(f"{where}: {n_groups} groups ({what}) cannot make {folds} folds; lower --folds")
    if miss.any():  # logged once the label is accepted, so that a refusal stays one line
        logger.warning("dropped %d of %d runs with a missing %r label", int(miss.sum()), len(raw), column)
    if inferred:
        logger.info("label %r: task %s (inferred; --task sets it)", column, task)
    return Labels(column, task, runs.astype(np.int64), group, y, classes, targets, int(miss.sum()))


def _count(mask: np.ndarray, noun: str) -> str:
    n = int(mask.sum())
    return f"{n} {noun}{'s' * (n != 1)}"


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _numeric(y: np.ndarray) -> np.ndarray | None:
    """float64 labels when every value is a number (or text of one, bool included), else None."""
    if y.dtype.kind in "biuf":
        return y.astype(np.float64)
    values = [_as_float(v) for v in y]
    return None if any(v is None for v in values) else np.array(values, dtype=np.float64)
