"""The findings of an evaluation-suite run, computed from its intervals and paired differences, not written in advance.

Every method of a task predicts the same runs, so the pretrained encoder is compared with each baseline by the
suite's paired differences (`SuiteResult.stats`: `TaskStats.differences`, each a `PairedDiff` of brainjepa minus
the other method). A comparison **differs** when its interval excludes 0; each method's own interval
(`TaskStats.scores`) is placed against the task's chance level. How the intervals are computed is the suite's
business (docs/evaluation.md); the sentences only read `PairedDiff`'s mean, bounds, n and `differs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from brainjepa.evaluation.metrics import PairedDiff

if TYPE_CHECKING:
    from brainjepa.evaluation.suite import SuiteResult, TaskResult, TaskStats

PRETRAINED = "brainjepa"
RANDOM_INIT = "random-init"
METRIC_NAMES = {"accuracy": "identification accuracy", "balanced_acc": "balanced accuracy", "pearson_r": "Pearson r"}


@dataclass(frozen=True)
class Comparison:
    """`diff` is the paired difference brainjepa - `other` on one task."""

    task: str
    other: str
    diff: PairedDiff

    @property
    def direction(self) -> str:
        """"higher", "lower", "same" (the interval includes 0) or "unknown" (no interval: too few subjects)."""
        if math.isnan(self.diff.low) or math.isnan(self.diff.high):
            return "unknown"
        if not self.diff.differs:
            return "same"
        return "higher" if self.diff.mean > 0 else "lower"


def comparisons(task: str, stats: TaskStats) -> list[Comparison]:
    """brainjepa against every other method of a task, in the table's order."""
    return [Comparison(task, other, d) for other, d in stats.differences.items()]


def best_fc(task: str, stats: TaskStats) -> Comparison:
    """brainjepa against the connectivity baseline (FC or tangent) that scored higher on the task."""
    return Comparison(task, stats.best_connectivity, stats.differences[stats.best_connectivity])


def _reference(res: TaskResult) -> str:
    return "r = 0" if res.task.kind == "regression" else f"chance ({res.chance:.3f})"


def _interval(d: PairedDiff, signed: bool) -> str:
    fmt = "+.3f" if signed else ".3f"
    return f"{d.confidence:.0%} CI {d.low:{fmt}} to {d.high:{fmt}}, {d.n} subjects"


def method_sentence(res: TaskResult, method: str, d: PairedDiff) -> str:
    """A method's score `d` and where its interval lies against the task's chance level."""
    if math.isnan(d.low) or math.isnan(d.high):
        return f"{method}: {d.mean:.3f} (no interval: {d.n} subject(s))."
    if d.low > res.chance:
        where = f"above {_reference(res)}"
    elif d.high < res.chance:
        where = f"below {_reference(res)}"
    else:
        where = f"not distinguishable from {_reference(res)}"
    return f"{method}: {d.mean:.3f} ({_interval(d, signed=False)}), {where}."


def comparison_sentence(c: Comparison, metric: str) -> str:
    d = c.diff
    if c.direction == "unknown":
        return f"{PRETRAINED} vs {c.other}: difference {d.mean:+.3f}, no interval ({d.n} subject(s))."
    detail = f"{metric} difference {d.mean:+.3f} ({_interval(d, signed=True)})"
    if c.direction == "same":
        return f"{PRETRAINED} and {c.other} do not differ detectably: {detail}; the interval includes 0."
    return f"**{PRETRAINED} scores {c.direction} than {c.other}**: {detail}."


def _task_lines(res: TaskResult, stats: TaskStats) -> list[str]:
    metric = METRIC_NAMES.get(res.metric, res.metric)
    lines = [f"**{res.task.name}** ({metric}, {res.n_runs} runs; reference {_reference(res)}):", ""]
    lines += [f"- {method_sentence(res, m, d)}" for m, d in stats.scores.items()]
    lines += [f"- {comparison_sentence(c, metric)}" for c in comparisons(res.task.name, stats)]
    return lines + [""]


def _names(items: list[str]) -> str:
    return ", ".join(items) or "none"


def _summary(stats: dict[str, TaskStats]) -> list[str]:
    """Across tasks: where pretraining helped (vs random init) and where the encoder kept up with the best FC."""
    random = {t: Comparison(t, RANDOM_INIT, s.differences[RANDOM_INIT]) for t, s in stats.items()
              if RANDOM_INIT in s.differences}
    fc = {t: best_fc(t, s) for t, s in stats.items()}
    by = {k: [t for t, c in random.items() if c.direction == k] for k in ("higher", "same", "lower", "unknown")}
    kept_up = [f"{t} ({'above' if c.direction == 'higher' else 'no detectable difference from'} {c.other})"
               for t, c in fc.items() if c.direction in ("higher", "same")]
    below = [f"{t} ({c.other})" for t, c in fc.items() if c.direction == "lower"]
    lines = [
        f"- Pretraining helped ({PRETRAINED} above {RANDOM_INIT}, interval excluding 0) on {len(by['higher'])} of "
        f"{len(random)} tasks: {_names(by['higher'])}. No detectable difference: {_names(by['same'])}. "
        f"{PRETRAINED} below {RANDOM_INIT}: {_names(by['lower'])}.",
        f"- Against the better connectivity baseline of each task (FC or tangent, whichever scored higher), "
        f"{PRETRAINED} was above it or not detectably different on {len(kept_up)} of {len(fc)} tasks: "
        f"{_names(kept_up)}; below it on {_names(below)}.",
    ]
    unknown = sorted({*by["unknown"], *(t for t, c in fc.items() if c.direction == "unknown")})
    if unknown:
        lines.append(f"- No interval (too few subjects): {_names(unknown)}.")
    return lines


def findings(result: SuiteResult, *, simulated: bool) -> str:
    """Markdown stating what the suite's intervals show, across tasks and task by task.

    Args:
        result: the suite's run (`brainjepa.evaluation.suite.evaluate`); skipped tasks are listed with why.
        simulated: the data were simulated; the text says so.
    """
    stats = result.stats
    done = [r for r in result.results if not r.skipped]
    lines = [
        f"Computed from the suite's results above ({result.method_note()}): each method's score against the "
        f"task's reference, and {PRETRAINED} minus every other method on the same runs. A difference is called "
        "detectable when its interval excludes 0. Each interval stands on its own (not corrected for multiple "
        "comparisons).",
        "",
    ]
    if done:
        lines += ["Across tasks:", "", *_summary({r.task.name: stats[r.task.name] for r in done}), ""]
    for res in done:
        lines += _task_lines(res, stats[res.task.name])
    lines += [f"- {r.task.name} was skipped: {r.reason}" for r in result.results if r.skipped]
    lines += ["", "No detectable difference means the interval includes 0 at this sample size, not that the methods "
              "are equal."]
    if simulated:
        lines += ["", "These numbers come from **simulated data** (`brainjepa simulate`), whose labels were planted "
                  "in the dynamics (the group in one network module, the coupling strength across the network): "
                  "they show whether the pipeline recovers a known effect, not how Brain-JEPA does on real fMRI."]
    return "\n".join(lines)


__all__ = ["Comparison", "best_fc", "comparison_sentence", "comparisons", "findings", "method_sentence"]
