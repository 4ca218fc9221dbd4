"""Findings are derived from fold-level scores: paired differences with intervals, and the sentences built on them,
checked on constructed probe tables whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.metrics import CLASSIFICATION_METRICS, paired_difference, summarize
from brainjepa.evaluation.probe import ProbeResult, ProbeTable
from brainjepa.report.findings import compare_rows, findings
from brainjepa.report.markdown import write_report

PRE, RND, FC = "Brain-JEPA (pretrained)", "Brain-JEPA (random init)", "FC (Fisher z)"
T_975_DF2 = 4.302652729749464  # Student t quantile, 97.5%, 2 degrees of freedom


# ------------------------------------------------------------------------------------------- paired_difference
def test_paired_difference_t_interval():
    d = paired_difference([3.0, 5.0, 7.0], [2.0, 3.0, 4.0])  # differences 1, 2, 3: mean 2, sd 1
    half = T_975_DF2 / math.sqrt(3)
    assert (d.mean, d.n) == (2.0, 3)
    assert d.low == pytest.approx(2 - half) and d.high == pytest.approx(2 + half)
    assert not d.differs  # -0.48 .. 4.48 includes 0
    assert paired_difference([3.0, 5.0, 7.0], [2.0, 3.0, 4.0], confidence=0.5).differs


def test_overlap_correction_widens_the_interval():
    a, b = [0.7, 0.8, 0.75], [0.5, 0.6, 0.5]
    plain = paired_difference(a, b)
    corrected = paired_difference(a, b, test_train_ratio=0.25)
    assert corrected.mean == plain.mean
    ratio = (corrected.high - corrected.low) / (plain.high - plain.low)
    assert ratio == pytest.approx(math.sqrt((1 / 3 + 0.25) / (1 / 3)))


def test_paired_difference_edge_cases():
    same = paired_difference([0.5, 0.6], [0.5, 0.6])
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0) and not same.differs
    shift = paired_difference([0.6, 0.7], [0.5, 0.6])  # constant +0.1: a zero-width interval excluding 0
    assert shift.differs and shift.low == pytest.approx(0.1)
    nan = paired_difference([0.6, math.nan, 0.8, 0.9], [0.5, 0.5, math.nan, 0.7])  # NaN pairs left out
    assert nan.n == 2 and nan.mean == pytest.approx(0.15)
    one = paired_difference([0.9], [0.1])
    assert one.n == 1 and math.isnan(one.low) and not one.differs
    with pytest.raises(DataError, match="cannot be paired"):
        paired_difference([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match="confidence"):
        paired_difference([1.0, 2.0], [1.0, 2.0], confidence=95)


# --------------------------------------------------------------------------------------- constructed tables
def _result(scores: np.ndarray, seeds: int = 2) -> ProbeResult:
    """A classification ProbeResult whose balanced accuracy per (seed, fold) is `scores`."""
    folds = []
    for i, s in enumerate(scores):
        metrics = {m: float(s) for m in CLASSIFICATION_METRICS}
        folds.append({"seed": i % seeds, "fold": i // seeds, "n_train": 80, "n_test": 20, **metrics})
    return ProbeResult("classification", folds, summarize([{m: f[m] for m in CLASSIFICATION_METRICS}
                                                           for f in folds]), n_samples=100)


def _table(rows: dict[str, np.ndarray]) -> ProbeTable:
    return ProbeTable("group", "classification", {name: _result(s) for name, s in rows.items()})


@pytest.fixture
def table() -> ProbeTable:
    """Pretrained clearly above random init and chance, and equal to FC up to fold noise that averages out."""
    rng = np.random.default_rng(0)
    pre = 0.80 + rng.normal(0, 0.02, 10)
    jitter = np.tile([0.03, -0.03], 5)
    return _table({PRE: pre, RND: 0.50 + rng.normal(0, 0.02, 10), FC: pre + jitter})


def test_pairs_are_found_different_or_not(table):
    by_pair = {(c.first, c.second): c.diff for c in compare_rows(table, "balanced_acc")}
    assert list(by_pair) == [(PRE, RND), (PRE, FC), (RND, FC)]
    assert by_pair[PRE, RND].differs and by_pair[PRE, RND].mean > 0.2
    assert not by_pair[PRE, FC].differs and abs(by_pair[PRE, FC].mean) < 1e-12
    assert by_pair[RND, FC].differs and by_pair[RND, FC].mean < -0.2
    assert all(d.n == 10 for d in by_pair.values())


def test_findings_name_the_direction_and_chance(table):
    text = findings(table, chance=0.5, simulated=False)
    assert f"Rows that differ: {PRE} > {RND}; {FC} > {RND}." in text
    assert f"Rows with no detectable difference: {PRE} vs {FC}." in text
    assert f"**{PRE} scores higher than {RND}**" in text
    assert f"**{FC} scores higher than {RND}**" in text  # sign taken from the numbers, not the row order
    assert f"{PRE} and {FC} do not differ detectably" in text
    assert f"{PRE}: 0.8" in text and "above chance (0.500)" in text
    assert "not distinguishable from chance (0.500)" in text
    assert "simulated" not in text
    assert "simulated data" in findings(table, chance=0.5, simulated=True)


def test_findings_follow_the_numbers_when_they_change():
    rng = np.random.default_rng(1)
    rows = {PRE: 0.5 + rng.normal(0, 0.02, 10), RND: 0.5 + rng.normal(0, 0.02, 10), FC: 0.9 + rng.normal(0, 0.02, 10)}
    text = findings(_table(rows), chance=1 / 3, simulated=False)
    assert f"Rows that differ: {FC} > {PRE}; {FC} > {RND}." in text
    assert f"{PRE} and {RND} do not differ detectably" in text
    assert "above chance (0.333)" in text and "not distinguishable" not in text


def test_rows_on_other_folds_are_refused(table):
    table.results[FC].folds[0]["seed"] = 7
    with pytest.raises(DataError, match=r"'FC \(Fisher z\)' was scored on other \(seed, fold\) splits"):
        findings(table, chance=0.5, simulated=False)


# ------------------------------------------------------------------------------------------------ report.md
def _facts(data: str) -> dict:
    return {"data": data, "minutes": 1, "seed": 0, "torch": "x", "threads": 2, "total_minutes": 1.0,
            "runs": 20, "subjects": 10, "rois": 8, "atlas": "a", "frames_min": 160, "frames_max": 160, "tr": 2.0,
            "label": "group", "label_counts": {"a": 10, "b": 10}, "sample": None, "store": "s",
            "gradient_components": 3, "window": 160, "epochs": 2, "steps": 4, "seconds_per_step": 0.1,
            "precision": "fp32", "precision_reason": "auto: the CPU has no native bf16", "pretrain_minutes": 0.1}


@pytest.mark.parametrize("data", ["simulated", "connattractor"])
def test_report_carries_the_derived_findings(table, tmp_path, data):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("step,loss,target_std,target_rank\n0,1.0,0.5,4\n1,0.8,0.4,3.5\n")
    text = write_report(tmp_path, _facts(data), table, metrics_csv=metrics).read_text()
    assert "## 7. Findings" in text
    assert f"**{PRE} scores higher than {RND}**" in text and "chance (0.500)" in text
    assert ("simulated data" in text) == (data == "simulated")
    assert "too small to rank methods" not in text  # no pre-written verdict
