"""The findings of a probe table, computed from its fold-level scores rather than written in advance.

Every row of a `ProbeTable` is scored on the same (seed, fold) splits, so rows are compared by their paired
per-fold differences (`paired_difference`, corrected for the folds' overlapping training sets). Each sentence
states what the intervals show: which rows differ and in which direction, which do not, and where each row
stands against chance.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from brainjepa.errors import DataError
from brainjepa.evaluation.metrics import PairedDiff, paired_difference

if TYPE_CHECKING:
    from brainjepa.evaluation.probe import ProbeTable

PRIMARY_METRIC = {"classification": "balanced_acc", "regression": "pearson_r"}
METRIC_NAMES = {"balanced_acc": "balanced accuracy", "pearson_r": "Pearson r"}


@dataclass(frozen=True)
class Comparison:
    """`diff` is the paired difference first - second over the shared folds."""

    first: str
    second: str
    diff: PairedDiff


def fold_scores(table: ProbeTable, metric: str) -> dict[str, np.ndarray]:
    """Each row's `metric` per (seed, fold), in one shared order.

    Raises:
        DataError: rows were not scored on the same (seed, fold) splits, so they cannot be paired.
    """
    keyed = {name: {(f["seed"], f["fold"]): f[metric] for f in res.folds} for name, res in table.results.items()}
    keys = sorted(next(iter(keyed.values())).keys()) if keyed else []
    for name, scores in keyed.items():
        if sorted(scores) != keys:
            raise DataError(f"probe row {name!r} was scored on other (seed, fold) splits than the first row")
    return {name: np.array([scores[k] for k in keys], dtype=np.float64) for name, scores in keyed.items()}


def fold_size_ratio(table: ProbeTable) -> float:
    """Mean n_test / n_train of the table's folds (the same for every row), for the interval's correction."""
    folds = next(iter(table.results.values())).folds
    return float(np.mean([f["n_test"] / f["n_train"] for f in folds]))


def compare_rows(table: ProbeTable, metric: str, *, confidence: float = 0.95) -> list[Comparison]:
    """Every pair of rows, in table order (first row vs the others, then second vs the rest...)."""
    scores = fold_scores(table, metric)
    ratio = fold_size_ratio(table)
    return [Comparison(a, b, paired_difference(scores[a], scores[b], confidence=confidence, test_train_ratio=ratio))
            for a, b in combinations(scores, 2)]


def _interval(d: PairedDiff) -> str:
    return f"{d.confidence:.0%} CI {d.low:+.3f} to {d.high:+.3f}, {d.n} folds"


def _higher_first(c: Comparison) -> tuple[str, str, PairedDiff]:
    """The pair as (higher row, lower row, their positive difference)."""
    d = c.diff
    if d.mean >= 0:
        return c.first, c.second, d
    return c.second, c.first, PairedDiff(-d.mean, -d.high, -d.low, d.n, d.confidence)


def _pair_sentence(c: Comparison, metric_name: str) -> str:
    d = c.diff
    if np.isnan(d.low):
        return f"{c.first} vs {c.second}: {d.n} paired folds are too few for an interval."
    if not d.differs:
        return (f"{c.first} and {c.second} do not differ detectably: {metric_name} difference {d.mean:+.3f} "
                f"({_interval(d)}; the interval includes 0).")
    high, low, diff = _higher_first(c)
    return f"**{high} scores higher than {low}**: {metric_name} difference {diff.mean:+.3f} ({_interval(diff)})."


def _row_sentence(name: str, scores: np.ndarray, reference: float, reference_name: str, *, confidence: float,
                  ratio: float) -> str:
    d = paired_difference(scores, np.full_like(scores, reference), confidence=confidence, test_train_ratio=ratio)
    mean, low, high = d.mean + reference, d.low + reference, d.high + reference
    if d.differs:
        where = f"{'above' if d.mean > 0 else 'below'} {reference_name}"
    else:
        where = f"not distinguishable from {reference_name}"
    return f"{name}: {mean:.3f} ({d.confidence:.0%} CI {low:.3f} to {high:.3f}), {where}."


def findings(table: ProbeTable, *, chance: float | None, simulated: bool, confidence: float = 0.95) -> str:
    """Markdown paragraphs stating what the table's fold-level scores show, every claim backed by an interval.

    Args:
        table: probe rows scored on the same folds (`probe_models`).
        chance: chance level of the primary metric for classification (balanced accuracy: 1 / number of
            classes); ignored for regression, whose reference is r = 0.
        simulated: the data were simulated; the text says so.
        confidence: coverage of every interval.
    """
    metric = PRIMARY_METRIC[table.task]
    metric_name = METRIC_NAMES[metric]
    scores = fold_scores(table, metric)
    ratio = fold_size_ratio(table)
    comparisons = compare_rows(table, metric, confidence=confidence)
    differ = [c for c in comparisons if c.diff.differs]
    same = [c for c in comparisons if not c.diff.differs]
    lines = [
        f"Computed from the per-fold {metric_name} of the probe above: each row's mean with a {confidence:.0%} "
        f"confidence interval, and for each pair of rows the mean of their paired differences over the same "
        f"{len(next(iter(scores.values())))} (seed, fold) splits. The intervals are t-intervals corrected for "
        f"the folds' overlapping training sets (Nadeau & Bengio; n_test/n_train = {ratio:.2f}), each on its own "
        "(not corrected for multiple comparisons).",
        "",
        f"- Rows that differ: {'; '.join(' > '.join(_higher_first(c)[:2]) for c in differ) or 'none'}.",
        f"- Rows with no detectable difference: {'; '.join(f'{c.first} vs {c.second}' for c in same) or 'none'}.",
        "",
    ]
    lines += [f"- {_pair_sentence(c, metric_name)}" for c in comparisons]
    reference: float | None = None
    if table.task == "classification" and chance is not None:
        reference, reference_name = chance, f"chance ({chance:.3f})"
    elif table.task == "regression":
        reference, reference_name = 0.0, "r = 0 (no linear relation)"
    if reference is not None:
        lines += ["", f"Against {reference_name}, {metric_name} per row:", ""]
        lines += [f"- {_row_sentence(name, s, reference, reference_name, confidence=confidence, ratio=ratio)}"
                  for name, s in scores.items()]
    lines += ["", "No detectable difference means the interval includes 0 at this sample size, not that the rows "
              "are equal."]
    if simulated:
        lines += ["", "These numbers come from **simulated data** (`brainjepa simulate`), whose label was planted "
                  "in the dynamics of one network module: they show whether the pipeline recovers a known effect, "
                  "not how Brain-JEPA does on real fMRI."]
    return "\n".join(lines)


__all__ = ["Comparison", "compare_rows", "findings", "fold_scores", "fold_size_ratio"]
