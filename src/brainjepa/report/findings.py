"""The findings of an evaluation-suite run, computed from its intervals and nulls, not written in advance.

Every row of a task predicts the same units. A row is **above chance** only when it clears its permutation null
(`TaskStats.above_chance`: the score's permutation p-value is at most 0.05 and its interval excludes the null
mean),
never merely against the nominal chance level, which a cross-validated probe can sit far from (pooled Pearson r
under subject-grouped folds is biased negative). The suite's fixed comparisons (`brainjepa.evaluation.results.
comparisons`: pretrained vs random init with the same readout, pretrained vs FC) **differ** when their paired
interval excludes 0. How the intervals and nulls are computed is the suite's business (docs/evaluation.md); the
sentences only read `Interval` and `Null`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from brainjepa.evaluation.metrics import Interval
from brainjepa.evaluation.nulls import ALPHA

if TYPE_CHECKING:
    from brainjepa.evaluation.nulls import Null
    from brainjepa.evaluation.results import SuiteResult, TaskResult, TaskStats

PRETRAINED = "brainjepa"
RANDOM_INIT = "random-init"
METRIC_NAMES = {"accuracy": "identification accuracy", "balanced_acc": "balanced accuracy", "pearson_r": "Pearson r"}


@dataclass(frozen=True)
class Comparison:
    """`diff` is the paired difference `row` - `other` on one task."""

    task: str
    row: str
    other: str
    diff: Interval

    @property
    def direction(self) -> str:
        """"higher", "lower", "same" (the interval includes 0) or "unknown" (no interval: too few subjects)."""
        if math.isnan(self.diff.low) or math.isnan(self.diff.high):
            return "unknown"
        if not self.diff.differs:
            return "same"
        return "higher" if self.diff.mean > 0 else "lower"


def comparisons(task: str, stats: TaskStats) -> list[Comparison]:
    """The task's fixed comparisons, in the table's order."""
    return [Comparison(task, *stats.pairs[label], d) for label, d in stats.differences.items()]


def _interval(d: Interval, signed: bool) -> str:
    fmt = f"{'+' if signed else ''}.{d.decimals()}f"
    seeds = f", {d.seeds} seeds" if d.seeds > 1 else ""
    return f"{d.confidence:.0%} CI {d.low:{fmt}} to {d.high:{fmt}}, {d.n} subjects{seeds}"


def _no_interval(d: Interval) -> str:
    """Why an interval is missing: too few subjects to resample, or a score undefined on these predictions."""
    if d.n < 2:
        return f"no interval: {d.n} subject(s)"
    if math.isnan(d.mean):
        return (f"undefined on these predictions, e.g. constant ones (a Pearson r of a constant); {d.n} subjects: "
                "a flat result to check, not a finding")
    return f"no interval: its resamples are undefined ({d.n} subjects)"


def p_text(p: float) -> str:
    """A p-value with the digits its comparison with `ALPHA` needs: 0.0505 is not printed as 0.050."""
    k = 3
    while k < 6 and p != ALPHA and f"{p:.{k}f}" == f"{ALPHA:.{k}f}":
        k += 1
    return f"{p:.{k}f}"


def method_sentence(res: TaskResult, row: str, d: Interval, null: Null | None) -> str:
    """A row's score and whether it clears its permutation null."""
    if math.isnan(d.low) or math.isnan(d.high):
        return f"{row}: {d.mean:.3f} ({_no_interval(d)}); not called above chance."
    score = f"{row}: {d.mean:.3f} ({_interval(d, signed=False)})"
    if null is None or not null.n:
        why = "no permutation null for this row" if null is None else "its permutation null is undefined (NaN)"
        return f"{score}; {why}, so it is not called above chance."
    where = "above chance" if null.cleared_by(d) else "not above chance"
    return (f"{score}, {where}: its null has mean {null.mean:.3f} and 95th percentile {null.high:.3f} "
            f"(p = {p_text(null.p_value)}; nominal chance {res.chance:.3f}).")


def comparison_sentence(c: Comparison, metric: str) -> str:
    d = c.diff
    if c.direction == "unknown":
        return f"{c.row} vs {c.other}: difference {d.mean:+.3f} ({_no_interval(d)})."
    detail = f"{metric} difference {d.mean:+.{d.decimals()}f} ({_interval(d, signed=True)})"
    if c.direction == "same":
        return f"{c.row} and {c.other} do not differ detectably: {detail}; the interval includes 0."
    return f"**{c.row} scores {c.direction} than {c.other}**: {detail}."


def _task_lines(res: TaskResult, stats: TaskStats) -> list[str]:
    metric = METRIC_NAMES.get(res.metric, res.metric)
    flag = f" {res.task.confound}." if res.task.confound else ""
    lines = [f"**{res.task.name}** ({metric}, {res.n_runs} runs; nominal chance {res.chance:.3f}, null: "
             f"{res.scheme}).{flag}", ""]
    lines += [f"- {method_sentence(res, m, d, stats.nulls.get(m))}" for m, d in stats.scores.items()]
    lines += [f"- {name}: skipped ({row.reason}); no score, so no comparison with it."
              for name, row in res.rows.items() if row.skipped]
    lines += [f"- {comparison_sentence(c, metric)}" for c in comparisons(res.task.name, stats)]
    return lines + [""]


def _names(items: list[str]) -> str:
    return ", ".join(items) or "none"


def _summary(stats: dict[str, TaskStats], skipped: list[str]) -> list[str]:
    """Across tasks: which rows clear their nulls, where pretraining helped, where the encoder kept up with FC;
    `skipped`: "task (row)" of the rows that did not run (their comparisons are missing from the counts)."""
    found = [c for t, s in stats.items() for c in comparisons(t, s)]
    random = [c for c in found if c.other.startswith(RANDOM_INIT)]
    fc = [c for c in found if not c.other.startswith(RANDOM_INIT)]
    by = {k: [f"{c.task} ({c.row})" for c in random if c.direction == k] for k in ("higher", "same", "lower")}
    kept_up = [f"{c.task} ({c.row}: {'above' if c.direction == 'higher' else 'no detectable difference'})"
               for c in fc if c.direction in ("higher", "same")]
    below = [f"{c.task} ({c.row})" for c in fc if c.direction == "lower"]
    above = [f"{t}: {', '.join(r for r in s.scores if s.above_chance(r))}" for t, s in stats.items()
             if any(s.above_chance(r) for r in s.scores)]
    lines = [
        f"- Above chance (clearing the permutation null): {'; '.join(above) or 'no row on any task'}.",
        f"- Pretraining helped ({PRETRAINED} above {RANDOM_INIT} with the same readout, interval excluding 0) on "
        f"{len(by['higher'])} of {len(random)} comparisons: {_names(by['higher'])}. No detectable difference: "
        f"{_names(by['same'])}. {PRETRAINED} below {RANDOM_INIT}: {_names(by['lower'])}.",
        f"- Against FC on the same frames, {PRETRAINED} was above it or not detectably different on {len(kept_up)} "
        f"of {len(fc)} comparisons: {_names(kept_up)}; below it on {_names(below)}.",
    ]
    unknown = sorted({c.task for c in found if c.direction == "unknown"})
    if unknown:
        lines.append(f"- No interval (too few subjects, or a score undefined on the predictions): {_names(unknown)}.")
    if skipped:
        lines.append(f"- Rows skipped, so left out of these counts: {_names(skipped)}.")
    return lines


def findings(result: SuiteResult, *, simulated: bool) -> str:
    """Markdown stating what the suite's intervals and nulls show, across tasks and task by task.

    Args:
        result: the suite's run (`brainjepa.evaluation.suite.evaluate`); skipped tasks are listed with why.
        simulated: the data were simulated; the text says so.
    """
    stats = result.stats
    done = [r for r in result.results if not r.skipped]
    lines = [
        f"Computed from the suite's results above ({result.method_note()}). A row is called above chance only when "
        "it clears its permutation null; a comparison is called detectable when its paired interval excludes 0. "
        f"The tables show {result.intervals_read()} intervals, each standing on its own (not corrected for "
        "multiple comparisons).",
        "",
    ]
    if done:
        skipped = [f"{r.task.name} ({name})" for r in done for name, row in r.rows.items() if row.skipped]
        lines += ["Across tasks:", "", *_summary({r.task.name: stats[r.task.name] for r in done}, skipped), ""]
    for res in done:
        lines += _task_lines(res, stats[res.task.name])
    lines += [f"- {r.task.name} was skipped: {r.reason}" for r in result.results if r.skipped]
    lines += ["", "No detectable difference means the interval includes 0 at this sample size, not that the rows "
              "are equal."]
    if simulated:
        lines += ["", "These numbers come from **simulated data** (`brainjepa simulate`), whose labels were planted "
                  "in the dynamics (the group in one network module, the coupling strength across the network): "
                  "they show whether the pipeline recovers a known effect, not how Brain-JEPA does on real fMRI."]
    return "\n".join(lines)


__all__ = ["Comparison", "comparison_sentence", "comparisons", "findings", "method_sentence", "p_text"]
