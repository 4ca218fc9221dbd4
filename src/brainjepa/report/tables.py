"""`brainjepa evaluate`'s text and files: the markdown tables (scores, nulls, differences, identification per
session pair), evaluate.md, and `save_suite`, which writes them with the long table, the units table and the
figure; all from a `SuiteResult`'s statistics only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainjepa.evaluation.metrics import Interval
from brainjepa.io import atomic_write_text
from brainjepa.report.figures import can_draw, suite_figure
from brainjepa.report.findings import p_text

if TYPE_CHECKING:
    from brainjepa.evaluation.results import SuiteResult, TaskResult


def _cell(d: Interval, digits: int, signed: bool = False) -> str:
    if not np.isfinite(d.mean):
        return "n/a"
    sign = "+" if signed else ""
    digits = d.decimals(digits)
    ci = f" [{d.low:{sign}.{digits}f}, {d.high:{sign}.{digits}f}]" if np.isfinite(d.low) else ""
    return f"{d.mean:{sign}.{digits}f}{ci}"


def _table(head: list[str], lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"] + ["| " + " | ".join(c) + " |" for c in lines]


def _row_names(done: list[TaskResult]) -> list[str]:
    return list(dict.fromkeys(name for r in done for name in r.rows))


def suite_tables(result: SuiteResult, digits: int = 3) -> str:
    """The caption, then: scores per row and task (* above chance), each row's permutation null, the fixed
    paired differences, identification per session pair, and the notes (confounds, skipped rows and tasks)."""
    done = [r for r in result.results if not r.skipped]
    tasks = [r.task.name + (" (confounded)" if r.task.confound else "") for r in done]
    lines = [f"Score [CI] per row and task; `*`: above chance (the score's permutation p-value is at most 0.05 "
             f"and its interval excludes the null mean). {result.method_note()}. These tables "
             f"show {result.intervals_read()} intervals, none corrected for the others.", ""]
    if done:
        names = _row_names(done)
        body = [["chance (nominal)", *(f"{r.chance:.{digits}f}" for r in done)]]
        for name in names:
            cells = []
            for r in done:
                st = result.stats[r.task.name]
                if name not in r.rows:
                    cells.append("–")
                elif r.rows[name].skipped:
                    cells.append("skipped")
                else:
                    cells.append(_cell(st.scores[name], digits) + ("*" if st.above_chance(name) else ""))
            body.append([name, *cells])
        lines += _table(["row", *tasks], body) + [""]
        lines += ["Permutation nulls: mean / 95th percentile (one-sided p of the score).", ""]
        body = []
        for name in names:
            cells = []
            for r in done:
                null = result.stats[r.task.name].nulls.get(name)
                cells.append(f"{null.mean:.{digits}f} / {null.high:.{digits}f} (p = {p_text(null.p_value)})"
                             if null and null.n else "–" if null is None else "undefined (NaN)")
            body.append([name, *cells])
        lines += _table(["row", *tasks], body) + [""]
        labels = list(dict.fromkeys(k for r in done for k in result.stats[r.task.name].differences))
        if labels:
            lines += ["Paired differences (fixed in advance: pretrained minus random init with the same readout, "
                      "and minus FC on the same frames).", ""]
            body = [[label, *(_cell(result.stats[r.task.name].differences[label], digits, signed=True)
                              if label in result.stats[r.task.name].differences else "–" for r in done)]
                    for label in labels]
            lines += _table(["difference", *tasks], body) + [""]
        lines += _pair_tables(done, digits)
        lines += _notes(done)
    lines += [f"- {r.task.name} skipped: {r.reason}" for r in result.results if r.skipped]
    return "\n".join(lines).rstrip()


def _pair_tables(done: list[TaskResult], digits: int) -> list[str]:
    out = []
    for r in done:
        with_pairs = {name: row.by_pair for name, row in r.rows.items() if row.by_pair}
        if not with_pairs:
            continue
        pairs = list(dict.fromkeys(p for by in with_pairs.values() for p in by))
        out += [f"{r.task.name} by session pair (accuracy; run of the first session matched among the second's; "
                "mean over model seeds).", ""]
        body = [[name, *(f"{np.mean(by[p]):.{digits}f}" if p in by else "–" for p in pairs)]
                for name, by in with_pairs.items()]
        out += _table(["row", *pairs], body) + [""]
    return out


def _notes(done: list[TaskResult]) -> list[str]:
    out = []
    for r in done:
        t = r.task
        units = "matches (a run vs another session's runs)" if t.kind == "identification" else "runs, out of fold"
        out.append(f"- {t.name}: {t.about}; {r.metric} over {units}, {r.n_runs} runs; null: {r.scheme}."
                   + (f" **{t.confound}**" if t.confound else ""))
    notes = {name: row.note for r in done for name, row in r.rows.items() if row.note and not row.skipped}
    out += [f"- {name}: {note}." for name, note in notes.items()]
    skipped = {(name, row.reason) for r in done for name, row in r.rows.items() if row.skipped}
    out += [f"- {name} skipped: {reason}" for name, reason in sorted(skipped)]
    return out


def suite_report(result: SuiteResult) -> str:
    """evaluate.md: the settings, then `suite_tables`."""
    o = result.options
    models = result.model or "the given model"
    return (
        f"# brainjepa evaluate: {models}\n\n"
        f"Each score is the task metric of all out-of-fold predictions, averaged over the {o.seeds} CV seeds and "
        "over model seeds (identification: of all matches); differences are one row minus another on the same "
        f"units. {o.folds} subject-grouped folds x {o.seeds} seeds; linear rows: ridge with in-fold scaling and "
        f"penalty; encoder rows: {o.head} head on `{o.encoder_pooling}` pooling, layer {o.embed.layer}, "
        f"{o.embed.windows} window(s), normalisation `{o.embed.normalization}`, {o.embed.encoder} encoder; "
        f"{max(len(result.models), 1)} pretrained model(s), random-init weight seeds "
        f"{', '.join(map(str, o.random_init_seeds))}; subjects: {o.split}. Every baseline sees the encoders' "
        f"window(s) except `FC, whole run`.\n\n{suite_tables(result)}\n"
    )


def save_suite(result: SuiteResult, out: str | Path) -> list[Path]:
    """Write evaluate.csv (the long table), evaluate_units.csv, evaluate.md and evaluate.png (when a task ran and
    matplotlib, the [viz] extra, is installed) into `out`, each atomically (a reader never sees half a file)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "evaluate.csv", out / "evaluate_units.csv", out / "evaluate.md"]
    atomic_write_text(paths[0], result.to_frame().to_csv(index=False))
    atomic_write_text(paths[1], result.unit_frame().to_csv(index=False))
    atomic_write_text(paths[2], suite_report(result))
    if all(r.skipped for r in result.results):
        return paths
    if not can_draw("evaluate.png"):
        return paths
    return [*paths, suite_figure(result, out / "evaluate.png")]


__all__ = ["save_suite", "suite_report", "suite_tables"]
