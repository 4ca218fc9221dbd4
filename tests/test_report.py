"""Findings are derived from the evaluation suite's paired differences, and the report carries them: checked on
constructed suite results whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brainjepa.evaluation.metrics import PairedDiff
from brainjepa.evaluation.suite import TASKS, SuiteOptions, SuiteResult, TaskResult
from brainjepa.report.findings import Comparison, best_fc, comparisons, findings
from brainjepa.report.markdown import write_report

PRE, RND, FC, TAN = "brainjepa", "random-init", "FC", "tangent"


# ------------------------------------------------------------------------------------- constructed suite results
SUBJECTS = np.repeat(np.arange(40), 2).astype(str)  # 40 subjects, 2 runs each


def _task(name: str, truth: np.ndarray, predictions: dict[str, np.ndarray], chance: float) -> TaskResult:
    """A finished task whose methods predicted the 80 runs as given (one CV seed)."""
    return TaskResult(TASKS[name], truth=truth, predictions={m: p[None] for m, p in predictions.items()},
                      subjects=SUBJECTS, units=np.array([f"run {i}" for i in range(len(truth))]), chance=chance,
                      n_runs=len(truth))


@pytest.fixture
def suite() -> SuiteResult:
    """condition: brainjepa right on all but 8 subjects' runs, random init guessing, FC identical to brainjepa,
    tangent always right. rating: brainjepa unrelated to the truth, random init and FC close to it, tangent
    partly. identification: skipped."""
    rng = np.random.default_rng(0)
    truth = np.tile(["down", "none", "up"], 27)[:80]
    wrong = np.isin(SUBJECTS, [str(s) for s in range(0, 40, 5)])
    pre = np.where(wrong, np.roll(truth, 1), truth)
    condition = _task("connattractor/condition", truth, {PRE: pre, RND: rng.permutation(truth), FC: pre.copy(),
                                                         TAN: truth.copy()}, chance=1 / 3)
    value = rng.normal(size=80)
    rating = _task("connattractor/rating", value, {PRE: rng.normal(size=80), RND: value + rng.normal(0, 0.3, 80),
                                                   FC: value + rng.normal(0, 0.1, 80),
                                                   TAN: value + rng.normal(0, 1.0, 80)}, chance=0.0)
    skipped = TaskResult(TASKS["connattractor/identification"], reason="connattractor data: offline")
    options = SuiteOptions(tasks=tuple(TASKS)[:3], folds=5, seeds=1, bootstrap=200)
    return SuiteResult([skipped, condition, rating], options)


def test_comparisons_are_the_suites_paired_differences(suite):
    condition, rating = suite.stats["connattractor/condition"], suite.stats["connattractor/rating"]
    found = comparisons("connattractor/condition", condition)
    assert [c.other for c in found] == [RND, FC, TAN]
    assert [c.diff for c in found] == list(condition.differences.values())  # not recomputed
    assert {c.other: c.direction for c in found} == {RND: "higher", FC: "same", TAN: "lower"}
    assert best_fc("connattractor/condition", condition).other == TAN
    assert best_fc("connattractor/rating", rating).other == FC
    assert {c.other: c.direction for c in comparisons("x", rating)} == {RND: "lower", FC: "lower", TAN: "lower"}


def _pair(low: float, high: float) -> Comparison:
    return Comparison("t", "x", PairedDiff((low + high) / 2, low, high, 10, 0.95))


def test_direction_reads_only_the_interval():
    assert _pair(0.01, 0.2).direction == "higher" and _pair(-0.2, -0.01).direction == "lower"
    assert _pair(-0.01, 0.2).direction == "same" and _pair(0.0, 0.0).direction == "same"
    assert Comparison("t", "x", PairedDiff(0.4, math.nan, math.nan, 1, 0.95)).direction == "unknown"


def test_findings_name_the_direction_chance_and_skips(suite):
    text = findings(suite, simulated=False)
    gain = suite.stats["connattractor/condition"].differences[RND]
    assert f"**{PRE} scores higher than {RND}**: balanced accuracy difference {gain.mean:+.3f} (95% CI " \
           f"{gain.low:+.3f} to {gain.high:+.3f}, 40 subjects)." in text
    assert f"{PRE} and {FC} do not differ detectably: balanced accuracy difference +0.000" in text
    assert f"**{PRE} scores lower than {TAN}**: balanced accuracy difference" in text
    assert f"**{PRE} scores lower than {RND}**: Pearson r difference" in text  # sign taken from the numbers
    assert f"- {TAN}: 1.000 (95% CI 1.000 to 1.000, 40 subjects), above chance (0.333)." in text
    assert "not distinguishable from r = 0" in text
    assert "Pretraining helped (brainjepa above random-init, interval excluding 0) on 1 of 2 tasks: " \
           "connattractor/condition. No detectable difference: none. brainjepa below random-init: " \
           "connattractor/rating." in text
    assert "on 0 of 2 tasks: none; below it on connattractor/condition (tangent), connattractor/rating (FC)." in text
    assert "connattractor/identification was skipped: connattractor data: offline" in text
    assert "simulated" not in text
    assert "simulated data" in findings(suite, simulated=True)


def test_findings_change_when_the_numbers_do(suite):
    condition = suite.results[1]
    condition.predictions[TAN] = condition.predictions[PRE].copy()  # tangent now exactly as good as brainjepa (and
    # as FC: of equal baselines the best is the first, FC)
    text = findings(suite, simulated=False)
    assert f"{PRE} and {TAN} do not differ detectably" in text
    assert "on 1 of 2 tasks: connattractor/condition (no detectable difference from FC); below it on " \
           "connattractor/rating (FC)." in text


# ------------------------------------------------------------------------------------------------ report.md
def _facts(data: str) -> dict:
    return {"data": data, "minutes": 1, "seed": 0, "torch": "x", "threads": 2, "total_minutes": 1.0,
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
    assert suite.to_markdown() in text and "![evaluation](evaluate/evaluate.png)" in text
    findings_text = text[text.index("## 7. Findings"):text.index("## 8. Time")]
    assert findings_text.strip().startswith("## 7. Findings\n\n" + findings(suite, simulated=data == "simulated"))
    assert ("simulated data" in text) == (data == "simulated")
    assert "| evaluation | 42 |" in text and "5 folds x\n1 seed(s)" in text
    assert "--folds 5 --seeds 1 --bootstrap 200 --random-init-seed 0" in text
