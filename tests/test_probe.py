"""Metrics, subject-grouped splits, the linear probe, its baselines and `brainjepa probe` end to end."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from brainjepa import BrainJEPA
from brainjepa.cli import build_parser, main
from brainjepa.cli.arguments import all_parsers
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.baselines import functional_connectivity, random_init_like
from brainjepa.evaluation.embed import embed_store, save_embeddings
from brainjepa.evaluation.finetune import FinetuneConfig
from brainjepa.evaluation.labels import TASK_KINDS
from brainjepa.evaluation.metrics import classification_metrics, grouped_splits, regression_metrics, summarize
from brainjepa.evaluation.probe import BASELINES, HEADS, POOLINGS_FOR_HEAD, infer_task, probe, probe_models, probe_store
from conftest import cli_call

R, T = 20, 64


# ------------------------------------------------------------------------------------------------- metrics
@pytest.mark.filterwarnings("ignore:A single label was found")
def test_classification_metrics_known_values():
    m = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], [0.1, 0.6, 0.7, 0.9])
    assert m["acc"] == 0.75 and m["balanced_acc"] == 0.75 and m["auc"] == 1.0
    assert m["f1"] == pytest.approx(0.8)
    # Text labels: the larger label ("b") is the positive class; a [N, 2] score uses its last column.
    s = classification_metrics(["a", "b", "b"], ["b", "b", "b"], np.array([[0.5, 0.5], [0.2, 0.8], [0.3, 0.7]]))
    assert s["f1"] == pytest.approx(0.8) and s["auc"] == 1.0 and s["balanced_acc"] == 0.5
    assert math.isnan(classification_metrics([1, 1], [1, 1], [0.9, 0.1])["auc"])
    # A fold that is all one class, all predicted right: F1 of the absent positive class is 0 / 0, not 0.
    right = classification_metrics(["a"] * 5, ["a"] * 5, np.zeros((5, 2)), labels=["a", "b"])
    assert right["balanced_acc"] == 1.0 and math.isnan(right["f1"])
    assert classification_metrics(["a", "a", "b"], ["a", "a", "a"], labels=["a", "b"])["f1"] == 0.0


def test_multiclass_metrics_are_macro_and_one_vs_rest():
    y = np.array([0, 1, 2, 2])
    score = np.eye(3)[[0, 1, 2, 1]]
    m = classification_metrics(y, score.argmax(1), score)
    assert m["acc"] == 0.75 and m["balanced_acc"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # Class 2 absent from the fold: AUC averages only the classes present.
    part = classification_metrics(y[:2], [0, 1], score[:2], labels=[0, 1, 2])
    assert part["auc"] == 1.0 and part["f1"] == 1.0  # the absent class's F1 (0 / 0) is left out of the mean


def test_regression_metrics():
    m = regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert m["mae"] == pytest.approx(2 / 3) and m["mse"] == pytest.approx(4 / 3)
    assert m["pearson_r"] == pytest.approx(np.corrcoef([1, 2, 3], [1, 2, 5])[0, 1])
    assert math.isnan(regression_metrics([1.0, 2.0], [3.0, 3.0])["pearson_r"])
    mixed = regression_metrics([0.0, 0.0, 0.0, 0.0], [1.0, -1.0, 2.0, -2.0])  # errors of both signs do not cancel
    assert mixed["mae"] == 1.5 and mixed["mse"] == 2.5


def test_multiclass_auc_is_the_mean_of_the_one_vs_rest_aucs():
    """Multi-class AUC is scikit-learn's one-vs-rest macro AUC: the mean over classes, not another average."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2, 3], 10)
    score = rng.random((40, 4)) + 0.8 * np.eye(4)[y] * np.array([0.2, 0.5, 1.0, 3.0])  # classes unequally separable
    score /= score.sum(1, keepdims=True)
    got = classification_metrics(y, score.argmax(1), score)["auc"]
    assert got == pytest.approx(roc_auc_score(y, score, multi_class="ovr", average="macro"))


@pytest.mark.filterwarnings("ignore:A single label was found")
@pytest.mark.parametrize("undefined", [
    lambda: classification_metrics([1, 1, 1], [1, 1, 1], [0.9, 0.2, 0.4])["auc"],
    lambda: classification_metrics([0, 0], [0, 0], np.eye(3)[[0, 1]], labels=[0, 1, 2])["auc"],
    lambda: regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 2.0])["pearson_r"],
], ids=["binary-auc-one-class", "multiclass-auc-one-class", "r-constant-predictions"])
def test_undefined_scores_are_nan_without_a_warning(undefined):
    """A fold with one true class has no AUC and constant predictions have no r: NaN, decided before scikit-learn
    or numpy would warn (or, in older scikit-learn, raise) on every such fold."""
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", UndefinedMetricWarning)
        warnings.simplefilter("error", RuntimeWarning)
        assert math.isnan(undefined())


def test_summarize():
    s = summarize([{"a": 1.0, "b": math.nan}, {"a": 3.0, "b": 2.0}, {"a": 2.0, "b": math.nan}])
    assert s["a"] == (2.0, 1.0) and s["b"] == (2.0, 0.0)
    assert all(math.isnan(v) for v in summarize([{"c": math.nan}])["c"])
    assert summarize([]) == {}


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_grouped_splits_keep_subjects_together(task):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 3)  # 20 subjects x 3 runs
    y = np.repeat(rng.integers(0, 2, 20), 3) if task == "classification" else rng.normal(size=60)
    splits = grouped_splits(y, groups, task=task, folds=4, seed=0)
    assert len(splits) == 4
    tested = np.concatenate([te for _, te in splits])
    assert np.array_equal(np.sort(tested), np.arange(60))  # every row tested exactly once
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(60))
        if task == "classification":
            assert set(y[test]) == {0, 1}
    again = grouped_splits(y, groups, task=task, folds=4, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again, strict=True))
    other = grouped_splits(y, groups, task=task, folds=4, seed=1)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(splits, other, strict=True))


def test_grouped_splits_errors():
    y, g = np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])
    with pytest.raises(DataError, match="2 groups \\(subjects\\) cannot make 3 folds"):
        grouped_splits(y, g, task="classification", folds=3, seed=0)
    with pytest.raises(DataError, match="folds must be >= 2, got 1"):
        grouped_splits(y, g, task="regression", folds=1, seed=0)
    with pytest.raises(DataError, match="task must be 'classification' or 'regression', got 'ranking'"):
        grouped_splits(y, g, task="ranking", folds=2, seed=0)
    with pytest.raises(DataError, match="at least 2 classes"):
        grouped_splits(np.zeros(4), None, task="classification", folds=2, seed=0)
    with pytest.raises(DataError, match="3 group ids for 4 labels"):
        grouped_splits(y, g[:3], task="regression", folds=2, seed=0)


# ------------------------------------------------------------------------------------------------- probe
def test_infer_task():
    assert infer_task(np.array([0, 1, 1, 0])) == "classification"
    assert infer_task(np.array(["ctl", "mci", None], dtype=object)) == "classification"
    assert infer_task(np.array([1.0, 2.0, np.nan])) == "classification"
    assert infer_task(np.array([0.1, 0.5, 0.7])) == "regression"
    assert infer_task(np.arange(40)) == "regression"  # integer-valued but too many values (ages)


def test_infer_task_takes_up_to_ten_integer_values_as_classes() -> None:
    """Integer labels with at most `MAX_CLASSES` (10) distinct values are classes; one more makes a regression."""
    from brainjepa.evaluation.labels import MAX_CLASSES

    assert infer_task(np.arange(MAX_CLASSES).repeat(2)) == "classification"
    assert infer_task(np.arange(MAX_CLASSES + 1).repeat(2)) == "regression"


def test_blank_text_labels_are_missing() -> None:
    """Empty or whitespace-only text cells are missing labels (dropped with a count), like None and NaN; they are
    never a class of their own."""
    from brainjepa.evaluation.labels import missing

    labels = np.array(["ctl", "", "  ", "\t", None, np.nan, "mci"], dtype=object)
    assert missing(labels).tolist() == [False, True, True, True, True, True, False]


def _label_store(path: Path, subjects: int) -> Path:
    """`subjects` subjects with two runs each, labelled 'a' and 'b'."""
    from brainjepa.data.store import StoreWriter

    rng = np.random.default_rng(0)
    with StoreWriter(path, 4) as writer:
        for s in range(subjects):
            for run, label in (("1", "a"), ("2", "b")):
                writer.add(rng.normal(size=(4, 20)).astype(np.float32), subject=f"s{s}", run=run,
                           phenotypes={"dx": label})
    return path


def test_read_labels_takes_exactly_as_many_subjects_as_folds(tmp_path: Path) -> None:
    """k subject-grouped folds need k labelled subjects: exactly k is accepted, k - 1 refused."""
    from brainjepa.data.store import RunStore
    from brainjepa.evaluation.labels import read_labels

    store = RunStore(_label_store(tmp_path / "s", subjects=3))
    assert len(np.unique(read_labels(store, "dx", folds=3).groups)) == 3
    with pytest.raises(DataError, match="3 groups \\(subjects\\) cannot make 4 folds"):
        read_labels(store, "dx", folds=4)


def test_read_labels_counts_the_runs_left_out_for_a_missing_label(tmp_path: Path) -> None:
    """Runs whose label cell is empty are left out and counted, never silently lost."""
    from brainjepa.data.store import RunStore, StoreWriter
    from brainjepa.evaluation.labels import read_labels

    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "s", 4) as writer:
        for s, label in enumerate(["a", "b", "", "a", "b"]):
            writer.add(rng.normal(size=(4, 20)).astype(np.float32), subject=f"s{s}", run="1",
                       phenotypes={"dx": label})
    labels = read_labels(RunStore(tmp_path / "s"), "dx")
    assert labels.n_dropped == 1 and labels.runs.tolist() == [0, 1, 3, 4]


def test_read_labels_refuses_a_task_kind_it_cannot_learn(tmp_path: Path) -> None:
    """Only classification and regression (or auto) are label tasks; any other kind is a ConfigError up front."""
    from brainjepa.data.store import RunStore
    from brainjepa.errors import ConfigError
    from brainjepa.evaluation.labels import read_labels

    store = RunStore(_label_store(tmp_path / "s", subjects=2))
    assert read_labels(store, "dx", "auto").task == "classification"
    with pytest.raises(ConfigError, match="label task must be 'classification' or 'regression', got 'ranking'"):
        read_labels(store, "dx", "ranking")


def test_labels_at_refuses_runs_without_a_label() -> None:
    """Asking for a run that has no label is an error, never another run's label."""
    from brainjepa.evaluation.labels import Labels

    labels = Labels("dx", "classification", runs=np.array([0, 2, 3]), groups=np.array(["s0", "s1", "s1"]),
                    values=np.array(["a", "b", "a"]), classes=["a", "b"], targets=np.array([0, 1, 0]), n_dropped=1)
    values, groups = labels.at(np.array([3, 0]))
    assert values.tolist() == ["a", "a"] and groups.tolist() == ["s1", "s0"]
    for runs in ([1], [0, 1], [4]):
        with pytest.raises(DataError, match="runs without a label were asked for"):
            labels.at(np.array(runs))


def test_probe_learns_a_linear_signal():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    x = rng.normal(size=(60, 8))
    x[:, 0] += 3.0 * y
    res = probe(x, y, np.arange(60) // 2, folds=3, seeds=2)
    assert res.task == "classification" and len(res.folds) == 6
    assert res.summary["acc"][0] > 0.85 and res.summary["auc"][0] > 0.9
    target = x[:, 1] * 2.0 + 0.1 * rng.normal(size=60)
    reg = probe(x, target, folds=3, seeds=1)
    assert reg.task == "regression" and reg.summary["pearson_r"][0] > 0.95
    assert set(reg.folds[0]) == {"seed", "fold", "n_train", "n_test", "mae", "mse", "pearson_r"}
    noise = probe(rng.normal(size=(60, 8)), y, folds=3, seeds=2)
    assert noise.summary["auc"][0] < res.summary["auc"][0]


def test_probe_drops_missing_labels_loudly(caplog):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 30).astype(object)
    y[[0, 5, 9]] = None
    with caplog.at_level(logging.WARNING, logger="brainjepa.evaluation.probe"):
        res = probe(rng.normal(size=(30, 4)), y, folds=3, seeds=1)
    assert res.n_dropped == 3 and res.n_samples == 27
    np.testing.assert_array_equal(res.truth, np.delete(y, [0, 5, 9]))  # the labels the predictions predict
    assert "dropped 3 of 30 rows with a missing label" in caplog.text
    with pytest.raises(DataError, match="4 feature rows, 30 labels"):
        probe(np.zeros((4, 2)), y)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_probe_refuses_non_finite_features(bad):
    """A NaN or Inf feature is refused in one line before any fit, not met as a scikit-learn error inside a fold."""
    x = np.random.default_rng(0).normal(size=(30, 3))
    x[4, 1] = bad
    with pytest.raises(DataError, match="features contain NaN or Inf"):
        probe(x, np.repeat([0, 1], 15), folds=3, seeds=1)


def test_probe_seed_s_tests_the_folds_grouped_splits_makes_with_seed_s():
    """Seeds 0..seeds-1 split as `grouped_splits(..., seed=s)` does (the folds fine-tuning uses, so both compare on the
    same subjects); subjects of 1 to 8 runs give each seed's folds their own test sizes."""
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(8), np.arange(1, 9))
    y, x = rng.normal(size=len(groups)), rng.normal(size=(len(groups), 3))
    res = probe(x, y, groups, folds=3, seeds=2, alphas=[1.0])
    want = [len(test) for s in range(2) for _, test in grouped_splits(y, groups, task="regression", folds=3, seed=s)]
    assert [f["n_test"] for f in res.folds] == want and want[:3] != want[3:]


def test_a_rare_class_beside_larger_ones_is_allowed_with_a_warning(caplog):
    """A class with fewer samples than the folds, beside larger ones, is only missing from some test folds: allowed
    and named in a warning (refused is only the case where every class is that small)."""
    from brainjepa.evaluation.probe import check_learnable

    y = np.repeat(["a", "b", "c"], [10, 10, 2])
    with caplog.at_level(logging.WARNING, logger="brainjepa.evaluation.probe"):
        check_learnable(y, None, "classification", 3)
    assert "missing from some test folds: 'c' (2)" in caplog.text


def test_a_training_fold_with_a_single_class_is_refused_by_name():
    """Classes 'b' and 'c' come from one subject only (allowed with three classes), so the fold testing that subject
    trains on 'a' alone: refused naming the fold, not a scikit-learn error from inside the fit."""
    y = np.array(["a"] * 12 + ["b", "c"])
    groups = np.array([f"s{i // 2}" for i in range(12)] + ["s6", "s6"])
    with pytest.raises(DataError, match=r"the training rows of fold \d \(seed 0\) hold a single class \['a'\]"):
        probe(np.random.default_rng(0).normal(size=(14, 2)), y, groups, folds=2, seeds=1)


def test_probe_models_share_splits():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 15)
    x = rng.normal(size=(30, 5)) + y[:, None]
    table = probe_models({"a": x, "b": x.copy(), "c": rng.normal(size=(30, 3))}, y, label="dx", folds=3, seeds=2)
    assert table.results["a"].folds == table.results["b"].folds  # same splits, same grids -> same numbers
    frame = table.to_frame()
    assert frame["features"].tolist() == ["a", "b", "c"]
    assert {"acc_mean", "acc_std", "auc_mean", "auc_std", "n"} <= set(frame.columns)
    md = table.to_markdown().splitlines()
    assert md[0] == "| features | acc | balanced_acc | f1 | auc | n |" and len(md) == 5
    assert md[2].startswith("| a | ") and " ± " in md[2]


def test_probe_seeds_repeat_the_cv_on_other_splits(monkeypatch):
    """Seed s of `probe(..., seeds=2)` splits the subjects its own way: the two seeds test other folds (the same
    outer split repeated would only look like a repetition)."""
    import brainjepa.evaluation.probe as probe_module

    rng = np.random.default_rng(0)
    groups = np.arange(40) // 2
    y = np.repeat(rng.integers(0, 2, 20), 2)
    outer = {}
    real = probe_module.grouped_splits

    def spy(labels, g, *, task, folds, seed):
        splits = real(labels, g, task=task, folds=folds, seed=seed)
        if len(labels) == len(y):  # an outer split (inner ones see a training fold)
            outer[len(outer)] = {tuple(test) for _, test in splits}
        return splits

    monkeypatch.setattr(probe_module, "grouped_splits", spy)
    probe(rng.normal(size=(40, 3)), y, groups, folds=4, seeds=2, Cs=[1.0])
    assert len(outer) == 2 and outer[0] != outer[1]


def test_inner_cv_keeps_each_subject_on_one_side(monkeypatch):
    """The inner CV that picks C is grouped by subject too: a subject on both sides of an inner split would let
    the search reward memorising subjects (features carry their row number in column 0 to find the subjects)."""
    import sklearn.model_selection

    searched = []
    real = sklearn.model_selection.GridSearchCV

    class Spy(real):
        def fit(self, x, y, **kwargs):
            searched.append((np.asarray(x)[:, 0].astype(int), list(self.cv)))
            return super().fit(x, y, **kwargs)

    monkeypatch.setattr(sklearn.model_selection, "GridSearchCV", Spy)
    rng = np.random.default_rng(1)
    groups = np.arange(36) // 3  # 12 subjects x 3 runs
    y = np.repeat(rng.permutation([0, 1] * 6), 3)
    x = np.column_stack([np.arange(36), rng.normal(size=(36, 3))])
    probe(x, y, groups, folds=3, seeds=1, Cs=[0.1, 1.0])
    assert len(searched) == 3
    for rows, inner in searched:
        assert len(inner) >= 2
        for train, val in inner:
            assert not set(groups[rows[train]]) & set(groups[rows[val]])


@pytest.mark.parametrize(("subjects", "inner_cv"), [(3, True), (2, False)])
def test_inner_folds_are_as_many_as_the_training_subjects_allow(subjects, inner_cv, caplog):
    """The inner CV takes min(inner_folds, training subjects) folds: 2 training subjects still make a 2-fold inner
    CV (not a refusal for want of 3, nor the fallback); 1 falls back to the grid's middle value, with a warning."""
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(subjects), 4)
    with caplog.at_level(logging.WARNING, logger="brainjepa.evaluation.probe"):
        res = probe(rng.normal(size=(len(groups), 2)), rng.normal(size=len(groups)), groups, folds=subjects, seeds=1)
    assert len(res.folds) == subjects
    assert ("too small for inner CV" in caplog.text) != inner_cv


def test_a_fold_too_small_for_an_inner_cv_uses_the_grids_middle_value():
    """One training subject per fold leaves no inner CV: the probe fits the middle of the grid, the same predictions
    as a grid of that value alone (not its first, weakest penalty)."""
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1], 6)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=12)
    grid, middle = (probe(x, y, groups, folds=2, seeds=1, alphas=a).predictions for a in ([1e-3, 10.0, 1e4], [10.0]))
    np.testing.assert_allclose(grid, middle)


def test_each_inner_cv_is_drawn_with_its_outer_seed(monkeypatch):
    """Seed s's inner CVs split with seed s too, so repetitions vary the inner splits as well as the outer ones."""
    import brainjepa.evaluation.probe as probe_module

    rng = np.random.default_rng(0)
    groups = np.arange(24) // 2
    calls = []
    real = probe_module.grouped_splits

    def spy(labels, g, *, task, folds, seed):
        calls.append((len(labels) == len(groups), seed))
        return real(labels, g, task=task, folds=folds, seed=seed)

    monkeypatch.setattr(probe_module, "grouped_splits", spy)
    probe(rng.normal(size=(24, 2)), rng.normal(size=24), groups, folds=3, seeds=2, alphas=[1.0])
    outer = [seed for is_outer, seed in calls if is_outer]
    assert outer == [0, 1]
    assert [seed for is_outer, seed in calls if not is_outer] == [0, 0, 0, 1, 1, 1]


def test_the_attentive_head_of_every_fold_has_its_own_seed(monkeypatch):
    """Each (split seed, fold) trains its attentive probe from its own seed (drawn from the config's seed, the split
    seed and the fold), so folds do not share one initialisation."""
    import brainjepa.evaluation.probe as probe_module

    seeds = []

    class Recorder:
        lr_ = weight_decay_ = epochs_ = 0

        def __init__(self, task, config):
            seeds.append(config.seed)

        def fit(self, x, y, g):
            self.mean = float(np.mean(y))
            return self

        def predict(self, x):
            return np.full(len(x), self.mean)

    monkeypatch.setattr(probe_module, "AttentiveProbe", Recorder)
    rng = np.random.default_rng(0)
    probe(rng.normal(size=(18, 4, 2)), rng.normal(size=18), np.arange(18) // 2, folds=3, seeds=2, head="attentive")
    assert len(seeds) == 6 and len(set(seeds)) == 6


def test_probe_models_passes_inner_folds_and_names_a_short_feature_set(monkeypatch):
    """`inner_folds` reaches every row's probe (not accepted and ignored), and a feature set without one row per
    label is refused by its name."""
    import brainjepa.evaluation.probe as probe_module

    rng = np.random.default_rng(0)
    groups = np.arange(24) // 2
    x, y = rng.normal(size=(24, 2)), rng.normal(size=24)
    with pytest.raises(DataError, match=r"feature sets \['short'\] do not have one row per label \(24 rows\)"):
        probe_models({"ok": x, "short": x[:-1]}, y, groups)
    inner = []
    real = probe_module.grouped_splits

    def spy(labels, g, *, task, folds, seed):
        if len(labels) < len(y):
            inner.append(folds)
        return real(labels, g, task=task, folds=folds, seed=seed)

    monkeypatch.setattr(probe_module, "grouped_splits", spy)
    probe_models({"a": x}, y, groups, folds=3, seeds=1, inner_folds=2)
    assert inner == [2, 2, 2]


def test_probability_columns_follow_the_classes_of_the_training_fold(monkeypatch):
    """A training fold without class 1 gives probabilities for [0, 2] only: they go to columns 0 and 2 of the
    full class list and column 1 stays 0 (packed into the first columns, class 2's scores would be read as 1's)."""
    import brainjepa.evaluation.probe as probe_module
    from brainjepa.evaluation.probe import _score

    class Fitted:
        classes_ = np.array([0, 2])

        def predict_proba(self, x):
            return np.column_stack([1 - x[:, 0], x[:, 0]])

    seen = []
    real = probe_module.classification_metrics
    monkeypatch.setattr(probe_module, "classification_metrics",
                        lambda y, pred, score, labels: seen.append(score) or real(y, pred, score, labels=labels))
    x = np.array([[0.1], [0.2], [0.6], [0.9]])
    _score(Fitted(), x, np.array([0, 0, 2, 2]), np.array([0, 1, 2, 2]), "classification", np.array([0, 1, 2]))
    (score,) = seen
    assert np.array_equal(score, np.column_stack([1 - x[:, 0], np.zeros(4), x[:, 0]]))


# ------------------------------------------------------------------------------------------------- baselines
def test_functional_connectivity():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 100))
    fc = functional_connectivity([a, a[[1, 0, 2, 3]]])
    assert fc.shape == (2, 6)
    np.testing.assert_allclose(fc[0], np.arctanh(np.corrcoef(a)[np.triu_indices(4, 1)]), rtol=1e-5)
    assert fc[0, 0] == pytest.approx(fc[1, 0])  # swapping ROIs 0 and 1 keeps their own pair
    dup = functional_connectivity([np.vstack([a[:1], a[:1]])])
    assert np.isfinite(dup).all() and dup[0, 0] > 5  # r = 1 clipped, not infinite
    with pytest.raises(DataError, match="sample 1: has 3 ROIs but the runs before it have 4"):
        functional_connectivity([a, a[:3]])


def test_functional_connectivity_of_a_constant_roi_is_zero_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """A constant ROI has no correlation: its pairs are 0 (finite, so a probe can still run), the other pairs are
    untouched, and the run is counted in a warning."""
    a = np.random.default_rng(0).normal(size=(4, 50))
    flat = a.copy()
    flat[2] = 3.0
    with caplog.at_level(logging.WARNING):
        fc = functional_connectivity([a, flat])
    upper = np.triu_indices(4, 1)
    with_2 = (upper[0] == 2) | (upper[1] == 2)
    assert np.isfinite(fc).all() and (fc[1, with_2] == 0).all()
    np.testing.assert_allclose(fc[1, ~with_2], fc[0, ~with_2], rtol=1e-6)
    assert "1 runs have a constant ROI" in caplog.text


def test_random_init_is_seeded_and_keeps_the_architecture(trained):
    model = BrainJEPA.from_pretrained(trained)
    state = torch.get_rng_state()
    a, b, c = random_init_like(model, 0), random_init_like(model, 0), random_init_like(model, 1)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.config == model.config and a.metadata == model.metadata
    wa, wb, wc, wm = (m.target_encoder.blocks[0].attn.qkv.weight for m in (a, b, c, model))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc) and not torch.equal(wa, wm)


# ------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained(store, tmp_path_factory) -> Path:
    """A tiny model pretrained for a few steps (as in tests/test_training.py)."""
    from brainjepa.config import load_config
    from brainjepa.training import pretrain

    overrides = {
        "data.path": str(store), "data.crop_size": f"[{R},{T}]", "data.batch_size": 4, "data.num_workers": 0,
        "data.sampling_rate": 1, "data.pin_mem": "false", "data.gradient_components": 8,
        "data.gradient_sparsity": 0.5, "mask.patch_size": 16, "meta.model_name": "vit_tiny", "meta.embed_dim": 32,
        "meta.depth": 1, "meta.num_heads": 2, "meta.pred_emb_dim": 16, "meta.pred_depth": 1,
        "meta.use_bfloat16": "false", "meta.accumulation_steps": 1, "optimization.epochs": 2, "optimization.warmup": 1,
        "optimization.start_lr": 1e-4, "logging.checkpoint_every": 100, "logging.collapse_every": 100,
    }
    run = tmp_path_factory.mktemp("run") / "r"
    return pretrain(load_config(None, [f"{k}={v}" for k, v in overrides.items()]), run)


def test_probe_cli_prints_and_saves_three_rows(store, trained, tmp_path, capsys):
    out = tmp_path / "probe"
    code = main(["probe", "--data", str(store), "--label", "group", "--model", str(trained), "--folds", "3",
                 "--seeds", "2", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "probe of 'group' (classification)" in printed
    table = pd.read_csv(out / "probe.csv")
    assert table["features"].tolist() == ["brainjepa", "random-init", "FC"]
    assert np.isfinite(table[["acc_mean", "acc_std", "balanced_acc_mean", "f1_mean", "auc_mean"]].to_numpy()).all()
    assert (table["n"] == 16).all()
    md = (out / "probe.md").read_text()
    for row in ("| brainjepa |", "| random-init |", "| FC |"):
        assert row in md and row in printed
    folds = pd.read_csv(out / "probe_folds.csv")
    assert len(folds) == 3 * 2 * 3  # feature sets x seeds x folds


def test_probe_cli_from_embeddings_file_and_regression(store, trained, tmp_path, capsys, caplog):
    emb = tmp_path / "emb.npy"
    assert main(["embed", "--model", str(trained), "--data", str(store), "--out", str(emb), "--no-progress"]) == 0
    with caplog.at_level(logging.WARNING):
        code = main(["probe", "--data", str(store), "--label", "coupling", "--embeddings", str(emb), "--folds", "3",
                     "--seeds", "1", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "(regression)" in printed and "| pearson_r |" in printed.replace(" | n |", " |")
    assert "| FC |" in printed and "random-init" not in printed
    assert "random-init baseline skipped" in caplog.text


def test_probe_store_errors(store, trained, tmp_path, capsys):
    with pytest.raises(DataError, match=r"no phenotype column 'diagnosis' \(available: \[.*'coupling', 'group'"):
        probe_store(store, "diagnosis", model=trained)
    with pytest.raises(ConfigError, match="exactly one of a model"):
        probe_store(store, "group")
    with pytest.raises(ConfigError, match=r"unknown baselines \['pca'\]"):
        probe_store(store, "group", model=trained, baselines=["pca"])
    with pytest.raises(ConfigError, match=r"random_init_seed \(--random-init-seed\) must be an integer >= 0, got -1"):
        probe_store(store, "group", model=trained, random_init_seed=-1)
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 32), np.float32))
    pd.DataFrame({"subject": ["ghost"], "run": ["1"]}).to_csv(str(bad) + ".index.csv", index=False)
    with pytest.raises(DataError, match="1 embedding rows match no run .* subject 'ghost' run '1'"):
        probe_store(store, "group", embeddings=bad)
    assert main(["probe", "--data", str(store), "--label", "group", "--model", str(trained), "--folds", "20",
                 "--no-progress"]) == 2
    assert "16 groups (subjects) cannot make 20 folds" in capsys.readouterr().err


def test_probe_store_builds_the_random_init_row_from_its_seed(store, trained, monkeypatch):
    """random_init_seed reaches the random-init baseline (ignored, every seed would give seed 0's row)."""
    import brainjepa.evaluation.probe as probe_module

    class Built(Exception):
        pass

    def spy(model, seed):
        raise Built(seed)

    monkeypatch.setattr(probe_module, "random_init_like", spy)
    with pytest.raises(Built, match="^7$"):
        probe_store(store, "group", model=trained, baselines=["random-init"], random_init_seed=7, progress=False)


@pytest.mark.parametrize(("head", "default"), [("linear", "roi"), ("attentive", "tokens")])
def test_each_head_reads_its_documented_default_pooling(head, default):
    """Without a pooling the linear head reads per-ROI means and the attentive head all tokens (probe_store's
    documented defaults)."""
    from brainjepa.evaluation.probe import pooling_for_head

    assert pooling_for_head(head, None) == default


def test_the_table_reports_each_metrics_mean_and_std():
    """probe.csv's <metric>_mean / <metric>_std columns and probe.md's cells hold the summary's mean and std, in
    that order."""
    from brainjepa.evaluation.probe import ProbeResult, ProbeTable

    summary = {"mae": (2.0, 0.5), "mse": (5.0, 1.0), "pearson_r": (0.3, 0.1)}
    table = ProbeTable("age", "regression", {"a": ProbeResult("regression", [], summary, n_samples=10)})
    row = table.to_frame().iloc[0]
    assert (row["mae_mean"], row["mae_std"], row["pearson_r_mean"], row["n"]) == (2.0, 0.5, 0.3, 10)
    assert table.to_markdown().splitlines()[2] == "| a | 2.000 ± 0.500 | 5.000 ± 1.000 | 0.300 ± 0.100 | 10 |"


def test_embeddings_file_rows_are_matched_to_runs_whatever_their_order(store, trained, tmp_path):
    """Rows of an embeddings file are matched to runs (and so to labels and groups) by subject and run: the same
    rows shuffled give the same probe."""
    from brainjepa.evaluation.embed import StoreEmbeddings

    result = embed_store(trained, store, progress=False)
    order = np.random.default_rng(0).permutation(len(result.index))
    shuffled = save_embeddings(StoreEmbeddings(result.embeddings[order], result.index.iloc[order]),
                               tmp_path / "shuffled.npy")
    tables = [probe_store(store, "coupling", embeddings=path, folds=3, seeds=1, baselines=(), progress=False)
              for path in (save_embeddings(result, tmp_path / "stored.npy"), shuffled)]
    pd.testing.assert_frame_equal(tables[0].to_frame(), tables[1].to_frame())


def test_embeddings_file_rows_of_unlabelled_runs_are_left_out(store, trained, tmp_path):
    """With the first runs' label emptied, a file of every run's rows probes as a file of the labelled runs' rows
    alone (rows are kept by the label mask, not by position); a file of unlabelled runs only is refused by name."""
    import shutil

    from brainjepa.evaluation.embed import StoreEmbeddings

    gapped = tmp_path / "gapped"
    shutil.copytree(store, gapped)
    manifest = pd.read_csv(gapped / "manifest.csv")
    manifest.loc[:3, "coupling"] = np.nan
    manifest.to_csv(gapped / "manifest.csv", index=False)
    result = embed_store(trained, store, progress=False)
    labelled = np.arange(len(result.index)) >= 4

    def part(rows: np.ndarray, name: str) -> Path:
        return save_embeddings(StoreEmbeddings(result.embeddings[rows], result.index.iloc[rows]), tmp_path / name)

    tables = [probe_store(gapped, "coupling", embeddings=path, folds=3, seeds=1, baselines=(), progress=False)
              for path in (part(np.ones_like(labelled), "all.npy"), part(labelled, "labelled.npy"))]
    assert tables[0].to_frame()["n"].iloc[0] == len(result.index) - 4
    pd.testing.assert_frame_equal(tables[0].to_frame(), tables[1].to_frame())
    with pytest.raises(DataError, match="unlabelled.npy: no embedding row belongs to a run with a 'coupling' label"):
        probe_store(gapped, "coupling", embeddings=part(~labelled, "unlabelled.npy"), folds=3, seeds=1, baselines=(),
                    progress=False)


def test_settings_of_the_unused_head_are_refused(store, trained, tmp_path):
    """Each head's own settings, given with the other head, would change nothing: refused before any work."""
    from brainjepa.evaluation.attentive import AttentiveConfig

    x, y = np.random.default_rng(0).standard_normal((12, 4)), np.repeat([0, 1], 6)
    with pytest.raises(ConfigError, match="^attentive= configures the attentive head, and the head is linear"):
        probe(x, y, attentive=AttentiveConfig(epochs=2))
    with pytest.raises(ConfigError, match="^attentive= configures"):
        probe_store(store, "group", model=trained, attentive=AttentiveConfig(epochs=2))
    with pytest.raises(ConfigError, match="^inner_folds, Cs tune the linear head, and the head is attentive"):
        probe(x[:, None], y, head="attentive", inner_folds=4, Cs=[1.0])
    emb = tmp_path / "e.npy"
    np.save(emb, np.zeros((1, 4), np.float32))
    with pytest.raises(ConfigError, match="^random_init_seed applies to embedding with a model"):
        probe_store(store, "group", embeddings=emb, random_init_seed=3)


def test_probe_store_roi_pooling(store, trained):
    table = probe_store(store, "group", model=trained, pooling="roi", baselines=["random-init"], folds=2, seeds=1,
                        progress=False)
    assert list(table.results) == ["brainjepa", "random-init"]
    assert table.results["brainjepa"].n_samples == 16
    with pytest.raises(ConfigError, match="linear probe: pooling must be 'roi', 'mean' or 'tokenfc', got 'tokens'"):
        probe_store(store, "group", model=trained, pooling="tokens")


def test_scores_are_embedded_in_fp32_unless_asked(store, trained, monkeypatch):
    """probe and evaluate embed in fp32 by default: `auto` on a bf16 CPU follows stored timings, so the same
    command could score bf16 embeddings one day and fp32 the next; `embed` keeps auto (its choice is logged)."""
    import brainjepa.evaluation.probe as probe_module
    from brainjepa.cli import build_parser
    from brainjepa.evaluation.suite import SuiteOptions

    seen = []
    embed_store = probe_module.embed_store

    def spy(*args, options, **kwargs):
        seen.append(options.precision)
        return embed_store(*args, options=options, **kwargs)

    monkeypatch.setattr(probe_module, "embed_store", spy)
    probe_store(store, "group", model=trained, baselines=["random-init"], folds=2, seeds=1, progress=False)
    assert seen == ["fp32", "fp32"]
    assert SuiteOptions().embed.precision == "fp32"
    parser = build_parser()
    sources = {"probe": ["--data", "d", "--label", "y"], "embed": ["--data", "d"], "evaluate": []}
    for command, expected in (("probe", "fp32"), ("evaluate", "fp32"), ("embed", "auto")):
        args = [command, "--model", "m", "--out", "o", *sources[command]]
        assert parser.parse_args(args).precision == expected
    assert parser.parse_args(["evaluate", "--model", "m", "--out", "o", "--precision", "auto"]).precision == "auto"


def test_probe_store_tokenfc_pooling(store, trained, monkeypatch, capsys):
    import brainjepa.evaluation.probe as probe_module

    shapes = []
    original = probe_module.probe_models

    def spy(features, *args, **kwargs):
        shapes.extend((name, x.shape) for name, x in features.items())
        return original(features, *args, **kwargs)

    monkeypatch.setattr(probe_module, "probe_models", spy)
    table = probe_store(store, "group", model=trained, pooling="tokenfc", baselines=["random-init"], folds=2,
                        seeds=1, progress=False)
    pairs = R * (R - 1) // 2
    assert shapes == [("brainjepa", (16, pairs)), ("random-init", (16, pairs))]
    assert all(np.isfinite(r.summary["balanced_acc"][0]) for r in table.results.values())
    assert main(["probe", "--data", str(store), "--label", "group", "--model", str(trained), "--pooling", "tokenfc",
                 "--folds", "2", "--seeds", "1", "--baselines", "--no-progress"]) == 0
    assert "| brainjepa |" in capsys.readouterr().out and shapes[-1] == ("brainjepa", (16, pairs))
    assert main(["probe", "--data", str(store), "--label", "group", "--model", str(trained), "--pooling", "tokenfc",
                 "--head", "attentive", "--no-progress"]) == 2
    assert "attentive probe: pooling must be 'tokens' or 'roi', got 'tokenfc'" in capsys.readouterr().err


def test_cli_choices_are_the_values_the_library_takes():
    """The flags offer exactly what the library accepts, taken from its constants (no second list to drift)."""
    parser = build_parser(["probe", "finetune", "evaluate", "quickstart"])
    choices = {(p.prog.split()[-1], a.option_strings[-1]): tuple(a.choices)
               for p in all_parsers(parser) for a in p._actions if a.option_strings and a.choices}
    assert choices["probe", "--task"] == TASK_KINDS == ("classification", "regression")
    assert choices["finetune", "--task"] == ("auto", *TASK_KINDS)
    assert [FinetuneConfig(task=t).task for t in choices["finetune", "--task"]] == list(choices["finetune", "--task"])
    assert choices["probe", "--baselines"] == BASELINES
    assert choices["probe", "--head"] == choices["evaluate", "--head"] == HEADS == ("linear", "attentive")
    assert set(choices["evaluate", "--pooling"]) == {p for head in HEADS for p in POOLINGS_FOR_HEAD[head]}
    assert choices["quickstart", "--data"] == ("connattractor", "simulated")
    for task in ("identification", "auto"):  # a kind the probe cannot learn is refused by the library too
        with pytest.raises(ConfigError, match="'classification' or 'regression'"):
            probe(np.zeros((4, 2)), np.arange(4.0), task=task)


def test_cli_random_init_seed_reaches_probe_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """--random-init-seed sets the weights of the random-init baseline: it must reach `probe_store`, or the
    baseline a user asked to vary stays seed 0."""
    seen = cli_call(monkeypatch, "brainjepa.cli.probe.probe_store",
                    ["probe", "--data", "d", "--label", "group", "--model", "m", "--random-init-seed", "4",
                     "--no-progress"])
    assert seen["random_init_seed"] == 4 and seen["model"] == "m" and seen["embeddings"] is None
