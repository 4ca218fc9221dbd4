"""What `brainjepa evaluate` measured, and the statistics computed from it.

Per task (`TaskResult`), every row keeps its out-of-fold predictions of the same units ([model seeds, CV seeds,
units]) and its permutation null; `TaskResult.stats` turns them into intervals (`brainjepa.evaluation.metrics`:
subject bootstrap, two-level when a row has several model seeds), nulls (`brainjepa.evaluation.nulls.Null`) and
the suite's fixed comparisons (`comparisons`). `SuiteResult` holds every task, makes the long table and the units
table, and counts the intervals it shows; `brainjepa.report.tables` writes them with evaluate.md and the figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from brainjepa.evaluation.metrics import Interval, bootstrap_interval, paired_bootstrap
from brainjepa.evaluation.nulls import Null

if TYPE_CHECKING:
    import pandas

    from brainjepa.evaluation.tasks import SuiteOptions, Task

BOOTSTRAP_SEED = 0  # the same subject resamples for every interval of a task, and from one call to the next
PRETRAINED, RANDOM_INIT, FC = "brainjepa", "random-init", "FC"
COLUMNS = ("task", "kind", "metric", "row", "type", "mean", "ci_low", "ci_high", "units", "n_units", "n_runs",
           "seeds", "chance", "null_mean", "null_high", "p_value", "above_chance", "status", "reason")
UNIT_COLUMNS = ("task", "metric", "row", "model_seed", "seed", "subject", "unit", "truth", "prediction")


@dataclass
class RowResult:
    """One row of one task: a method read out one way.

    Attributes:
        name: "method, readout" (or the baseline's name).
        method, readout, head: what produced it.
        note: what a reader must know about the row.
        seeds: model seeds (pretrained models, random-init weight seeds; 1 for baselines).
        predictions: out-of-fold predictions [model seeds, CV seeds, units] (identification: the matched subject,
            one "CV seed").
        null: the score under each label permutation [permutations], averaged over model seeds (None: no null,
            e.g. the attentive head, too costly to retrain hundreds of times).
        by_pair: identification: accuracy per session pair, one value per model seed.
        reason: why the row is missing ("" when it ran).
    """

    name: str
    method: str = ""
    readout: str = ""
    head: str = "linear"
    note: str = ""
    seeds: int = 1
    predictions: np.ndarray | None = None
    null: np.ndarray | None = None
    by_pair: dict[str, list[float]] = field(default_factory=dict)
    reason: str = ""

    @property
    def skipped(self) -> bool:
        return bool(self.reason)


def comparisons(rows: dict[str, RowResult]) -> list[tuple[str, str]]:
    """The suite's fixed comparisons, (a, b) for a - b, among the rows that ran: for every readout of the
    pretrained model, pretrained vs random init with the same readout (what pretraining added), and pretrained vs
    FC on the same frames (the standard the encoder has to meet). Fixed in advance, never picked from results."""
    done = {name for name, r in rows.items() if not r.skipped}
    out = []
    for name, row in rows.items():
        if row.method != PRETRAINED or name not in done:
            continue
        for other in (f"{RANDOM_INIT}, {row.readout}", FC):
            if other in done:
                out.append((name, other))
    return out


@dataclass(frozen=True)
class TaskStats:
    """A task's statistics: each row's score and null, and the fixed comparisons' paired differences.

    Attributes:
        scores: row -> its score with the (two-level) bootstrap interval.
        nulls: row -> its permutation null (rows without one are absent).
        differences: "a - b" -> the paired difference a - b (`comparisons`).
        pairs: "a - b" -> (a, b).
    """

    scores: dict[str, Interval]
    nulls: dict[str, Null]
    differences: dict[str, Interval]
    pairs: dict[str, tuple[str, str]]

    def above_chance(self, row: str) -> bool:
        """The row clears its null (`Null.cleared_by`); never without a null."""
        return row in self.nulls and self.nulls[row].cleared_by(self.scores[row])


@dataclass
class TaskResult:
    """One task's outcome: every row's predictions of the same units, or why the task was skipped.

    Attributes:
        task: the task.
        reason: why it was skipped ("" when it ran).
        truth: the true label or value of each unit [N] (a run; for identification a query, whose truth is its
            subject; for a within-subject task, the deviation from the subject's mean).
        rows: row name -> `RowResult`, in table order.
        subjects: the subject of each unit [N], the bootstrap's resampling unit.
        units: name of each unit [N]: the store's run label, or the "a->b" sessions of an identification query.
        chance: the nominal score of a random guess (balanced accuracy 1 / classes, identification 1 /
            candidates, Pearson r 0); the nulls say what this pipeline scores by chance.
        n_runs: runs the task used.
        scheme: how the null permuted labels.
        permutations: permutations per null.
    """

    task: Task
    reason: str = ""
    truth: np.ndarray = field(default_factory=lambda: np.empty(0))
    rows: dict[str, RowResult] = field(default_factory=dict)
    subjects: np.ndarray = field(default_factory=lambda: np.empty(0))
    units: np.ndarray = field(default_factory=lambda: np.empty(0))
    chance: float = math.nan
    n_runs: int = 0
    scheme: str = ""
    permutations: int = 0

    @property
    def skipped(self) -> bool:
        return bool(self.reason)

    @property
    def metric(self) -> str:
        return self.task.metric

    @property
    def predictions(self) -> dict[str, np.ndarray]:
        """Row -> predictions [model seeds, CV seeds, units], for the rows that ran."""
        return {name: r.predictions for name, r in self.rows.items() if not r.skipped}

    def stats(self, *, confidence: float = 0.95, n_boot: int = 2000) -> TaskStats:
        """Scores, nulls and differences; every interval on the same subject resamples."""
        common = {"n_boot": n_boot, "confidence": confidence, "seed": BOOTSTRAP_SEED}
        preds = self.predictions
        scores = {m: bootstrap_interval(self.truth, p, self.subjects, self.metric, **common) for m, p in preds.items()}
        nulls = {m: Null(np.asarray(r.null, dtype=np.float64), scores[m].mean, self.scheme)
                 for m, r in self.rows.items() if m in scores and r.null is not None}
        pairs = {f"{a} - {b}": (a, b) for a, b in comparisons(self.rows)}
        differences = {k: paired_bootstrap(self.truth, preds[a], preds[b], self.subjects, self.metric, **common)
                       for k, (a, b) in pairs.items()}
        return TaskStats(scores, nulls, differences, pairs)


@dataclass
class SuiteResult:
    """All tasks' results; `to_frame` is the long table (`brainjepa.report.tables.save_suite` writes the files).

    Attributes:
        results: one `TaskResult` per task, in table order.
        options: the settings.
        models: the name of each evaluated model ("" for a model given as an object).
        embeddings: per data set, the first readout's features of every run (store order) of the first model
            (``brainjepa``) and the first random-init seed (``random-init``), what the quickstart's PCA reuses.
    """

    results: list[TaskResult]
    options: SuiteOptions
    models: list[str] = field(default_factory=list)
    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The model names, comma-separated."""
        return ", ".join(m for m in self.models if m)

    @cached_property
    def stats(self) -> dict[str, TaskStats]:
        """Task name -> its statistics, for the tasks that ran (computed once)."""
        o = self.options
        return {r.task.name: r.stats(confidence=o.confidence, n_boot=o.bootstrap) for r in self.results
                if not r.skipped}

    def intervals_read(self) -> int:
        """Intervals the tables show (scores and differences of every task): none is corrected for the others."""
        return sum(len(s.scores) + len(s.differences) for s in self.stats.values())

    def method_note(self) -> str:
        """How the intervals and nulls were computed, for every table's caption."""
        o = self.options
        counts = {"random-init": len(o.random_init_seeds), "brainjepa": max(len(self.models), 1)}
        several = [f"{name}: {k} seeds" for name, k in counts.items() if k > 1]
        seeds = (f"; rows with several model seeds ({', '.join(several)}) also resample their seeds (two-level "
                 "bootstrap)" if several else "; every row has one model seed, so intervals cover subjects, not seeds")
        return (f"{o.confidence:.0%} confidence intervals from a subject-level bootstrap ({o.bootstrap} resamples "
                "of subjects with replacement, each with all its runs, as runs of one subject are not independent; "
                f"percentile limits), paired for differences{seeds}; chance is judged against each row's "
                f"permutation null ({o.permutations} label permutations, the same pipeline refitted)")

    def rows(self) -> list[dict[str, Any]]:
        """The long table: per task, a score row per method row (with its null), a difference row per comparison,
        identification's per-pair accuracies, a row per skipped method row, or one skipped row with its reason."""
        rows: list[dict[str, Any]] = []
        for res in self.results:
            base = {"task": res.task.name, "kind": res.task.kind, "metric": res.metric}
            if res.skipped:
                rows.append({**base, "row": "", "type": "skipped", "status": "skipped", "reason": res.reason})
                continue
            st = self.stats[res.task.name]
            common = {"units": "subject", "n_runs": res.n_runs, "chance": res.chance, "status": "done"}
            for name, row in res.rows.items():
                if row.skipped:
                    rows.append({**base, "row": name, "type": "score", "status": "skipped", "reason": row.reason})
                    continue
                d, null = st.scores[name], st.nulls.get(name)
                rows.append({**base, **common, "row": name, "type": "score", **_interval(d), "seeds": d.seeds,
                             "null_mean": null.mean if null else math.nan, "null_high": null.high if null else math.nan,
                             "p_value": null.p_value if null else math.nan, "above_chance": st.above_chance(name),
                             "reason": row.note if null else f"no permutation null ({row.head} head); {row.note}"})
                for pair, values in row.by_pair.items():
                    rows.append({**base, **common, "row": name, "type": "pair", "mean": float(np.mean(values)),
                                 "seeds": len(values), "reason": pair})
            for label, d in st.differences.items():
                rows.append({**base, **common, "row": label, "type": "difference", **_interval(d), "seeds": d.seeds})
        return [{c: r.get(c, math.nan if c in _NUMERIC else "") for c in COLUMNS} for r in rows]

    def to_frame(self) -> pandas.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=list(COLUMNS))

    def unit_frame(self) -> pandas.DataFrame:
        """Every row's prediction of every unit, per model seed and CV seed: what every score and interval is
        computed from (identification: the matched subject of every query)."""
        import pandas as pd

        parts = []
        for r in self.results:
            for name, pred in r.predictions.items():
                m, s, n = pred.shape
                parts.append(pd.DataFrame({
                    "task": r.task.name, "metric": r.metric, "row": name,
                    "model_seed": np.repeat(np.arange(m), s * n), "seed": np.tile(np.repeat(np.arange(s), n), m),
                    "subject": np.tile(r.subjects, m * s), "unit": np.tile(r.units, m * s),
                    "truth": np.tile(r.truth, m * s), "prediction": pred.reshape(-1)}))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(UNIT_COLUMNS))


_NUMERIC = ("mean", "ci_low", "ci_high", "chance", "null_mean", "null_high", "p_value")


def _interval(d: Interval) -> dict[str, Any]:
    return {"mean": d.mean, "ci_low": d.low, "ci_high": d.high, "n_units": d.n}


__all__ = ["COLUMNS", "UNIT_COLUMNS", "RowResult", "SuiteResult", "TaskResult", "TaskStats", "comparisons"]
