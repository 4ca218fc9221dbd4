"""Findings are derived from the evaluation suite's nulls and paired differences, and the report carries them:
checked on constructed suite results whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brainjepa.evaluation.metrics import Interval
from brainjepa.evaluation.results import RowResult, SuiteResult, TaskResult
from brainjepa.evaluation.suite import TASKS, SuiteOptions
from brainjepa.report.findings import Comparison, comparisons, findings
from brainjepa.report.markdown import write_report
from brainjepa.report.tables import suite_tables

PRE, RND, FC, TAN = "brainjepa, ROI mean", "random-init, ROI mean", "FC", "tangent"


# ------------------------------------------------------------------------------------- constructed suite results
SUBJECTS = np.repeat(np.arange(40), 2).astype(str)  # 40 subjects, 2 runs each


def _row(name: str, pred: np.ndarray, null: np.ndarray | None) -> RowResult:
    method, _, readout = name.partition(", ")
    return RowResult(name, method=method, readout=readout, predictions=pred[None, None], null=null)


def _task(name: str, truth: np.ndarray, predictions: dict[str, np.ndarray], nulls: dict[str, np.ndarray],
          chance: float) -> TaskResult:
    """A finished task whose rows predicted the 80 runs as given (one model seed, one CV seed)."""
    rows = {m: _row(m, p, nulls.get(m)) for m, p in predictions.items()}
    return TaskResult(TASKS[name], truth=truth, rows=rows, subjects=SUBJECTS,
                      units=np.array([f"run {i}" for i in range(len(truth))]), chance=chance, n_runs=len(truth),
                      scheme="labels shuffled within-subject", permutations=100)


@pytest.fixture
def suite() -> SuiteResult:
    """regulation: brainjepa right on all but 8 subjects' runs, random init guessing, FC identical to brainjepa,
    tangent always right; nulls around 0.5. rating: brainjepa unrelated to the truth, random init and FC close to
    it, tangent partly; nulls around -0.3 (the bias of pooled r), and tangent's score (about 0.7) clears it.
    identification: skipped."""
    rng = np.random.default_rng(0)
    truth = np.tile(["down", "up"], 40)
    wrong = np.isin(SUBJECTS, [str(s) for s in range(0, 40, 5)])
    pre = np.where(wrong, np.roll(truth, 1), truth)
    half = rng.normal(0.5, 0.04, 100)
    regulation = _task("connattractor/regulation", truth,
                       {PRE: pre, RND: rng.permutation(truth), FC: pre.copy(), TAN: truth.copy()},
                       {PRE: half, RND: half, FC: half, TAN: half}, chance=0.5)
    value = rng.normal(size=80)
    biased = rng.normal(-0.3, 0.1, 100)
    rating = _task("connattractor/rating", value, {PRE: rng.normal(size=80), RND: value + rng.normal(0, 0.3, 80),
                                                   FC: value + rng.normal(0, 0.1, 80),
                                                   TAN: value + rng.normal(0, 1.0, 80)},
                   {PRE: biased, RND: biased, FC: biased}, chance=0.0)  # tangent: no null
    skipped = TaskResult(TASKS["connattractor/identification"], reason="connattractor data: offline")
    options = SuiteOptions(tasks=tuple(TASKS)[:3], folds=5, seeds=1, bootstrap=200, random_init_seeds=(0,))
    return SuiteResult([skipped, regulation, rating], options)


def test_comparisons_are_the_suites_paired_differences(suite):
    regulation, rating = suite.stats["connattractor/regulation"], suite.stats["connattractor/rating"]
    found = comparisons("connattractor/regulation", regulation)
    assert [(c.row, c.other) for c in found] == [(PRE, RND), (PRE, FC)]  # fixed in advance; tangent is no party
    assert [c.diff for c in found] == list(regulation.differences.values())  # not recomputed
    assert {c.other: c.direction for c in found} == {RND: "higher", FC: "same"}
    assert {c.other: c.direction for c in comparisons("x", rating)} == {RND: "lower", FC: "lower"}


def _pair(low: float, high: float) -> Comparison:
    return Comparison("t", "a", "x", Interval((low + high) / 2, low, high, 10, 0.95))


def test_direction_reads_only_the_interval():
    assert _pair(0.01, 0.2).direction == "higher" and _pair(-0.2, -0.01).direction == "lower"
    assert _pair(-0.01, 0.2).direction == "same" and _pair(0.0, 0.0).direction == "same"
    assert Comparison("t", "a", "x", Interval(0.4, math.nan, math.nan, 1, 0.95)).direction == "unknown"


def test_findings_call_chance_from_the_null_and_name_directions_and_skips(suite):
    text = findings(suite, simulated=False)
    gain = suite.stats["connattractor/regulation"].differences[f"{PRE} - {RND}"]
    assert f"**{PRE} scores higher than {RND}**: balanced accuracy difference {gain.mean:+.3f} (95% CI " \
           f"{gain.low:+.3f} to {gain.high:+.3f}, 40 subjects)." in text
    assert f"{PRE} and {FC} do not differ detectably: balanced accuracy difference +0.000" in text
    assert f"**{PRE} scores lower than {RND}**: Pearson r difference" in text  # sign taken from the numbers
    tangent = suite.stats["connattractor/regulation"].nulls[TAN]
    assert f"- {TAN}: 1.000 (95% CI 1.000 to 1.000, 40 subjects), above chance: its null has mean " \
           f"{tangent.mean:.3f} and 95th percentile {tangent.high:.3f} (p = 0.010; nominal chance 0.500)." in text
    rating = suite.stats["connattractor/rating"]
    assert rating.above_chance(FC) and not rating.above_chance(TAN)
    assert f"- {TAN}: " in text and "no permutation null for this row, so it is not called above chance" in text
    assert "Pretraining helped (brainjepa above random-init with the same readout, interval excluding 0) on 1 of " \
           f"2 comparisons: connattractor/regulation ({PRE}). No detectable difference: none. brainjepa below " \
           f"random-init: connattractor/rating ({PRE})." in text
    assert f"on 1 of 2 comparisons: connattractor/regulation ({PRE}: no detectable difference); below it on " \
           f"connattractor/rating ({PRE})." in text
    assert f"These tables show {suite.intervals_read()} intervals" in suite_tables(suite)
    assert suite.intervals_read() == 2 * (4 + 2)
    assert "connattractor/identification was skipped: connattractor data: offline" in text
    assert "simulated" not in text
    assert "simulated data" in findings(suite, simulated=True)


def test_findings_change_when_the_numbers_do(suite):
    regulation = suite.results[1]
    regulation.rows[FC].predictions = regulation.rows[TAN].predictions.copy()  # FC now always right
    text = findings(suite, simulated=False)
    assert f"**{PRE} scores lower than {FC}**" in text
    assert f"below it on connattractor/regulation ({PRE}), connattractor/rating ({PRE})." in text


def test_a_score_above_nominal_chance_is_not_called_above_chance_inside_its_null(suite):
    regulation = suite.results[1]
    regulation.rows[PRE].null = np.full(100, 0.95)  # a null this high: 0.8 is chance for this pipeline
    text = findings(suite, simulated=False)
    score = suite.stats["connattractor/regulation"].scores[PRE]
    assert score.mean == pytest.approx(0.8) and score.low > 0.5  # far above the nominal 0.5
    assert f"- {PRE}: 0.800 (95% CI {score.low:.3f} to {score.high:.3f}, 40 subjects), not above chance: its null " \
           "has mean 0.950 and 95th percentile 0.950 (p = 1.000; nominal chance 0.500)." in text


# ------------------------------------------------------------------------------------------------ report.md
def _facts(data: str) -> dict:
    return {"data": data, "steps_asked": 297, "minutes": 1, "budget": "steps", "embed_dim": 32, "patch_size": 16,
            "seed": 0, "torch": "x", "threads": 2, "total_minutes": 1.0,
            "runs": 20, "subjects": 10, "rois": 8, "atlas": "a", "frames_min": 160, "frames_max": 160, "tr": 2.0,
            "label": "group", "label_counts": {"a": 10, "b": 10}, "sample": None, "store": "s",
            "gradient_components": 3, "window": 160, "epochs": 2, "steps": 4, "seconds_per_step": 0.1,
            "precision": "fp32", "precision_reason": "auto: the CPU has no native bf16", "pretrain_minutes": 0.1,
            "step_seconds": {"data": 1.0, "gradients": 2.0, "pretraining": 60.0, "evaluation": 42.0}}


@pytest.mark.parametrize("data", ["simulated", "connattractor"])
def test_report_carries_the_suite_table_and_derived_findings(suite, tmp_path, data):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("step,loss,target_std,target_rank\n0,1.0,0.5,4\n1,0.8,0.4,3.5\n")
    text = write_report(tmp_path, _facts(data), suite, metrics_csv=metrics).read_text()
    assert suite_tables(suite) in text and "![evaluation](evaluate/evaluate.png)" in text
    findings_text = text[text.index("## 7. Findings"):text.index("## 8. Time")]
    assert findings_text.strip().startswith("## 7. Findings\n\n" + findings(suite, simulated=data == "simulated"))
    assert ("simulated data" in text) == (data == "simulated")
    assert "| evaluation | 42 |" in text and "5 folds x\n1 seed(s)" in text
    # ranks 4 and 3.5 of a 32-d encoder on 16-frame patches: below the monitor's floor of 8 at both checks
    assert "**the monitor warned at 2 of 2 checks** (first at step 0)" in text and "no sign of collapse" not in text
    assert "--steps 297" in text and "297 steps asked" in text
    assert "**What the confirmatory study found**" in findings_text
    assert "--folds 5 --seeds 1 --bootstrap 200 --permutations 200 --random-init-seeds 0" in text


def test_collapse_summary_reads_the_monitors_rank_floor(tmp_path):
    """The report's verdict is the monitor's own test: a healthy std with a rank under the floor is a warning
    (it was reported as 'no sign of collapse' while the run log warned 69 times)."""
    from brainjepa.report.markdown import _collapse_summary

    metrics = tmp_path / "metrics.csv"
    metrics.write_text("step,loss,target_std,target_rank\n1,1.0,0.7,21.4\n10,0.9,,\n500,0.8,0.7,14.6\n")
    assert "**the monitor warned at 1 of 2 checks** (first at step 500)" in _collapse_summary(metrics, 96, 16)
    assert "no sign of collapse (std above 0.05, effective rank above 8 at every check)" in _collapse_summary(
        metrics, 32, 16)


def test_the_report_states_the_studys_verdict_as_recorded_in_results():
    """Every interval the quickstart report quotes from the confirmatory study is the one in RESULTS.md."""
    import re
    from pathlib import Path

    from brainjepa.report.markdown import STUDY_VERDICT

    results = (Path(__file__).parents[1] / "benchmarks" / "RESULTS.md").read_text()
    quoted = re.findall(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", " ".join(STUDY_VERDICT.split()))
    assert len(quoted) == 6 and all(q in results for q in quoted)
    assert "**not met**" in STUDY_VERDICT


def test_findings_name_skipped_rows_undefined_scores_and_undefined_nulls():
    """A skipped row is said to be left out of the counts; a score that is NaN with 40 subjects is a flat result
    to check, not "too few subjects"; a null that is all NaN gives no verdict."""
    rng = np.random.default_rng(1)
    truth = np.tile(["down", "up"], 40)
    regulation = _task("connattractor/regulation", truth, {RND: rng.permutation(truth), FC: truth.copy()},
                       {RND: np.full(100, np.nan), FC: rng.normal(0.5, 0.04, 100)}, chance=0.5)
    regulation.rows[PRE] = RowResult(PRE, method="brainjepa", readout="ROI mean", reason="out of memory")
    value = rng.normal(size=80)
    rating = _task("connattractor/rating", value, {PRE: np.zeros(80), RND: value + rng.normal(0, 0.3, 80)},
                   {PRE: rng.normal(-0.3, 0.1, 100)}, chance=0.0)  # brainjepa predicts a constant: r undefined
    options = SuiteOptions(tasks=tuple(TASKS)[1:3], folds=5, seeds=1, bootstrap=200, random_init_seeds=(0,))
    text = findings(SuiteResult([regulation, rating], options), simulated=False)
    assert f"- {PRE}: skipped (out of memory); no score, so no comparison with it." in text
    assert f"Rows skipped, so left out of these counts: connattractor/regulation ({PRE})." in text
    assert "undefined on these predictions, e.g. constant ones" in text and "40 subject(s)" not in text
    assert f"{RND}: " in text and "its permutation null is undefined (NaN), so it is not called above chance" in text


@pytest.mark.parametrize(("p", "printed"), [(101 / 2001, "0.0505"), (0.05, "0.050"), (0.0123, "0.012"),
                                            (0.0499, "0.0499")])
def test_p_values_print_the_digits_their_verdict_needs(p, printed):
    from brainjepa.report.findings import p_text

    assert p_text(p) == printed


def test_the_study_paragraph_says_whether_this_run_is_its_recipe():
    from brainjepa.report.markdown import STUDY_STEPS, _study_line

    assert "This run used that recipe" in _study_line({"data": "connattractor", "steps": STUDY_STEPS})
    other = _study_line({"data": "simulated", "steps": 28})
    assert "**another setting** (simulated data, 28 steps)" in other and "used that recipe" not in other
    assert "does not beat" not in other and "no detectable" in other
