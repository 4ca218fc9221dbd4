"""`brainjepa evaluate`: the suite end to end on a tiny model (simulated tasks plus a small connattractor-like
store built here): every row on the same units, every interval recomputable from the saved predictions, a null per
row, skipped tasks and rows with their reasons, several models and random-init seeds, the subject split."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from brainjepa import BrainJEPA, model_config
from brainjepa.cli import main
from brainjepa.data import samples
from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.feature_sets import FeatureSet, Windows
from brainjepa.evaluation.metrics import bootstrap_interval, paired_bootstrap
from brainjepa.evaluation.nulls import Null
from brainjepa.evaluation.results import COLUMNS
from brainjepa.evaluation.suite import DEFAULT_TASKS, TASKS, SuiteOptions, evaluate
from brainjepa.evaluation.tasks import default_tasks
from conftest import cli_call
from local_http import closed_port_url

R, T = 10, 32
CONDITIONS = ("none", "up", "down")
ENCODER_ROWS = [f"{m}, {r}" for m in ("brainjepa", "random-init") for r in ("ROI mean", "token FC")]
ROWS = [*ENCODER_ROWS, "patch embedding, ROI mean", "patch embedding, token FC", "raw window", "GLM", "FC",
        "FC, whole run", "tangent"]


def fake_connattractor(path, subjects: int = 9, rois: int = R, frames: int = 40):
    """Three runs per subject (01 none, 03 up, 07 down) mixed by a subject-specific matrix, so each subject's
    FC is its own; the rating is higher for 'up' runs."""
    rng = np.random.default_rng(0)
    with StoreWriter(path, rois) as writer:
        for s in range(subjects):
            mix = rng.normal(size=(rois, rois))
            for run, condition in zip(("01", "03", "07"), CONDITIONS, strict=True):
                ts = mix @ rng.normal(size=(rois, frames))
                rating = float(50 + 20 * (condition == "up") - 20 * (condition == "down") + rng.normal(0, 5))
                writer.add(ts.astype(np.float32), subject=f"{s:02d}", run=run, tr=2.0,
                           phenotypes={"condition": condition, "mean_rating": rating})
    return path


def _model(path, seed: int):
    cfg = model_config("vit_tiny", num_rois=R, num_frames=T, embed_dim=16, depth=2, num_heads=2, pred_embed_dim=8,
                       pred_depth=1, gradient_dim=3)
    torch.manual_seed(seed)  # not a random-init seed (0, 1, 2), so the encoder rows differ
    BrainJEPA(cfg, gradient=torch.randn(R, 3)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return _model(tmp_path_factory.mktemp("model") / "m", seed=11)


@pytest.fixture(scope="module")
def connattractor(tmp_path_factory):
    return fake_connattractor(tmp_path_factory.mktemp("ca") / "store")


def _predictions(units: pd.DataFrame, task: str, row: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth [N], predictions [model seeds, CV seeds, N], subjects [N]) of one row, from evaluate_units.csv."""
    rows = units[(units["task"] == task) & (units["row"] == row)].sort_values(["model_seed", "seed", "subject",
                                                                              "unit"])
    m, s = rows["model_seed"].nunique(), rows["seed"].nunique()
    first = rows[(rows["model_seed"] == 0) & (rows["seed"] == 0)]
    truth, pred = first["truth"].to_numpy(), rows["prediction"].to_numpy().reshape(m, s, -1)
    if TASKS[task].kind == "regression":
        truth, pred = truth.astype(float), pred.astype(float)
    return truth, pred, first["subject"].to_numpy()


def test_evaluate_cli_end_to_end(model_dir, connattractor, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(model_dir), "--out", str(out), "--folds", "3", "--seeds", "2",
                 "--sim-subjects", "15", "--store", f"connattractor={connattractor}", "--bootstrap", "300",
                 "--permutations", "100", "--random-init-seeds", "0", "1", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "evaluate.csv", keep_default_na=False, na_values=[""])
    assert tuple(table.columns) == COLUMNS
    assert list(dict.fromkeys(table["task"])) == list(DEFAULT_TASKS)
    assert "connattractor/condition" not in DEFAULT_TASKS and TASKS["connattractor/condition"].confound
    scores = table[table["type"] == "score"]
    for task in DEFAULT_TASKS:
        assert scores[scores["task"] == task]["row"].tolist() == ROWS
    # No event files for these stores: the GLM row says why, every other row ran.
    glm = scores[scores["row"] == "GLM"]
    assert set(glm["status"]) == {"skipped"} and glm["reason"].str.contains("not prepared from a sample").all()
    done = scores[scores["status"] == "done"]
    assert set(done["row"]) == set(ROWS) - {"GLM"}
    assert (done[done["row"].str.startswith("random-init")]["seeds"] == 2).all()
    assert (done[~done["row"].str.startswith("random-init")]["seeds"] == 1).all()
    ident = done[done["task"] == "connattractor/identification"].set_index("row")
    assert ident.loc["FC, whole run", "mean"] > 0.8 and ident.loc["FC", "chance"] == pytest.approx(1 / 9)
    pairs = table[(table["type"] == "pair") & (table["row"] == "FC, whole run")]
    assert sorted(pairs["reason"]) == ["01->03", "01->07", "03->01", "03->07", "07->01", "07->03"]
    assert (table[table["status"] == "done"]["units"] == "subject").all()
    regulation = done[done["task"] == "connattractor/regulation"]
    assert (regulation["chance"] == 0.5).all() and (regulation["n_runs"] == 18).all()
    assert ((done["ci_low"] >= 0) & (done["ci_high"] <= 1))[done["metric"] != "pearson_r"].all()
    diffs = table[table["type"] == "difference"]
    assert set(diffs["row"]) == {"brainjepa, ROI mean - random-init, ROI mean", "brainjepa, ROI mean - FC",
                                 "brainjepa, token FC - random-init, token FC", "brainjepa, token FC - FC"}

    # Every score and difference is the (two-level) bootstrap of the predictions saved beside the table, and every
    # "above chance" is the row's null read against its interval.
    units = pd.read_csv(out / "evaluate_units.csv", dtype={"subject": str, "truth": str, "prediction": str})
    reg = units[(units["task"] == "connattractor/regulation") & (units["row"] == "random-init, token FC")]
    assert len(reg) == 2 * 2 * 18 and set(reg["unit"]) == {"03", "07"} and set(reg["truth"]) == {"up", "down"}
    rating = units[(units["task"] == "connattractor/rating") & (units["row"] == "FC") & (units["seed"] == 0)]
    assert rating.groupby("subject")["truth"].apply(lambda t: t.astype(float).sum()).abs().max() < 1e-9
    for row in table[table["status"] == "done"].itertuples():
        if row.type == "score":
            truth, pred, subjects = _predictions(units, row.task, row.row)
            d = bootstrap_interval(truth, pred, subjects, row.metric, n_boot=300)
            assert np.isfinite(row.null_mean) and row.null_mean < row.null_high
            assert row.above_chance == (row.mean > row.null_high and row.ci_low > row.null_mean)
        elif row.type == "difference":
            a, b = row.row.split(" - ")
            truth, pred_a, subjects = _predictions(units, row.task, a)
            d = paired_bootstrap(truth, pred_a, _predictions(units, row.task, b)[1], subjects, row.metric, n_boot=300)
        else:
            continue
        assert (row.mean, row.ci_low, row.ci_high, row.n_units) == pytest.approx((d.mean, d.low, d.high, d.n))
    md = (out / "evaluate.md").read_text()
    assert "| row | connattractor/identification | connattractor/regulation | connattractor/rating |" in md
    n_intervals = int((table["type"].isin(["score", "difference"]) & (table["status"] == "done")).sum())
    assert f"These tables show {n_intervals} intervals, none corrected for the others" in md
    assert "subject-level bootstrap (300 resamples of subjects" in md and "100 label permutations" in printed
    assert "| FC, whole run |" in printed and "connattractor/identification by session pair" in printed
    assert (out / "evaluate.png").stat().st_size > 0
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_several_models_are_seeds_of_one_row(model_dir, connattractor, tmp_path):
    other = _model(tmp_path / "m2", seed=12)
    options = SuiteOptions(tasks=("connattractor/identification", "connattractor/regulation"), folds=3, seeds=1,
                           random_init_seeds=(0,), bootstrap=200, permutations=100,
                           stores={"connattractor": connattractor})
    result = evaluate([model_dir, other], None, options, progress=False)
    assert result.models == [str(model_dir), str(other)]
    for res in result.results:
        stats = result.stats[res.task.name]
        assert res.rows["brainjepa, token FC"].predictions.shape[0] == 2
        assert stats.scores["brainjepa, token FC"].seeds == 2 and stats.scores["random-init, token FC"].seeds == 1
    with pytest.raises(ConfigError, match="differ in architecture"):
        small = BrainJEPA(model_config("vit_tiny", num_rois=R, num_frames=T, embed_dim=8, depth=1, num_heads=2,
                                       pred_embed_dim=8, pred_depth=1, gradient_dim=3), gradient=torch.randn(R, 3))
        evaluate([model_dir, small], None, options, progress=False)


def test_the_selection_and_report_splits_hold_disjoint_halves(model_dir, connattractor):
    subjects = {}
    for split in ("selection", "report"):
        options = SuiteOptions(tasks=("connattractor/identification",), split=split, random_init_seeds=(0,),
                               bootstrap=100, permutations=100, stores={"connattractor": connattractor})
        (res,) = evaluate(model_dir, None, options, progress=False).results
        subjects[split] = set(res.subjects)
        assert res.chance == pytest.approx(1 / len(subjects[split]))
    assert not subjects["selection"] & subjects["report"]
    assert subjects["selection"] | subjects["report"] == {f"{s:02d}" for s in range(9)}


def _sample_with_events(store: RunStore, cache: Path) -> Path:
    """Mark `store` as prepared from the connattractor sample and give each run an events file (heat and rating
    blocks) in the sample's cache; returns the events folder."""
    store.set_metadata("sample", {"name": "connattractor"})
    events = cache / "connattractor" / "events"
    events.mkdir(parents=True)
    table = pd.DataFrame({"onset_run": [4.0, 20.0, 40.0, 56.0], "duration": [6.0, 5.0, 6.0, 5.0],
                          "trial_type": ["heat", "rating", "heat", "rating"]})
    for s, r in zip(store.manifest["subject"], store.manifest["run"], strict=True):
        table.to_csv(events / f"sub-{s}_run-{r}_events.tsv", sep="\t", index=False)
    return events


def test_glm_rows_read_the_samples_event_files(model_dir, tmp_path):
    """A store prepared from a sample finds its runs' events in the sample cache; the GLM row then runs."""
    store_path = fake_connattractor(tmp_path / "store")
    events = _sample_with_events(RunStore(store_path), tmp_path / "cache")
    options = SuiteOptions(tasks=("connattractor/regulation",), folds=3, seeds=1, random_init_seeds=(0,),
                           bootstrap=100, permutations=100, stores={"connattractor": store_path},
                           cache=tmp_path / "cache")
    (res,) = evaluate(model_dir, None, options, progress=False).results
    assert not res.rows["GLM"].skipped and res.rows["GLM"].predictions.shape == (1, 1, 18)
    (events / "sub-00_run-03_events.tsv").unlink()
    (res,) = evaluate(model_dir, None, options, progress=False).results
    assert res.rows["GLM"].skipped and "sub-00_run-03_events.tsv" in res.rows["GLM"].reason


def test_evaluate_skips_tasks_with_reasons(model_dir, tmp_path, capsys):
    other = fake_connattractor(tmp_path / "ca8", subjects=4, rois=8)
    code = main(["evaluate", "--model", str(model_dir), "--out", str(tmp_path / "eval"), "--folds", "2", "--seeds",
                 "1", "--sim-subjects", "8", "--store", f"connattractor={other}", "--tasks",
                 "connattractor/regulation", "simulation/group", "--random-init-seeds", "0", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"skipped connattractor/regulation: connattractor data: {other}: store has 8 ROIs but the model expects " \
           "10" in printed
    table = pd.read_csv(tmp_path / "eval" / "evaluate.csv", keep_default_na=False)
    skipped = table[table["type"] == "skipped"]
    assert skipped["task"].tolist() == ["connattractor/regulation"] and "has 8" in skipped["reason"].iloc[0]
    assert set(table[table["status"] == "done"]["task"]) == {"simulation/group"}
    assert f"skipped: connattractor data: {other}: store has 8 ROIs but the model expects 10" in (
        tmp_path / "eval" / "evaluate.md").read_text()


def test_evaluate_without_matplotlib_writes_the_tables_and_says_why_there_is_no_figure(model_dir, tmp_path,
                                                                                      monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the [viz] extra were not installed
    code = main(["evaluate", "--model", str(model_dir), "--out", str(tmp_path / "eval"), "--folds", "2", "--seeds",
                 "1", "--sim-subjects", "8", "--tasks", "simulation/group", "--random-init-seeds", "0",
                 "--no-progress"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "eval").iterdir() if p.is_file()) == [
        "evaluate.csv", "evaluate.md", "evaluate_units.csv"]
    (line,) = [r.getMessage() for r in caplog.records if "evaluate.png" in r.getMessage()]
    assert line == ("evaluate.png not drawn: needs the [viz] extra (matplotlib not installed): "
                    "pip install 'brainjepa[viz]'")


def test_evaluate_skips_a_task_whose_labels_cross_validation_cannot_learn(model_dir, tmp_path):
    """'down' from one subject only: the fold testing that subject would train on 'up' alone, so the suite skips
    the task with the probe's own reason instead of scoring it."""
    rng = np.random.default_rng(1)
    with StoreWriter(tmp_path / "lonely", R) as writer:
        for s in range(6):
            for run in ("03", "07"):
                condition = "down" if (s, run) == (0, "07") else "up"
                writer.add(rng.normal(size=(R, 40)).astype(np.float32), subject=f"{s:02d}", run=run, tr=2.0,
                           phenotypes={"condition": condition, "mean_rating": 50.0})
    options = SuiteOptions(tasks=("connattractor/regulation",), stores={"connattractor": tmp_path / "lonely"},
                           folds=2, seeds=1, random_init_seeds=(0,), permutations=100)
    (result,) = evaluate(model_dir, None, options, progress=False).results
    assert result.skipped and "class 'down' comes from one group only (00)" in result.reason
    assert "connattractor/regulation: labels of" in result.reason


def test_evaluate_skips_runs_shorter_than_the_window(model_dir, tmp_path):
    short = fake_connattractor(tmp_path / "short", subjects=3, frames=T - 8)
    options = SuiteOptions(tasks=("connattractor/identification",), stores={"connattractor": short})
    (result,) = evaluate(model_dir, None, options, progress=False).results
    assert result.skipped and f"run has {T - 8} frames but a {T}-frame window" in result.reason


def test_evaluate_skips_the_sample_when_it_cannot_be_downloaded(model_dir, tmp_path, monkeypatch):
    sample = dataclasses.replace(samples.SAMPLES["connattractor"], url=f"{closed_port_url()}/connattractor.whl")
    monkeypatch.setitem(samples.SAMPLES, "connattractor", sample)  # no network: a port nobody listens on
    options = SuiteOptions(tasks=("connattractor/identification",), cache=tmp_path / "cache")
    result = evaluate(model_dir, tmp_path / "eval", options, progress=False)
    (only,) = result.results
    assert only.skipped and "could not download http://127.0.0.1:" in only.reason
    table = pd.read_csv(tmp_path / "eval" / "evaluate.csv")
    assert table["status"].tolist() == ["skipped"] and not (tmp_path / "eval" / "evaluate.png").exists()


@pytest.mark.parametrize("pooling", ["tokens", "roi"])
def test_evaluate_attentive_head_reads_its_pooling(model_dir, monkeypatch, pooling):
    from brainjepa.evaluation.attentive import AttentiveConfig, AttentiveProbe
    from brainjepa.evaluation.feature_sets import READOUT_NAMES

    shapes = []
    fit = AttentiveProbe.fit

    def spy(self, x, y, groups=None):
        shapes.append(np.shape(x))
        return fit(self, x, y, groups)

    monkeypatch.setattr(AttentiveProbe, "fit", spy)
    options = SuiteOptions(tasks=("simulation/group",), folds=2, seeds=1, sim_subjects=8, head="attentive",
                           pooling=pooling, attentive=AttentiveConfig(epochs=3), random_init_seeds=(0,),
                           permutations=100)
    result = evaluate(model_dir, None, options, progress=False)
    (res,) = result.results
    name = f"brainjepa, {READOUT_NAMES[pooling]}"
    assert res.rows["FC"].predictions.shape == (1, 1, 8) and res.rows[name].null is None
    # brainjepa, random-init and patch embedding: 2 folds each, all on the attentive head (the ROI means too, not
    # a ridge on them); the other baselines stay linear
    sets = R * (T // 16) if pooling == "tokens" else R
    assert shapes == [(4, sets, 16)] * 6
    stats = result.stats["simulation/group"]
    assert name not in stats.nulls and not stats.above_chance(name)
    row = result.to_frame().set_index("row").loc[name]
    assert "no permutation null (attentive head)" in row["reason"] and not row["above_chance"]


def test_the_suite_decides_classes_balanced_and_values_as_predicted(model_dir, monkeypatch):
    from brainjepa.evaluation.ridge import RidgeCV

    calls = []
    predict = RidgeCV.predict

    def spy(self, targets, **kwargs):
        calls.append((targets.shape[-1], kwargs.get("balanced", False)))
        return predict(self, targets, **kwargs)

    monkeypatch.setattr(RidgeCV, "predict", spy)
    options = SuiteOptions(tasks=("simulation/group", "simulation/coupling"), folds=2, seeds=1, sim_subjects=8,
                           random_init_seeds=(0,), permutations=100)
    evaluate(model_dir, None, options, progress=False)
    assert {(2, True), (1, False)} == set(calls)


def test_a_rows_null_scores_each_permuted_fit_against_its_permuted_labels(model_dir, monkeypatch):
    """Each permutation's refit predicts the permuted labels it was fitted to, and is scored against them: a row's
    null is score_many(metric, y[perm], predictions of the permuted fits), recomputed here from the predictions
    the suite scored (scored against the true labels, the null would not be a null)."""
    from brainjepa.evaluation import nulls, suite

    drawn, scored = [], []

    def permutations(*args, **kwargs):
        drawn.append(nulls.permutations(*args, **kwargs))
        return drawn[-1]

    def score_many(metric, truth, pred):
        scored.append((metric, pred))
        return nulls.score_many(metric, truth, pred)

    monkeypatch.setattr(suite, "permutations", permutations)
    monkeypatch.setattr(suite, "score_many", score_many)
    options = SuiteOptions(tasks=("simulation/group",), folds=2, seeds=1, sim_subjects=8, random_init_seeds=(0,),
                           permutations=100)
    (res,) = evaluate(model_dir, None, options, progress=False).results
    (perms,) = drawn
    truth = np.asarray(res.truth)[perms]
    assert not (truth == np.asarray(res.truth)).all(1).all()  # the permutations move labels
    expected = [nulls.score_many(metric, truth, pred) for metric, pred in scored]
    nulls_of_rows = [row.null for row in res.rows.values() if row.null is not None]
    assert len(nulls_of_rows) == len(scored) > 0  # one model seed per row: one scored fit set per row
    for null, value in zip(nulls_of_rows, expected, strict=True):
        np.testing.assert_allclose(null, value)


def test_attentive_head_runs_the_within_subject_rating_on_centred_token_sets(model_dir, connattractor,
                                                                              monkeypatch):
    from brainjepa.evaluation.attentive import AttentiveConfig, AttentiveProbe

    seen = []
    fit = AttentiveProbe.fit

    def spy(self, x, y, groups=None):
        seen.append((np.asarray(x), np.asarray(groups)))
        return fit(self, x, y, groups)

    monkeypatch.setattr(AttentiveProbe, "fit", spy)
    options = SuiteOptions(tasks=("connattractor/rating",), folds=2, seeds=1, head="attentive", pooling="roi",
                           attentive=AttentiveConfig(epochs=2), random_init_seeds=(0,), permutations=100,
                           stores={"connattractor": str(connattractor)})
    (res,) = evaluate(model_dir, None, options, progress=False).results
    assert not res.skipped and res.rows["brainjepa, ROI mean"].predictions.shape == (1, 1, 27)
    assert seen and all(x.shape[1:] == (R, 16) for x, _ in seen)  # [runs, ROI set, D], not flattened
    for x, groups in seen:  # centred within subject: a subject's runs sum to zero, token by token
        assert max(np.abs(x[groups == g].sum(0)).max() for g in np.unique(groups)) < 1e-4


def test_suite_options_refusals_and_defaults():
    with pytest.raises(ConfigError, match=r"unknown evaluation tasks \['ukb/sex'\]"):
        SuiteOptions(tasks=("ukb/sex",))
    with pytest.raises(ConfigError, match="attentive probe: pooling must be 'tokens' or 'roi', got 'mean'"):
        SuiteOptions(head="attentive", pooling="mean")
    with pytest.raises(ConfigError, match=r"--store names \['hcp'\]"):
        SuiteOptions(stores={"hcp": "x"})
    with pytest.raises(ConfigError, match="evaluate.folds must be an integer >= 2, got 1"):
        SuiteOptions(folds=1)
    with pytest.raises(ConfigError, match="evaluate.bootstrap must be an integer >= 100, got 50"):
        SuiteOptions(bootstrap=50)
    with pytest.raises(ConfigError, match="evaluate.permutations must be an integer >= 100, got 20"):
        SuiteOptions(permutations=20)
    with pytest.raises(ConfigError, match="random_init_seeds must be distinct integers"):
        SuiteOptions(random_init_seeds=(1, 1))
    assert SuiteOptions(head="attentive").encoder_poolings == ("tokens",)
    assert SuiteOptions().encoder_poolings == ("roi", "tokenfc") and SuiteOptions(pooling="mean").pooling == ("mean",)
    assert SuiteOptions().random_init_seeds == (0, 1, 2)
    assert SuiteOptions(random_init_seed=4).random_init_seeds == (4,)  # the older single-seed spelling
    with pytest.raises(ConfigError, match="random_init_seed .* and evaluate.random_init_seeds are both given"):
        SuiteOptions(random_init_seed=7, random_init_seeds=(3, 4, 5))  # one of them would be ignored
    with pytest.raises(ConfigError, match="sim_subjects sizes the suite's own simulation, and the simulation's "
                       "store is given"):
        SuiteOptions(tasks=("simulation/group",), stores={"simulation": "x"}, sim_subjects=8)
    with pytest.raises(ConfigError, match="and no task runs on the simulation"):
        SuiteOptions(tasks=default_tasks("connattractor"), sim_subjects=8)
    assert SuiteOptions(tasks=("simulation/group",), sim_subjects=8).sim_subjects == 8
    from brainjepa.evaluation.attentive import AttentiveConfig

    with pytest.raises(ConfigError, match="attentive= configures the attentive head, and the head is linear"):
        SuiteOptions(tasks=("simulation/group",), attentive=AttentiveConfig(epochs=7))
    assert SuiteOptions(tasks=("simulation/group",), head="attentive", attentive=AttentiveConfig(epochs=7))
    with pytest.raises(ConfigError, match=r"evaluate.cache \(--cache\) is the sample cache of the connattractor"):
        SuiteOptions(tasks=("simulation/group",), cache="/nonexistent/x")
    assert SuiteOptions(tasks=("connattractor/rating",), cache="/nonexistent/x").cache == "/nonexistent/x"
    with pytest.raises(ConfigError, match="^--store connattractor: no chosen task runs on it"):
        SuiteOptions(tasks=("simulation/group",), stores={"connattractor": "x"})


def test_a_given_store_that_cannot_be_read_is_an_error_not_a_skipped_task(model_dir, tmp_path):
    (tmp_path / "not_a_store").mkdir()
    for path, problem in ((tmp_path / "nosuch", "no such store"), (tmp_path / "not_a_store", "not a brainjepa store")):
        options = SuiteOptions(tasks=("simulation/group",), stores={"simulation": str(path)})
        with pytest.raises(DataError, match=f"^--store simulation: .*{problem}"):
            evaluate(model_dir, tmp_path / "out", options, progress=False)
    assert not (tmp_path / "out").exists()


def test_the_split_halves_hold_as_many_subjects_each(tmp_path: Path) -> None:
    """With an even number of subjects the selection and report halves are the same size: settings are chosen on
    half the subjects and reported on the other half, neither side gets the larger share."""
    from brainjepa.evaluation.suite import _split_runs

    store = RunStore(fake_connattractor(tmp_path / "store", subjects=8))
    subjects = store.manifest["subject"].astype(str).to_numpy()
    halves = {split: set(subjects[_split_runs(store, split)]) for split in ("selection", "report")}
    assert len(halves["selection"]) == len(halves["report"]) == 4
    assert not halves["selection"] & halves["report"]


def test_probe_tasks_score_only_the_subjects_of_the_chosen_half(model_dir: Path, connattractor: Path) -> None:
    """The split restricts the probe tasks as it restricts identification: on the selection half a classification
    task scores that half's subjects only, so settings chosen on it never saw a report subject."""
    options = SuiteOptions(tasks=("connattractor/identification", "connattractor/regulation"), split="selection",
                           folds=2, seeds=1, random_init_seeds=(0,), bootstrap=100, permutations=100,
                           stores={"connattractor": connattractor})
    ident, regulation = evaluate(model_dir, None, options, progress=False).results
    assert not ident.skipped and not regulation.skipped
    assert set(regulation.subjects) == set(ident.subjects) and len(set(ident.subjects)) < 9
    assert regulation.n_runs == 2 * len(set(ident.subjects))


def test_within_subject_rating_leaves_out_a_subject_with_a_single_run(model_dir: Path, tmp_path: Path) -> None:
    """A subject with one rated run has no within-subject variation (its deviation from its own mean is 0 by
    construction), so the within-subject rating task leaves it out rather than scoring a free zero."""
    path = fake_connattractor(tmp_path / "store", subjects=6)
    rng = np.random.default_rng(5)
    with StoreWriter(tmp_path / "lone", R) as writer:
        store = RunStore(path)
        for i in range(len(store)):
            row = store.manifest.iloc[i]
            writer.add(store.run(i), subject=str(row["subject"]), run=str(row["run"]), tr=2.0,
                       phenotypes={"condition": row["condition"], "mean_rating": float(row["mean_rating"])})
        writer.add(rng.normal(size=(R, 40)).astype(np.float32), subject="lone", run="01", tr=2.0,
                   phenotypes={"condition": "none", "mean_rating": 80.0})
    options = SuiteOptions(tasks=("connattractor/rating",), folds=3, seeds=1, random_init_seeds=(0,),
                           bootstrap=100, permutations=100, stores={"connattractor": tmp_path / "lone"})
    (res,) = evaluate(model_dir, None, options, progress=False).results
    assert not res.skipped and "lone" not in set(res.subjects) and res.n_runs == 18


def test_a_task_with_as_many_subjects_as_folds_runs(model_dir: Path, tmp_path: Path) -> None:
    """Subject-grouped k-fold CV needs k subjects, not k + 1: a task with exactly `folds` subjects is scored."""
    store = fake_connattractor(tmp_path / "store", subjects=3)
    options = SuiteOptions(tasks=("connattractor/regulation",), folds=3, seeds=1, random_init_seeds=(0,),
                           bootstrap=100, permutations=100, stores={"connattractor": store})
    (res,) = evaluate(model_dir, None, options, progress=False).results
    assert not res.skipped, res.reason
    assert len(set(res.subjects)) == 3


def test_a_rows_null_is_the_mean_of_its_model_seeds_nulls(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A row with several model seeds (random-init weight seeds) has the mean of its seeds' permutation nulls,
    as its score is the mean over seeds, not the null of one seed."""
    from brainjepa.evaluation import nulls, suite

    scored = []

    def score_many(metric: str, truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
        scored.append(nulls.score_many(metric, truth, pred))
        return scored[-1]

    monkeypatch.setattr(suite, "score_many", score_many)
    options = SuiteOptions(tasks=("simulation/coupling",), folds=2, seeds=1, sim_subjects=8, random_init_seeds=(0, 1),
                           permutations=100)
    (res,) = evaluate(model_dir, None, options, progress=False).results
    each = iter(scored)  # the suite scores the rows in table order, a row's seeds one after the other
    for row in (r for r in res.rows.values() if not r.skipped):
        seeds = [next(each) for _ in range(row.seeds)]
        np.testing.assert_allclose(row.null, np.mean(seeds, axis=0))
    several = res.rows["random-init, ROI mean"]
    assert several.seeds == 2 and not np.allclose(several.predictions[0], several.predictions[1])


def test_the_three_class_condition_task_has_a_chance_of_one_third(model_dir: Path, connattractor: Path) -> None:
    """Nominal chance is 1 / classes: 1/3 for none / up / down (not the 1/2 of the binary tasks)."""
    options = SuiteOptions(tasks=("connattractor/condition",), folds=3, seeds=1, random_init_seeds=(0,),
                           bootstrap=100, permutations=100, stores={"connattractor": connattractor})
    (res,) = evaluate(model_dir, None, options, progress=False).results
    assert not res.skipped and set(res.truth) == set(CONDITIONS)
    assert res.chance == pytest.approx(1 / len(CONDITIONS))


def test_fold_wise_features_are_centred_within_subject_on_both_sides() -> None:
    """Tangent features (fitted per fold) of a within-subject task are centred within subject in the training and
    the test runs alike; a subject's runs are all on one side, so that is the centring of all runs at once."""
    from brainjepa.evaluation.suite import _centred_within

    rng = np.random.default_rng(0)
    features = rng.normal(size=(8, 5)) + 3.0
    subjects = np.repeat(["a", "b", "c", "d"], 2)
    train, test = np.arange(6), np.arange(6, 8)
    a, b = _centred_within(lambda tr, te: (features[tr], features[te]), subjects)(train, test)
    everything = _centred_within(features, subjects)
    np.testing.assert_allclose(a, everything[train])
    np.testing.assert_allclose(b, everything[test])


def test_tasks_run_in_table_order_whatever_order_they_are_given_in(model_dir: Path) -> None:
    """`SuiteOptions.tasks` are run and tabled in the suite's order (`TASKS`), not in the order they were typed,
    so tables from different command lines line up."""
    options = SuiteOptions(tasks=("simulation/coupling", "simulation/group"), folds=2, seeds=1, sim_subjects=8,
                           random_init_seeds=(0,), permutations=100)
    result = evaluate(model_dir, None, options, progress=False)
    assert [r.task.name for r in result.results] == [t for t in TASKS if t in options.tasks]
    assert list(result.to_frame()["task"].drop_duplicates()) == ["simulation/group", "simulation/coupling"]


def test_the_embeddings_kept_for_the_pca_are_the_first_readout(model_dir: Path) -> None:
    """`SuiteResult.embeddings` holds the first pooling's features (what report.md says the PCA shows), of the
    first model and the first random-init seed, not the last readout computed."""
    options = SuiteOptions(tasks=("simulation/group",), folds=2, seeds=1, sim_subjects=8, random_init_seeds=(0, 1),
                           permutations=100)
    result = evaluate(model_dir, None, options, progress=False)
    kept = result.embeddings["simulation"]
    assert options.encoder_poolings[0] == "roi"
    assert kept["brainjepa"].shape == kept["random-init"].shape == (8, R, 16)  # ROI mean [N, R, D]


# ------------------------------------------------------------------------------------------ feature sets
SmallSets = tuple[RunStore, BrainJEPA, BrainJEPA, dict[str, FeatureSet], Windows]


@pytest.fixture(scope="module")
def small_sets(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SmallSets:
    """Every feature set of a 4-subject store (12 runs), with the model, its random-init twin and the windows."""
    from brainjepa.evaluation.baselines import random_init_like
    from brainjepa.evaluation.embed import scoring_options
    from brainjepa.evaluation.feature_sets import dataset_feature_sets

    store = RunStore(fake_connattractor(tmp_path_factory.mktemp("small") / "store", subjects=4))
    model = BrainJEPA.load(model_dir)
    fresh = random_init_like(model, seed=0)
    sets, windows = dataset_feature_sets(store, [model], [fresh], poolings=("roi", "tokenfc"), head="linear",
                                         options=scoring_options(), cache=None, progress=False)
    return store, model, fresh, {fs.name: fs for fs in sets}, windows


def test_a_feature_set_reads_the_model_seed_it_is_asked_for() -> None:
    """`rows` and `label_free` of seed m read seed m's features: several random-init seeds (or pretrained models)
    are several fits, not one fit repeated."""
    values = [np.arange(12.0).reshape(4, 3) + 100 * m for m in range(2)]
    fs = FeatureSet("random-init", "ROI mean", values)
    runs = np.array([3, 1])
    assert fs.seeds == 2
    for m in range(2):
        np.testing.assert_array_equal(fs.rows(runs, m), values[m][runs])
        np.testing.assert_array_equal(fs.label_free(runs, m), values[m][runs])


def test_label_free_tangent_features_fit_their_reference_on_the_runs_used_only() -> None:
    """Identification's tangent features (e.g. of one half of the subjects) have their reference fitted on those
    runs alone: the other half's runs do not move them."""
    from brainjepa.evaluation.baselines import TangentFeatures
    from brainjepa.evaluation.feature_sets import TANGENT

    rng = np.random.default_rng(0)
    series = [rng.normal(size=(4, 4)) @ rng.normal(size=(4, 50)) for _ in range(8)]  # each run its own FC
    runs = np.array([0, 2, 4, 6])
    fs = FeatureSet(TANGENT, tangent=TangentFeatures(series))
    expected = TangentFeatures([series[i] for i in runs]).all_runs()
    np.testing.assert_allclose(fs.label_free(runs), expected, atol=1e-8)
    assert not np.allclose(TangentFeatures(series).all_runs()[runs], expected, atol=1e-3)  # the other runs would


def test_fold_wise_tangent_features_read_the_store_runs_of_the_fold_positions() -> None:
    """A task's rows are a subset of the store's runs: `rows(runs)` maps a fold's positions (into `runs`) to those
    store runs before fitting the tangent reference, so the fold sees its own runs' series, not the store's first."""
    from brainjepa.evaluation.baselines import TangentFeatures
    from brainjepa.evaluation.feature_sets import TANGENT

    rng = np.random.default_rng(1)
    series = [rng.normal(size=(4, 4)) @ rng.normal(size=(4, 50)) for _ in range(8)]
    runs = np.array([1, 3, 4, 6, 7])
    train, test = np.array([0, 2, 4]), np.array([1, 3])
    got = FeatureSet(TANGENT, tangent=TangentFeatures(series)).rows(runs)(train, test)
    want = TangentFeatures(series)(runs[train], runs[test])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, atol=1e-10)


def test_window_frame_times_are_in_seconds(small_sets: SmallSets) -> None:
    """The windows' frame times are seconds from the run start (what GLM regressors are built on): consecutive
    frames of a TR-2 s run are 2 s apart."""
    store, *_, windows = small_sets
    assert all(store.tr(i) == 2.0 for i in range(len(store)))
    np.testing.assert_allclose(np.diff(windows.times, axis=-1), 2.0)


def test_several_windows_are_joined_in_time_roi_by_roi() -> None:
    """`Windows.flat` puts each ROI's k windows one after the other in time ([N, R, k * F]); tangent features of
    several windows are computed from it."""
    data = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # [N, k, R, F]
    flat = Windows(data, data, np.zeros((2, 3, 5)), []).flat
    np.testing.assert_array_equal(flat, np.concatenate([data[:, w] for w in range(3)], axis=-1))


def test_the_patch_embedding_row_is_the_random_init_patch_map_pooled_as_the_encoders_are(small_sets: SmallSets
                                                                                         ) -> None:
    """The no-learning baseline uses the random-init model's patch map (not the pretrained one's) and its ROI
    mean is the encoder's own ROI pooling of those tokens (ROI-major), so it is comparable with the encoder rows."""
    import torch

    from brainjepa.evaluation.baselines import patch_embedding_tokens

    _, model, fresh, sets, windows = small_sets
    tokens = torch.from_numpy(patch_embedding_tokens(fresh, windows.data[:, 0]))
    with torch.inference_mode():
        expected = model.target_encoder.pool(tokens, "roi").numpy()
    np.testing.assert_allclose(sets["patch embedding, ROI mean"].values[0], expected, rtol=1e-5, atol=1e-6)


def test_patch_embedding_tokens_are_layer_normalised() -> None:
    """The no-learning patch embedding ends with a parameter-free LayerNorm: each token has mean 0 and variance 1
    over its features."""
    from brainjepa.evaluation.baselines import patch_embedding_tokens
    from conftest import tiny_model

    windows = np.random.default_rng(0).normal(3.0, 5.0, size=(3, 6, 32)).astype(np.float32)
    tokens = patch_embedding_tokens(tiny_model(6), windows)
    np.testing.assert_allclose(tokens.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(tokens.var(-1), 1, atol=1e-3)


def test_the_raw_window_row_reads_the_normalised_window_the_encoders_see(small_sets: SmallSets) -> None:
    """`raw window` is first order on the encoders' input: the patch means of the normalised window, not of the
    frames as stored."""
    from brainjepa.evaluation.baselines import mean_patch_profile
    from brainjepa.evaluation.embed import model_normalizer, scoring_options

    _, model, _, sets, windows = small_sets
    expected = mean_patch_profile(windows.data[:, 0], model.config.patch_size)
    np.testing.assert_allclose(sets["raw window"].values[0], expected, rtol=1e-5, atol=1e-6)
    normalizer = model_normalizer(model, scoring_options().normalization)  # what the encoders' input goes through
    for i in range(len(windows.data)):
        np.testing.assert_allclose(windows.data[i, 0], normalizer(windows.raw[i, 0]), rtol=1e-5, atol=1e-5)
    assert not np.allclose(windows.data, windows.raw)


def test_whole_run_fc_reads_every_frame_of_the_run(small_sets: SmallSets) -> None:
    """`FC, whole run` is the classic connectome over every frame of each run (more than the encoders see), and
    `FC` the same over the encoders' window."""
    from brainjepa.evaluation.baselines import functional_connectivity

    store, *_, sets, windows = small_sets
    runs = [store.run(i) for i in range(len(store))]
    assert runs[0].shape[1] > windows.data.shape[-1]
    np.testing.assert_allclose(sets["FC, whole run"].values[0], functional_connectivity(runs), atol=1e-6)
    np.testing.assert_allclose(sets["FC"].values[0], functional_connectivity(windows.data[:, 0]), atol=1e-6)


def test_encoder_features_do_not_depend_on_how_many_runs_embedded_at_once(small_sets: SmallSets,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Large models embed a few runs at a time (`_TOKEN_BYTES`); every run is embedded once, in store order, so
    the features equal those of one pass over all runs."""
    from brainjepa.evaluation import feature_sets
    from brainjepa.evaluation.embed import scoring_options

    store, model, *_ = small_sets
    whole = feature_sets.encoder_features(model, store, ("roi",), scoring_options(), False)["roi"]
    per_token = 4 * model.config.num_patches * model.config.embed_dim
    monkeypatch.setattr(feature_sets, "_TOKEN_BYTES", 5 * per_token)  # 5 runs at a time: 12 runs in 3 chunks
    chunked = feature_sets.encoder_features(model, store, ("roi",), scoring_options(), False)["roi"]
    assert chunked.shape == whole.shape == (len(store), R, model.config.embed_dim)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_with_several_windows_each_windows_token_fc_is_averaged(small_sets: SmallSets) -> None:
    """With k windows per run, token FC is computed on each window and the k FCs averaged (as the encoders'
    embeddings average windows), not taken from the window-averaged tokens, a smoother and different feature."""
    from brainjepa.evaluation import feature_sets
    from brainjepa.evaluation.embed import embed, scoring_options

    store, model, *_ = small_sets
    options = scoring_options(windows=2)
    got = feature_sets.encoder_features(model, store, ("tokenfc",), options, False)["tokenfc"]
    raw = feature_sets.run_windows(store, model, options).raw  # [N, k, R, F], the frames as stored
    n, k, r, f = raw.shape
    per_window = embed(model, raw.reshape(n * k, r, f), pooling="tokenfc", options=scoring_options())
    np.testing.assert_allclose(got, per_window.numpy().reshape(n, k, -1).mean(1), rtol=1e-4, atol=1e-5)


def test_window_baselines_read_every_window(small_sets: SmallSets) -> None:
    """With k windows per run the window baselines use all k, as the encoders do: the patch embedding, raw window and
    FC rows average the k windows' features and tangent fits on the k windows joined in time (not the first alone)."""
    from brainjepa.evaluation.baselines import (
        TangentFeatures,
        functional_connectivity,
        mean_patch_profile,
        patch_embedding_tokens,
    )
    from brainjepa.evaluation.embed import scoring_options
    from brainjepa.evaluation.feature_sets import dataset_feature_sets

    store, model, fresh, *_ = small_sets
    found, windows = dataset_feature_sets(store, [model], [fresh], poolings=("roi",), head="linear",
                                          options=scoring_options(windows=2), cache=None, progress=False)
    sets = {fs.name: fs for fs in found}
    k = windows.data.shape[1]
    assert k == 2
    with torch.inference_mode():
        patch = [model.target_encoder.pool(torch.from_numpy(patch_embedding_tokens(fresh, windows.data[:, w])), "roi")
                 for w in range(k)]
    want = {"patch embedding, ROI mean": np.mean([t.numpy() for t in patch], axis=0),
            "raw window": np.mean([mean_patch_profile(windows.data[:, w], model.config.patch_size) for w in range(k)],
                                  axis=0),
            "FC": np.mean([functional_connectivity(windows.data[:, w]) for w in range(k)], axis=0)}
    for name, values in want.items():
        np.testing.assert_allclose(sets[name].values[0], values, rtol=1e-5, atol=1e-6, err_msg=name)
    runs = np.arange(len(store))
    np.testing.assert_allclose(sets["tangent"].label_free(runs),
                               TangentFeatures(list(windows.flat))(runs, runs[:0])[0], atol=1e-8)


def test_glm_betas_are_in_the_datas_units_for_every_window(model_dir: Path, tmp_path: Path) -> None:
    """The GLM row fits the frames as stored, so its betas do not depend on the normaliser the encoders' input goes
    through, and with k windows per run it keeps the betas of every window (k times as many as with one)."""
    from brainjepa.evaluation import feature_sets
    from brainjepa.evaluation.embed import scoring_options

    store = RunStore(fake_connattractor(tmp_path / "store", subjects=2))
    _sample_with_events(store, tmp_path / "cache")
    model = BrainJEPA.load(model_dir)
    betas = {}
    for k, norm in ((1, "model"), (2, "model"), (2, "none")):
        windows = feature_sets.run_windows(store, model, scoring_options(windows=k, normalization=norm))
        betas[k, norm] = feature_sets._glm(store, windows, tmp_path / "cache").values[0]
    np.testing.assert_allclose(betas[2, "model"], betas[2, "none"], rtol=1e-5)
    assert betas[2, "model"].shape[-1] == 2 * betas[1, "model"].shape[-1]


def test_regulation_keeps_only_runs_03_and_07_labelled_up_or_down(model_dir: Path, tmp_path: Path) -> None:
    """The regulation task's two restrictions each hold on their own: a run other than 03 / 07 (here 05, labelled
    'up') and a run 03 / 07 with another label ('rest') are both left out, whatever the other restriction says."""
    rng = np.random.default_rng(2)
    with StoreWriter(tmp_path / "store", R) as writer:
        for s in range(6):
            for run, condition in (("01", "none"), ("03", "up"), ("05", "up"), ("07", "rest" if s == 0 else "down")):
                writer.add(rng.normal(size=(R, 40)).astype(np.float32), subject=f"{s:02d}", run=run, tr=2.0,
                           phenotypes={"condition": condition, "mean_rating": 50.0})
    options = SuiteOptions(tasks=("connattractor/regulation",), folds=2, seeds=1, random_init_seeds=(0,),
                           bootstrap=100, permutations=100, stores={"connattractor": tmp_path / "store"})
    (res,) = evaluate(model_dir, None, options, progress=False).results
    assert not res.skipped, res.reason
    assert set(res.units) == {"03", "07"} and set(res.truth) == {"up", "down"}
    assert res.n_runs == 2 * 6 - 1  # subject 00's run 07 ('rest') is out


def test_suite_options_refuse_seeds_poolings_and_task_lists_that_would_mislead() -> None:
    """Refused rather than run: a negative or boolean weight seed, a pooling named twice (two identical rows
    compared as if different), and an empty task list (a suite that measures nothing)."""
    for seeds in ((-1,), (True,), (0, -2)):
        with pytest.raises(ConfigError, match="random_init_seeds must be distinct integers >= 0"):
            SuiteOptions(random_init_seeds=seeds)
    with pytest.raises(ConfigError, match="linear probe: pooling must be"):
        SuiteOptions(pooling=("roi", "roi"))
    with pytest.raises(ConfigError, match="unknown evaluation tasks"):
        SuiteOptions(tasks=())


def test_suite_options_copy_with_dataclasses_replace() -> None:
    """A copy of the options with one field changed is the options one would have written: the single-seed spelling
    is not read again as a second seed setting, and a copy with another head takes that head's default readouts
    (a pooling that was given stays, and is refused where the new head cannot read it)."""
    import dataclasses

    copy = dataclasses.replace(SuiteOptions(random_init_seed=4), folds=3)
    assert copy.random_init_seeds == (4,) and copy.folds == 3
    assert dataclasses.replace(SuiteOptions(), head="attentive").encoder_poolings == ("tokens",)
    assert dataclasses.replace(SuiteOptions(pooling="roi"), head="attentive").encoder_poolings == ("roi",)
    with pytest.raises(ConfigError, match="attentive probe: pooling must be"):
        dataclasses.replace(SuiteOptions(pooling="tokenfc"), head="attentive")
    with pytest.raises(ConfigError, match="linear probe: pooling must be .*got none"):
        SuiteOptions(pooling=())


def test_the_default_tasks_of_a_data_set_leave_out_the_confounded_one() -> None:
    """`default_tasks(dataset)` is `DEFAULT_TASKS` restricted to the data set, in table order: never the
    confounded condition task."""
    for dataset in ("connattractor", "simulation"):
        assert default_tasks(dataset) == tuple(t for t in DEFAULT_TASKS if TASKS[t].dataset == dataset)
    assert "connattractor/condition" not in default_tasks("connattractor")
    assert default_tasks("connattractor")


@pytest.mark.network
def test_evaluate_on_the_real_connattractor_sample(tmp_path):
    """Downloads the connattractor wheel (24 MB, once per cache) and runs subject identification on it: FC
    identifies subjects across every pair of runs, and so does the second-order readout of a random-init encoder."""
    cfg = model_config("vit_tiny", num_rois=119, num_frames=160, embed_dim=16, depth=1, num_heads=2,
                       pred_embed_dim=8, pred_depth=1, gradient_dim=3)
    torch.manual_seed(1)
    BrainJEPA(cfg, gradient=torch.randn(119, 3)).save_pretrained(tmp_path / "m")
    options = SuiteOptions(tasks=("connattractor/identification",), random_init_seeds=(0,))
    result = evaluate(tmp_path / "m", tmp_path / "eval", options, progress=False)
    (ident,) = result.results
    assert not ident.skipped and len(set(ident.subjects)) == 33 and 0 < ident.chance < 0.05
    assert min(ident.rows["FC, whole run"].by_pair[p][0] for p in ident.rows["FC"].by_pair) >= 0.85
    assert result.stats["connattractor/identification"].scores["random-init, token FC"].mean >= 0.8
    assert isinstance(result.stats["connattractor/identification"].nulls["FC"], Null)


def test_every_cli_flag_reaches_the_suite_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`brainjepa evaluate` flags whose effect the end-to-end runs cannot show (interval coverage, the split, the
    sample cache, the head, the older single-seed flag, several models) must reach `evaluate` as documented."""
    target, base = "brainjepa.cli.evaluate.evaluate", ["evaluate", "--out", str(tmp_path / "eval"), "--no-progress"]
    seen = cli_call(monkeypatch, target, [*base, "--model", "m1", "--model", "m2", "--confidence", "0.9", "--split",
                                          "report", "--cache", str(tmp_path / "cache"), "--head", "attentive",
                                          "--store", "simulation=a=b"])
    options = seen["options"]
    assert list(seen["model"]) == ["m1", "m2"]  # pretraining seeds of one recipe, not the first one alone
    assert (options.confidence, options.split, options.head) == (0.9, "report", "attentive")
    assert options.cache == str(tmp_path / "cache") and options.stores == {"simulation": "a=b"}
    seen = cli_call(monkeypatch, target, [*base, "--model", "m1", "--random-init-seed", "7"])
    assert seen["model"] == "m1" and seen["options"].random_init_seeds == (7,)


def test_a_store_without_a_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--store takes NAME=DIR: a bare folder is refused in one line before any work, not read as a data set."""
    assert main(["evaluate", "--model", "m", "--out", str(tmp_path / "eval"), "--store", str(tmp_path)]) == 2
    assert "--store takes NAME=DIR" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()
