"""Findings are derived from the evaluation suite's nulls and paired differences, and the report carries them:
checked on constructed suite results whose answer is known."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

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


def _score_cells(table: str, tasks: list[str]) -> dict[tuple[str, str], str]:
    """(row, task) -> cell of the first (score) table of `suite_tables`."""
    lines = table.split("\n\n")[1].splitlines()
    cells = {}
    for line in lines[3:]:  # header, rule, nominal chance
        name, *values = [c.strip() for c in line.strip("|").split("|")]
        cells.update({(name, t): v for t, v in zip(tasks, values, strict=True)})
    return cells


def test_a_score_inside_its_null_is_not_above_chance_even_above_the_nulls_95th_percentile(suite: SuiteResult) -> None:
    """Above chance needs p <= 0.05 and the interval above the null mean: a score over the null's 95th percentile
    whose interval still reaches below the null mean is not called above chance, in the findings and the table."""
    regulation = suite.results[1]
    regulation.rows[PRE].null = np.full(100, 0.75)  # p = 1/101; the score's 0.8 interval reaches below 0.75
    stats = suite.stats["connattractor/regulation"]
    score, null = stats.scores[PRE], stats.nulls[PRE]
    assert score.mean > null.high and null.p_value <= 0.05 and score.low < null.mean
    assert not stats.above_chance(PRE)
    assert f"- {PRE}: 0.800 (" in findings(suite, simulated=False)
    assert "), not above chance: its null has mean 0.750" in findings(suite, simulated=False)
    cells = _score_cells(suite_tables(suite), ["connattractor/regulation", "connattractor/rating"])
    assert not cells[(PRE, "connattractor/regulation")].endswith("*")


def test_the_score_table_stars_exactly_the_rows_above_chance(suite: SuiteResult) -> None:
    """`*` marks a score that clears its permutation null, and only those: a row with a null it does not clear,
    or without a null, has no star."""
    tasks = ["connattractor/regulation", "connattractor/rating"]
    cells = _score_cells(suite_tables(suite), tasks)
    for task in tasks:
        stats = suite.stats[task]
        for row in stats.scores:
            assert cells[(row, task)].endswith("*") == stats.above_chance(row), (row, task)
    assert any(c.endswith("*") for c in cells.values()) and not all(c.endswith("*") for c in cells.values())


def test_a_skipped_baseline_is_no_party_to_a_comparison(suite: SuiteResult) -> None:
    """A baseline row that could not be computed (e.g. no event files) drops out of the fixed comparisons; the
    others are still made."""
    regulation = suite.results[1]
    regulation.rows[FC] = RowResult(FC, method=FC, reason="no events")
    stats = suite.stats["connattractor/regulation"]
    assert list(stats.pairs.values()) == [(PRE, RND)]
    assert f"- {FC}: skipped (no events); no score, so no comparison with it." in findings(suite, simulated=False)


def test_statistics_are_kept_for_the_tasks_that_ran_only(suite: SuiteResult) -> None:
    """`SuiteResult.stats` has the tasks that ran; a skipped task has a reason, not an empty set of statistics."""
    assert set(suite.stats) == {r.task.name for r in suite.results if not r.skipped}
    assert any(r.skipped for r in suite.results)


def test_the_caption_calls_the_bootstrap_two_level_only_with_several_model_seeds(suite: SuiteResult) -> None:
    """Intervals resample model seeds only where a row has several; with one pretrained model and one random-init
    seed the caption says the intervals cover subjects, not seeds."""
    assert "every row has one model seed, so intervals cover subjects, not seeds" in suite.method_note()
    assert "two-level" not in suite.method_note()
    several = SuiteResult(suite.results, dataclasses.replace(suite.options, random_init_seeds=(0, 1)))
    assert "(random-init: 2 seeds) also resample their seeds (two-level bootstrap)" in several.method_note()


def test_the_long_table_carries_each_rows_null_and_p_value(suite: SuiteResult) -> None:
    """evaluate.csv's null columns are the row's permutation null (mean, 95th percentile, p-value); a row without a
    null has none."""
    table = suite.to_frame()
    scores = table[(table["type"] == "score") & (table["status"] == "done")]
    assert len(scores) == 8
    for row in scores.itertuples():
        null = suite.stats[row.task].nulls.get(row.row)
        got = (row.null_mean, row.null_high, row.p_value)
        if null is None:
            assert all(math.isnan(v) for v in got)
        else:
            assert got == pytest.approx((null.mean, null.high, null.p_value)) and 0 < row.p_value <= 1


def test_identification_pair_accuracies_are_averaged_over_model_seeds(suite: SuiteResult) -> None:
    """A row with several model seeds reports each session pair's accuracy as the mean over its seeds, in the long
    table and in the per-pair table."""
    subjects = np.array([f"{s:02d}" for s in range(10)] * 2)
    matched = np.stack([subjects, np.roll(subjects, 1)])[:, None]  # [2 model seeds, 1, 20 queries]
    row = RowResult(PRE, method="brainjepa", readout="ROI mean", seeds=2, predictions=matched,
                    by_pair={"01->03": [1.0, 0.25], "03->01": [0.5, 0.0]})
    ident = TaskResult(TASKS["connattractor/identification"], truth=subjects, rows={PRE: row}, subjects=subjects,
                       units=np.repeat(["01->03", "03->01"], 10), chance=0.1, n_runs=20, scheme="x",
                       permutations=100)
    result = SuiteResult([ident], suite.options)
    pairs = result.to_frame().query("type == 'pair'").set_index("reason")
    assert pairs.loc["01->03", "mean"] == pytest.approx(0.625) and pairs.loc["03->01", "mean"] == pytest.approx(0.25)
    assert (pairs["seeds"] == 2).all()
    assert f"| {PRE} | 0.625 | 0.250 |" in suite_tables(result)


def _one_subject_suite(options: SuiteOptions) -> SuiteResult:
    """Regulation on four runs of a single subject: no interval can be bootstrapped."""
    truth = np.tile(["down", "up"], 2)
    rows = {name: RowResult(name, method=name.partition(", ")[0], readout=name.partition(", ")[2],
                            predictions=pred[None, None], null=np.full(100, 0.5))
            for name, pred in ((PRE, truth.copy()), (RND, truth[::-1].copy()))}
    task = TaskResult(TASKS["connattractor/regulation"], truth=truth, rows=rows, subjects=np.full(4, "00"),
                      units=np.array(["03", "07"] * 2), chance=0.5, n_runs=4, scheme="x", permutations=100)
    return SuiteResult([task], options)


def test_a_task_without_intervals_says_why_in_the_findings_and_prints_no_nan(suite: SuiteResult) -> None:
    """With one subject nothing can be resampled: the findings say so row by row and in the summary, and the
    table shows the score without a '[nan, nan]' interval."""
    result = _one_subject_suite(suite.options)
    score = result.stats["connattractor/regulation"].scores[PRE]
    assert math.isnan(score.low) and score.n == 1
    text = findings(result, simulated=False)
    assert f"- {PRE}: 1.000 (no interval: 1 subject(s)); not called above chance." in text
    assert "- No interval (too few subjects, or a score undefined on the predictions): connattractor/regulation." \
        in text
    table = suite_tables(result)
    assert "nan" not in table and f"| {PRE} | 1.000 |" in table


@pytest.mark.parametrize("p", [0.05004, 0.04996])
def test_p_values_within_a_hair_of_alpha_print_enough_digits_to_tell(p: float) -> None:
    """A p-value that differs from 0.05 only in the fifth decimal prints that decimal, so the printed p agrees with
    the verdict that compares it with 0.05."""
    from brainjepa.report.findings import p_text

    assert p_text(p) == f"{p:.5f}" and float(p_text(p)) != 0.05


def test_the_score_table_lists_rows_in_the_suites_order(suite: SuiteResult) -> None:
    """Rows appear as the suite produced them (encoders, then baselines), not alphabetically."""
    cells = _score_cells(suite_tables(suite), ["connattractor/regulation", "connattractor/rating"])
    names = list(dict.fromkeys(name for name, _ in cells))
    assert names == list(suite.results[1].rows)


def test_the_tables_flag_a_confounded_task_and_name_skipped_cells(suite: SuiteResult) -> None:
    """A confounded task is marked in the column header; a row skipped on a task reads 'skipped' there, while a
    row the task does not have reads '–'."""
    regulation = suite.results[1]
    condition = dataclasses.replace(regulation, task=TASKS["connattractor/condition"],
                                    rows={k: v for k, v in regulation.rows.items() if k != "tangent"})
    condition.rows[FC] = RowResult(FC, method=FC, reason="no events")
    result = SuiteResult([regulation, condition], suite.options)
    table = suite_tables(result)
    assert "| row | connattractor/regulation | connattractor/condition (confounded) |" in table
    cells = _score_cells(table, ["connattractor/regulation", "connattractor/condition"])
    assert cells[(FC, "connattractor/condition")] == "skipped" and cells[("tangent", "connattractor/condition")] == "–"


def test_a_skipped_task_does_not_stop_the_figure_of_those_that_ran(suite: SuiteResult, tmp_path: Path) -> None:
    """evaluate.png is drawn whenever some task ran; only a suite where every task was skipped has no figure."""
    from brainjepa.report.tables import save_suite

    assert suite.results[0].skipped
    paths = save_suite(suite, tmp_path)
    assert tmp_path / "evaluate.png" in paths and (tmp_path / "evaluate.png").stat().st_size > 0


def test_the_study_verdict_applies_only_to_its_own_recipe() -> None:
    """The study's verdict is this run's only with the study's data and budget both; either one changed makes
    it another setting."""
    from brainjepa.report.markdown import STUDY_STEPS, _study_line

    for data, steps in (("connattractor", STUDY_STEPS + 1), ("simulated", STUDY_STEPS)):
        line = _study_line({"data": data, "steps": steps})
        assert f"**another setting** ({data} data, {steps} steps)" in line and "used that recipe" not in line


def test_the_reproduce_command_passes_the_stores_and_cache_the_suite_used() -> None:
    """report.md's `brainjepa evaluate` command reruns the suite on the same data: its given stores and sample
    cache are on the command line."""
    from brainjepa.evaluation.suite import SuiteOptions
    from brainjepa.report.markdown import _evaluate_command

    options = SuiteOptions(tasks=("connattractor/regulation", "simulation/group"), stores={"simulation": "/d/sim"},
                           cache="/d/cache", random_init_seeds=(0,))
    command = _evaluate_command(SuiteResult([], options), Path("/q"))
    assert "--store simulation=/d/sim" in command and "--cache /d/cache" in command
    assert "--tasks connattractor/regulation simulation/group" in command


def test_the_suite_figure_draws_each_rows_score_null_and_chance(suite: SuiteResult, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                request: pytest.FixtureRequest) -> None:
    """Per finished task: each row's score (filled where it clears its null), the null's mean to 95th percentile as
    a grey bar, and the task's chance level as the one dashed line."""
    from matplotlib.colors import same_color

    from brainjepa.report import figures

    kept: list = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: kept.append(fig) or out)
    figures.suite_figure(suite, tmp_path / "evaluate.png")
    import matplotlib.pyplot as plt

    (fig,) = kept
    request.addfinalizer(lambda: plt.close(fig))
    done = [r for r in suite.results if not r.skipped]
    assert len(fig.axes) == len(done) == 2
    filled = []
    for ax, res in zip(fig.axes, done, strict=True):
        st = suite.stats[res.task.name]
        assert ax.get_title() == res.task.name
        assert [list(line.get_ydata()) for line in ax.lines if line.get_linestyle() == "--"] == [[res.chance] * 2]
        bars = [list(line.get_ydata()) for line in ax.lines if line.get_color() == "0.75"]
        assert bars == [[st.nulls[row].mean, st.nulls[row].high] for row in st.scores if row in st.nulls]
        dots = [container.lines[0] for container in ax.containers]
        assert [dot.get_ydata()[0] for dot in dots] == [score.mean for score in st.scores.values()]
        for dot, row in zip(dots, st.scores, strict=True):
            filled.append(bool(same_color(dot.get_markerfacecolor(), "k")))
            assert filled[-1] is st.above_chance(row)
    assert any(filled) and not all(filled)


def test_one_named_model_is_one_model_seed_in_the_caption(suite: SuiteResult) -> None:
    """A suite of one pretrained model has one brainjepa seed: the caption does not call its intervals two-level;
    two models are two seeds of the brainjepa rows."""
    one = SuiteResult(suite.results, suite.options, models=["brainjepa-small"])
    assert "every row has one model seed" in one.method_note()
    two = SuiteResult(suite.results, suite.options, models=["a", "b"])
    assert "(brainjepa: 2 seeds) also resample their seeds" in two.method_note()


def test_the_units_table_labels_each_prediction_with_its_model_seed_seed_and_unit(suite: SuiteResult) -> None:
    """evaluate_units.csv: prediction [model seed m, CV seed s, unit n] sits on the line that names m, s and unit
    n's subject, so every score can be recomputed from it."""
    m, s, n = 2, 3, 4
    pred = (100 * np.arange(m)[:, None, None] + 10 * np.arange(s)[None, :, None] + np.arange(n)).astype(float)
    row = RowResult(PRE, method="brainjepa", readout="ROI mean", seeds=m, predictions=pred)
    task = TaskResult(TASKS["connattractor/rating"], truth=np.arange(n) * 1.0, rows={PRE: row},
                      subjects=np.array(["s0", "s1", "s2", "s3"]), units=np.array(["u0", "u1", "u2", "u3"]),
                      chance=0.0, n_runs=n)
    units = SuiteResult([task], suite.options).unit_frame()
    assert len(units) == m * s * n
    position = units["subject"].str[1:].astype(int)
    assert (units["unit"] == "u" + position.astype(str)).all() and (units["truth"] == position).all()
    assert (units["prediction"] == 100 * units["model_seed"] + 10 * units["seed"] + position).all()


def test_a_skipped_rows_numeric_cells_are_nan_not_text(suite: SuiteResult) -> None:
    """evaluate.csv keeps its numeric columns numeric: a skipped task's or row's mean, interval, chance, null and
    p-value cells are NaN (empty text would turn the column into strings)."""
    table = suite.to_frame()
    skipped = table[table["status"] == "skipped"]
    assert len(skipped)
    for column in ("mean", "ci_low", "ci_high", "chance", "null_mean", "null_high", "p_value"):
        assert skipped[column].isna().all(), column
    assert table["p_value"].map(lambda v: isinstance(v, float)).all()


def test_a_score_rows_note_is_its_reason(suite: SuiteResult) -> None:
    """What a reader must know about a row (its note) is printed beside its score in the long table."""
    suite.results[1].rows[PRE].note = "centred within subject"
    table = suite.to_frame()
    line = table[(table["task"] == "connattractor/regulation") & (table["row"] == PRE) & (table["type"] == "score")]
    assert line["reason"].tolist() == ["centred within subject"]


def test_the_suites_model_names_leave_out_models_given_as_objects(suite: SuiteResult) -> None:
    """A model given as an object has no name (""): the comma-separated list names only the others."""
    assert SuiteResult(suite.results, suite.options, models=["", "brainjepa-small", ""]).model == "brainjepa-small"
