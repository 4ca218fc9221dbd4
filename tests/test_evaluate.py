"""`brainjepa evaluate`: the suite end to end on a tiny model (simulated tasks plus a small connattractor-like
store built here): every row on the same units, every interval recomputable from the saved predictions, a null per
row, skipped tasks and rows with their reasons, several models and random-init seeds, the subject split."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from brainjepa import BrainJEPA, model_config
from brainjepa.cli import main
from brainjepa.data import samples
from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.metrics import bootstrap_interval, paired_bootstrap
from brainjepa.evaluation.nulls import Null
from brainjepa.evaluation.results import COLUMNS
from brainjepa.evaluation.suite import DEFAULT_TASKS, TASKS, SuiteOptions, evaluate
from brainjepa.evaluation.tasks import default_tasks
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


def test_glm_rows_read_the_samples_event_files(model_dir, tmp_path):
    """A store prepared from a sample finds its runs' events in the sample cache; the GLM row then runs."""
    store_path = fake_connattractor(tmp_path / "store")
    store = RunStore(store_path)
    store.set_metadata("sample", {"name": "connattractor"})
    events = tmp_path / "cache" / "connattractor" / "events"
    events.mkdir(parents=True)
    table = pd.DataFrame({"onset_run": [4.0, 20.0, 40.0, 56.0], "duration": [6.0, 5.0, 6.0, 5.0],
                          "trial_type": ["heat", "rating", "heat", "rating"]})
    for s, r in zip(store.manifest["subject"], store.manifest["run"], strict=True):
        table.to_csv(events / f"sub-{s}_run-{r}_events.tsv", sep="\t", index=False)
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
