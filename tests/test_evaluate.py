"""`brainjepa evaluate`: the suite end to end on a tiny model (simulated tasks plus a small connattractor-like
store built here), skipped tasks with their reasons, subject identification and tangent features without
leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from brainjepa import BrainJEPA, model_config
from brainjepa.cli import main
from brainjepa.data.store import StoreWriter
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.metrics import bootstrap_interval, paired_bootstrap
from brainjepa.evaluation.suite import (
    COLUMNS,
    METHODS,
    TASKS,
    SuiteOptions,
    TangentFeatures,
    evaluate,
    identify_subjects,
)

R, T = 10, 32
CONDITIONS = ("none", "up", "down")


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


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = model_config("vit_tiny", num_rois=R, num_frames=T, embed_dim=16, depth=2, num_heads=2, pred_embed_dim=8,
                       pred_depth=1, gradient_dim=3)
    torch.manual_seed(1)  # not the random-init seed (0), so the two encoder rows differ
    path = tmp_path_factory.mktemp("model") / "m"
    BrainJEPA(cfg, gradient=torch.randn(R, 3)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def connattractor(tmp_path_factory):
    return fake_connattractor(tmp_path_factory.mktemp("ca") / "store")


def test_evaluate_cli_end_to_end(model_dir, connattractor, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate", "--model", str(model_dir), "--out", str(out), "--folds", "3", "--seeds", "2",
                 "--sim-subjects", "15", "--store", f"connattractor={connattractor}", "--bootstrap", "300",
                 "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(out / "evaluate.csv")
    assert tuple(table.columns) == COLUMNS
    assert list(dict.fromkeys(table["task"])) == list(TASKS) and set(table["status"]) == {"done"}
    scores = table[table["type"] == "score"]
    for task in TASKS:
        assert scores[scores["task"] == task]["row"].tolist() == list(METHODS)
    diffs = table[table["type"] == "difference"]
    assert set(diffs["row"]) == {"brainjepa - random-init", "brainjepa - FC", "brainjepa - tangent",
                                 "brainjepa - best FC"}
    ident = scores[scores["task"] == "connattractor/identification"].set_index("row")
    assert ident.loc["FC", "mean"] > 0.8 and ident.loc["FC", "chance"] == pytest.approx(1 / 9)
    assert (table["units"] == "subject").all() and (ident["n_units"] == 9).all()
    condition = scores[scores["task"] == "connattractor/condition"]
    assert (condition["metric"] == "balanced_acc").all() and (condition["n_units"] == 9).all()
    assert condition["chance"].iloc[0] == pytest.approx(1 / 3)
    assert ((scores["ci_low"] >= 0) & (scores["ci_high"] <= 1))[scores["metric"] != "pearson_r"].all()
    # Every score and difference is the subject bootstrap (--bootstrap resamples) of the out-of-fold predictions
    # saved beside the table: 2 seeds x 27 runs per method for condition, one row per query for identification.
    units = pd.read_csv(out / "evaluate_units.csv", dtype={"subject": str, "truth": str, "prediction": str})
    assert len(units[(units["task"] == "connattractor/condition") & (units["method"] == "FC")]) == 2 * 27

    def predictions(task: str, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = units[(units["task"] == task) & (units["method"] == method)]
        wide = rows.assign(seed=rows["seed"].fillna(0)).pivot(index=["subject", "unit"], columns="seed",
                                                               values=["truth", "prediction"])
        truth, pred = wide["truth"].iloc[:, 0].to_numpy(), wide["prediction"].to_numpy().T
        if TASKS[task].kind == "regression":
            truth, pred = truth.astype(float), pred.astype(float)
        return truth, pred, wide.index.get_level_values("subject").to_numpy()

    for row in table.itertuples():
        truth, pred, subjects = predictions(row.task, "brainjepa" if row.type == "difference" else row.row)
        if row.type == "score":
            d = bootstrap_interval(truth, pred, subjects, row.metric, n_boot=300)
        else:
            other = row.row.removeprefix("brainjepa - ")
            other = row.reason.removeprefix("best FC is ") if other == "best FC" else other
            d = paired_bootstrap(truth, pred, predictions(row.task, other)[1], subjects, row.metric, n_boot=300)
        assert (row.mean, row.ci_low, row.ci_high, row.n_units) == pytest.approx((d.mean, d.low, d.high, d.n))
    md = (out / "evaluate.md").read_text()
    assert "| connattractor/rating | pearson_r |" in md and "| simulation/coupling |" in printed
    assert "subject-level bootstrap (300 resamples of subjects" in md and "not independent" in printed
    assert (out / "evaluate.png").stat().st_size > 0


def test_evaluate_skips_tasks_with_reasons(model_dir, tmp_path, capsys):
    other = fake_connattractor(tmp_path / "ca8", subjects=4, rois=8)
    code = main(["evaluate", "--model", str(model_dir), "--out", str(tmp_path / "eval"), "--folds", "2", "--seeds",
                 "1", "--sim-subjects", "8", "--store", f"connattractor={other}", "--tasks", "connattractor/condition",
                 "simulation/group", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "skipped connattractor/condition: connattractor data: the model takes 10 ROIs but the connattractor " \
           f"store {other} has 8" in printed
    table = pd.read_csv(tmp_path / "eval" / "evaluate.csv", keep_default_na=False)
    skipped = table[table["status"] == "skipped"]
    assert skipped["task"].tolist() == ["connattractor/condition"] and "has 8" in skipped["reason"].iloc[0]
    assert set(table[table["status"] == "done"]["task"]) == {"simulation/group"}
    assert "skipped: connattractor data: the model takes 10 ROIs" in (tmp_path / "eval" / "evaluate.md").read_text()


def test_evaluate_skips_runs_shorter_than_the_window(model_dir, tmp_path):
    short = fake_connattractor(tmp_path / "short", subjects=3, frames=T - 8)
    options = SuiteOptions(tasks=("connattractor/identification",), stores={"connattractor": short})
    (result,) = evaluate(model_dir, None, options, progress=False).results
    assert result.skipped and f"run has {T - 8} frames but a {T}-frame window" in result.reason


def test_evaluate_skips_the_sample_when_it_cannot_be_downloaded(model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip finds nothing and never touches the network
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    options = SuiteOptions(tasks=("connattractor/identification",), cache=tmp_path / "cache")
    result = evaluate(model_dir, tmp_path / "eval", options, progress=False)
    (only,) = result.results
    assert only.skipped and "could not download connattractor==0.1.0" in only.reason
    table = pd.read_csv(tmp_path / "eval" / "evaluate.csv")
    assert table["status"].tolist() == ["skipped"] and not (tmp_path / "eval" / "evaluate.png").exists()


def test_evaluate_attentive_head_reads_tokens(model_dir, monkeypatch):
    from brainjepa.evaluation.attentive import AttentiveConfig, AttentiveProbe

    shapes = []
    fit = AttentiveProbe.fit

    def spy(self, x, y, groups=None):
        shapes.append(np.shape(x))
        return fit(self, x, y, groups)

    monkeypatch.setattr(AttentiveProbe, "fit", spy)
    options = SuiteOptions(tasks=("simulation/group",), folds=2, seeds=1, sim_subjects=8, head="attentive",
                           attentive=AttentiveConfig(epochs=3))
    (result,) = evaluate(model_dir, None, options, progress=False).results
    assert list(result.predictions) == list(METHODS) and result.predictions["FC"].shape == (1, 8)
    # brainjepa and random-init, 2 folds each, on all R * P tokens of width 16; FC rows stay linear
    assert shapes == [(4, R * (T // 16), 16)] * 4


def test_suite_options_refusals():
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
    assert SuiteOptions(head="attentive").encoder_pooling == "tokens"
    assert SuiteOptions().encoder_pooling == "roi"


# ------------------------------------------------------------------------------------------ identification
def test_identification_identical_features_are_found_and_random_ones_at_chance():
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i}" for i in range(40)], 3)
    sessions = np.tile(["a", "b", "c"], 40)
    own = rng.normal(size=(40, 50))
    same = identify_subjects(np.repeat(own, 3, axis=0), subjects, sessions)
    assert same.accuracy == 1.0 and same.chance == pytest.approx(1 / 40) and same.queries == 40 * 6
    noise = identify_subjects(rng.normal(size=(120, 50)), subjects, sessions)
    assert noise.accuracy < 0.1 and noise.chance == pytest.approx(1 / 40)
    # A subject missing a session takes part only in the pairs it has; chance follows the candidate counts.
    keep = ~((subjects == "s0") & (sessions == "a"))
    partial = identify_subjects(np.repeat(own, 3, axis=0)[keep], subjects[keep], sessions[keep])
    pairs_without_s0, pairs_with_s0 = 4, 2  # (a, b), (a, c), (b, a), (c, a) lack s0; (b, c), (c, b) have it
    expected = (pairs_without_s0 + pairs_with_s0) / (pairs_without_s0 * 39 + pairs_with_s0 * 40)
    assert partial.accuracy == 1.0 and partial.chance == pytest.approx(expected)


def test_identification_refusals():
    with pytest.raises(DataError, match="subject 's0' has two runs labelled 'a'"):
        identify_subjects(np.zeros((2, 3)), ["s0", "s0"], ["a", "a"])
    with pytest.raises(DataError, match="two sessions .* shared by at least two subjects"):
        identify_subjects(np.zeros((2, 3)), ["s0", "s1"], ["a", "b"])


def test_tangent_features_are_fitted_on_training_runs_only():
    rng = np.random.default_rng(0)
    series = [rng.normal(size=(5, 60)) for _ in range(8)]
    train, test = np.arange(6), np.array([6, 7])
    x_train, x_test = TangentFeatures(series)(train, test)
    assert x_train.shape == (6, 10) and x_test.shape == (2, 10)  # 5 ROIs: 10 pairs, diagonal left out
    changed = series[:6] + [rng.normal(size=(5, 60)) * 3, series[7]]
    again_train, again_test = TangentFeatures(changed)(train, test)
    assert np.allclose(again_train, x_train)  # a test run cannot move the training features
    assert np.allclose(again_test[1], x_test[1]) and not np.allclose(again_test[0], x_test[0])


@pytest.mark.network
def test_evaluate_on_the_real_connattractor_sample(tmp_path):
    """Downloads the connattractor wheel (24 MB, once per cache) and runs subject identification on it."""
    cfg = model_config("vit_tiny", num_rois=119, num_frames=160, embed_dim=16, depth=1, num_heads=2,
                       pred_embed_dim=8, pred_depth=1, gradient_dim=3)
    torch.manual_seed(1)
    BrainJEPA(cfg, gradient=torch.randn(119, 3)).save_pretrained(tmp_path / "m")
    result = evaluate(tmp_path / "m", tmp_path / "eval", SuiteOptions(tasks=("connattractor/identification",)),
                      progress=False)
    (ident,) = result.results
    assert not ident.skipped and len(set(ident.subjects)) == 33 and 0 < ident.chance < 0.05
    assert (ident.predictions["FC"] == ident.truth).mean() > 5 * ident.chance
