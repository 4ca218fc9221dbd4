"""The attentive probe: it reads a label that only a few tokens carry (where mean pooling cannot), it is seeded,
it is tuned (lr, weight decay, epochs) on held-out training subjects and never on the test fold, every setting
acts, and `probe --head attentive` / `--layer` reach it through the encoder's feature API."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, model_config
from brainjepa.cli import main
from brainjepa.errors import ConfigError, DataError, TrainingError
from brainjepa.evaluation.attentive import AttentiveConfig, AttentiveProbe, _validation_split
from brainjepa.evaluation.metrics import grouped_splits
from brainjepa.evaluation.probe import probe, probe_store

R, T = 8, 32


def token_subset_data(n: int = 120, tokens: int = 16, dim: int = 16, seed: int = 0):
    """Tokens = a fixed code per position + noise; the label s = +-1 is added as +s*v to two tokens and -s*v to
    two others, so the mean over tokens is exactly the same for both labels."""
    rng = np.random.default_rng(seed)
    position = rng.normal(size=(tokens, dim))
    v = rng.normal(size=dim)
    s = rng.choice([-1.0, 1.0], size=n)
    carrier = np.zeros(tokens)
    carrier[[1, 5]], carrier[[9, 13]] = 1.0, -1.0
    x = position + s[:, None, None] * carrier[None, :, None] * v + 0.3 * rng.normal(size=(n, tokens, dim))
    return x.astype(np.float32), s


def test_attentive_probe_reads_a_token_subset_that_mean_pooling_cancels():
    x, s = token_subset_data(n=96)
    y = (s > 0).astype(int)
    config = AttentiveConfig(epochs=40)
    attentive = probe(x, y, task="classification", folds=3, seeds=1, head="attentive", attentive=config)
    assert {"lr", "weight_decay", "epochs"} <= set(attentive.folds[0])  # each fold's choice is recorded
    mean_pooled = probe(x.mean(1), y, task="classification", folds=3, seeds=1)
    assert attentive.summary["balanced_acc"][0] > 0.9
    assert mean_pooled.summary["balanced_acc"][0] < 0.7  # chance is 0.5: the label is not in the mean


def test_attentive_regression_and_determinism():
    x, s = token_subset_data(n=90, seed=1)
    target = 3.0 * s + 10.0
    train, test = np.arange(60), np.arange(60, 90)
    config = AttentiveConfig(epochs=60, lrs=(1e-3, 3e-3), weight_decays=(0.05,), seed=3)
    a = AttentiveProbe("regression", config).fit(x[train], target[train])
    b = AttentiveProbe("regression", config).fit(x[train], target[train])
    c = AttentiveProbe("regression", dataclasses.replace(config, seed=4)).fit(x[train], target[train])
    pred = a.predict(x[test])
    assert np.corrcoef(pred, target[test])[0, 1] > 0.9
    assert abs(pred.mean() - target[test].mean()) < 1.0  # predictions are in the target's units
    assert np.array_equal(pred, b.predict(x[test]))
    assert not np.array_equal(pred, c.predict(x[test]))


def fixed(**settings) -> AttentiveConfig:
    """An untuned probe: one lr, one weight decay, no early stopping."""
    return AttentiveConfig(**{"lrs": (3e-3,), "weight_decays": (0.05,), "patience": 0, **settings})


def test_validation_split_holds_out_whole_groups_stratified():
    groups = np.repeat(np.arange(10), 3)
    y = np.repeat(np.arange(10) % 2, 3)
    train, val = _validation_split(y, groups, "classification", AttentiveConfig(val_fraction=0.2))
    assert len(np.unique(groups[val])) == 2 and not set(groups[train]) & set(groups[val])
    assert sorted(y[val].tolist()) == [0, 0, 0, 1, 1, 1]  # one subject of each class
    train3, val3 = _validation_split(y, groups, "classification", AttentiveConfig(val_fraction=0.34))
    assert len(np.unique(groups[val3])) in (3, 4)  # a third of the 10 subjects
    # 4 subjects, 2 of each class: only 2 folds fit, so half of them are held out
    train4, val4 = _validation_split(y[:12], groups[:12], "classification", AttentiveConfig())
    assert len(np.unique(groups[val4])) == 2 and sorted(set(y[val4])) == [0, 1]


def test_too_few_groups_to_tune_trains_the_grid_middle_logged(caplog):
    x, s = token_subset_data(n=24)
    groups = np.where(s > 0, 0, 1)  # one subject per class: no stratified validation split exists
    assert _validation_split(s, groups, "classification", AttentiveConfig()) is None
    cfg = AttentiveConfig(epochs=5)
    fitted = AttentiveProbe("classification", cfg).fit(x, s, groups)
    assert (fitted.lr_, fitted.weight_decay_, fitted.epochs_, fitted.search_) == (cfg.lrs[1], cfg.weight_decays[0],
                                                                                  5, [])
    assert "too few groups in the training rows for a validation split" in caplog.text


def test_default_probe_is_tuned_on_held_out_groups():
    cfg = AttentiveConfig()
    assert cfg.tuned and cfg.patience > 0 and len(cfg.grid) > 1
    assert (1e-3, 0.05) in cfg.grid  # the former fixed setting is one of the candidates
    x, s = token_subset_data(n=60)
    fitted = AttentiveProbe("classification", AttentiveConfig(epochs=30)).fit(x, s, groups=np.arange(60) // 3)
    assert [(d["lr"], d["weight_decay"]) for d in fitted.search_] == AttentiveConfig().grid
    best = min(fitted.search_, key=lambda d: d["val_loss"])
    assert (fitted.lr_, fitted.weight_decay_, fitted.epochs_) == (best["lr"], best["weight_decay"], best["epochs"])
    assert 1 <= fitted.epochs_ <= 30 and set(fitted.predict(x[:5])) <= {-1.0, 1.0}


def test_tuning_picks_the_learning_rate_and_epochs_the_data_need():
    x, s = token_subset_data(n=120)
    train, held = np.arange(80), np.arange(80, 120)
    groups = np.arange(80) // 2
    cfg = AttentiveConfig(epochs=60, lrs=(1e-5, 3e-3), weight_decays=(0.05,), patience=5)
    learnable = AttentiveProbe("classification", cfg).fit(x[train], s[train], groups)
    # 1e-5 cannot learn the label in 60 epochs; 3e-3 can, and keeps improving to the last epoch
    assert learnable.lr_ == 3e-3 and learnable.epochs_ == 60
    assert learnable.search_[1]["val_loss"] < 0.1 < 0.5 < learnable.search_[0]["val_loss"]
    assert (learnable.predict(x[held]) == s[held]).mean() > 0.9
    noise = np.random.default_rng(0).permutation(s[train])
    shuffled = AttentiveProbe("classification", cfg).fit(x[train], noise, groups)
    assert shuffled.epochs_ <= 10  # nothing to learn: the validation loss is lowest after a few epochs


def test_refit_is_the_chosen_setting_trained_on_all_rows():
    x, s = token_subset_data(n=60)
    groups = np.arange(60) // 3
    cfg = AttentiveConfig(epochs=20, lrs=(1e-3, 3e-3), weight_decays=(0.05,), patience=3, seed=2)
    tuned = AttentiveProbe("classification", cfg).fit(x, s, groups)
    again = AttentiveProbe("classification", fixed(lrs=(tuned.lr_,), weight_decays=(tuned.weight_decay_,),
                                                   epochs=tuned.epochs_, seed=2)).fit(x, s)
    np.testing.assert_array_equal(tuned.predict_proba(x), again.predict_proba(x))
    # refit=False keeps the chosen grid point's best epoch, trained on the non-validation groups only
    kept = AttentiveProbe("classification", dataclasses.replace(cfg, refit=False)).fit(x, s, groups)
    fit_rows, _ = _validation_split(s, groups, "classification", cfg)
    alone = AttentiveProbe("classification", fixed(lrs=(kept.lr_,), weight_decays=(kept.weight_decay_,),
                                                   epochs=kept.epochs_, seed=2)).fit(x[fit_rows], s[fit_rows])
    np.testing.assert_allclose(kept.predict_proba(x), alone.predict_proba(x), rtol=0, atol=1e-6)
    assert not np.allclose(kept.predict_proba(x), tuned.predict_proba(x))


def test_the_test_fold_never_informs_the_choice():
    """Garbage labels on one outer fold's test rows leave that fold's choice and predictions exactly as they
    were, while they do reach the folds that train on those rows."""
    x, s = token_subset_data(n=72, seed=3)
    target = 2.0 * s + np.random.default_rng(1).normal(0.0, 0.5, 72)
    subjects = np.arange(72) // 3
    test0 = grouped_splits(target, subjects, task="regression", folds=3, seed=0)[0][1]
    garbage = target.copy()
    garbage[test0] = np.random.default_rng(7).normal(100.0, 50.0, len(test0))
    cfg = AttentiveConfig(epochs=15, lrs=(1e-3, 1e-2), weight_decays=(0.05, 5.0), patience=3)
    clean, dirty = (probe(x, t, subjects, task="regression", folds=3, seeds=1, head="attentive", attentive=cfg)
                    for t in (target, garbage))
    chosen = [{k: f[k] for k in ("lr", "weight_decay", "epochs")} for f in clean.folds]
    assert chosen[0] == {k: dirty.folds[0][k] for k in chosen[0]}
    np.testing.assert_array_equal(clean.predictions[0, test0], dirty.predictions[0, test0])
    others = np.setdiff1d(np.arange(72), test0)
    assert not np.allclose(clean.predictions[0, others], dirty.predictions[0, others])


def test_patience_counts_epochs_since_the_last_improvement(monkeypatch):
    """Early stopping waits `patience` epochs after the *last* improvement: validation losses that alternate
    worse / better never go 2 epochs without a new best, so patience 2 runs every epoch and keeps the last best
    (epoch 5 of [3, 4, 2, 5, 1, 6]); counting every worse epoch since the start would stop at epoch 4."""
    scripted = iter([3.0, 4.0, 2.0, 5.0, 1.0, 6.0])
    real_loss = AttentiveProbe._loss

    def loss(self, out, target):
        if torch.is_grad_enabled():  # a training step
            return real_loss(self, out, target)
        return torch.tensor(next(scripted))  # the epoch's validation loss

    monkeypatch.setattr(AttentiveProbe, "_loss", loss)
    x, s = token_subset_data(n=24, dim=8)
    cfg = AttentiveConfig(heads=2, epochs=6, lrs=(1e-2,), weight_decays=(0.05,), batch_size=8, patience=2,
                          refit=False)
    fitted = AttentiveProbe("classification", cfg).fit(x, s, np.arange(24) // 2)
    assert fitted.epochs_ == 5 and fitted.search_[0]["val_loss"] == 1.0
    assert next(scripted, None) is None  # all six epochs ran


# Each setting of AttentiveConfig with a value different from BASE's: fitting with it must change the probe.
# (BASE stops early: it chooses lr 1e-2 at epoch 8 of 12, so fewer epochs or no early stopping change it too.)
BASE = {"heads": 2, "queries": 1, "epochs": 12, "lrs": (1e-2, 3e-2), "weight_decays": (0.05,), "batch_size": 16,
        "patience": 3, "val_fraction": 0.2, "refit": True, "seed": 0}
OTHER = {"heads": 4, "queries": 2, "epochs": 3, "lrs": (3e-3,), "weight_decays": (5.0,), "batch_size": 7,
         "patience": 0, "val_fraction": 0.5, "refit": False, "seed": 1}


def test_every_setting_takes_effect():
    assert set(BASE) == set(OTHER) == {f.name for f in dataclasses.fields(AttentiveConfig)}
    x, s = token_subset_data(n=48, dim=8, seed=2)
    groups = np.arange(48) // 2
    fitted = AttentiveProbe("classification", AttentiveConfig(**BASE)).fit(x, s, groups)
    assert (fitted.lr_, fitted.epochs_) == (1e-2, 8)
    base = fitted.predict_proba(x)
    for name, value in OTHER.items():
        other = AttentiveProbe("classification", AttentiveConfig(**{**BASE, name: value})).fit(x, s, groups)
        assert not np.allclose(other.predict_proba(x), base, rtol=0, atol=1e-7), name


def test_settings_that_could_not_act_are_refused():
    x, s = token_subset_data(n=20, dim=16)
    with pytest.raises(ConfigError, match="attentive.heads \\(3\\) must divide the token width D = 16"):
        AttentiveProbe("classification", AttentiveConfig(heads=3)).fit(x, s)
    with pytest.raises(ConfigError, match="attentive.val_fraction would have no effect"):
        fixed(val_fraction=0.3)
    with pytest.raises(ConfigError, match="attentive.val_fraction and attentive.refit would have no effect"):
        fixed(val_fraction=0.3, refit=False)
    with pytest.raises(ConfigError, match=r"attentive.lrs must be one or more distinct finite numbers > 0"):
        AttentiveConfig(lrs=())
    with pytest.raises(ConfigError, match=r"attentive.lrs must be one or more distinct"):
        AttentiveConfig(lrs=(1e-3, -1.0))
    with pytest.raises(ConfigError, match=r"attentive.weight_decays must be one or more distinct finite numbers >= 0"):
        AttentiveConfig(weight_decays=(0.1, 0.1))
    with pytest.raises(ConfigError, match=r"attentive.lrs must be a sequence of numbers \(one value: \(0.001,\)\)"):
        AttentiveConfig(lrs=1e-3)
    with pytest.raises(ConfigError, match=r"attentive.val_fraction must be a number > 0 and <= 0.5, got 0.7"):
        AttentiveConfig(val_fraction=0.7)
    assert AttentiveConfig(lrs=[1e-3, 1e-2]).lrs == (1e-3, 1e-2)  # any sequence, kept as a tuple


def test_attentive_refusals():
    x, s = token_subset_data(n=20)
    with pytest.raises(DataError, match=r"token features \[N, tokens, D\], got shape \[20, 16\]"):
        AttentiveProbe("classification").fit(x.mean(1), s)
    with pytest.raises(DataError, match="attentive probe needs token features"):
        probe(x.mean(1), s, head="attentive", folds=2, seeds=1)
    with pytest.raises(ConfigError, match="probe head must be one of"):
        probe(x, s, head="mlp")
    with pytest.raises(ConfigError, match="attentive.epochs must be an integer >= 1, got 0"):
        AttentiveConfig(epochs=0)
    with pytest.raises(ConfigError, match="call fit before predict"):
        AttentiveProbe("classification").predict(x)


def _scripted_validation(monkeypatch: pytest.MonkeyPatch, losses: list[float]) -> None:
    """Make every validation loss the next of `losses` (training steps keep their real loss)."""
    scripted = iter(losses)
    real_loss = AttentiveProbe._loss

    def loss(self, out, target):
        return real_loss(self, out, target) if torch.is_grad_enabled() else torch.tensor(next(scripted))

    monkeypatch.setattr(AttentiveProbe, "_loss", loss)


def test_probabilities_are_per_sample_and_every_query_counts() -> None:
    """predict_proba gives each sample a distribution over the classes (rows sum to 1), and with several queries
    per head every query's output reaches the probe (their outputs are averaged, none dropped)."""
    x, s = token_subset_data(n=24, dim=8)
    fitted = AttentiveProbe("classification", fixed(heads=2, queries=2, epochs=2)).fit(x, s)
    proba = fitted.predict_proba(x)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    torch.manual_seed(0)
    pooler = fitted.model_[0]
    with torch.no_grad():
        pooler.query[:, pooler.heads:] += torch.randn(8, pooler.heads)  # columns of the second query
    assert not np.allclose(fitted.predict_proba(x), proba, rtol=0, atol=1e-7)


def test_without_early_stopping_each_grid_point_scores_its_last_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """patience=0 with a grid: every point trains all epochs and scores the loss after the last one, even where an
    earlier epoch was lower."""
    _scripted_validation(monkeypatch, [1.0, 3.0, 2.0, 4.0, 5.0, 0.5])
    x, s = token_subset_data(n=24, dim=8)
    cfg = AttentiveConfig(heads=2, epochs=3, lrs=(1e-3, 1e-2), weight_decays=(0.05,), patience=0, refit=False)
    fitted = AttentiveProbe("classification", cfg).fit(x, s, np.arange(24) // 2)
    assert [(d["epochs"], d["val_loss"]) for d in fitted.search_] == [(3, 2.0), (3, 0.5)]
    assert (fitted.lr_, fitted.epochs_) == (1e-2, 3)


def test_ties_in_validation_loss_go_to_the_first_grid_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """Equal validation losses choose the first (lr, weight decay) in grid order, as documented."""
    _scripted_validation(monkeypatch, [1.0, 1.0])
    x, s = token_subset_data(n=24, dim=8)
    cfg = AttentiveConfig(heads=2, epochs=1, lrs=(1e-3, 1e-2), weight_decays=(0.05,), patience=1, refit=False)
    assert AttentiveProbe("classification", cfg).fit(x, s, np.arange(24) // 2).lr_ == 1e-3


def test_a_grid_that_never_has_a_finite_validation_loss_is_a_training_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """If no grid point ever reaches a finite validation loss the fit stops with a TrainingError that says what to
    change, rather than refitting zero epochs."""
    _scripted_validation(monkeypatch, [float("nan")] * 4)
    x, s = token_subset_data(n=24, dim=8)
    cfg = AttentiveConfig(heads=2, epochs=2, lrs=(1e-3, 1e-2), weight_decays=(0.05,), patience=1)
    with pytest.raises(TrainingError, match="validation loss was never finite"):
        AttentiveProbe("classification", cfg).fit(x, s, np.arange(24) // 2)


def test_regression_validation_folds_are_capped_by_the_groups() -> None:
    """With fewer training groups than round(1 / val_fraction) folds, regression still holds out whole groups:
    3 subjects give a 3-fold split, one subject held out."""
    y, groups = np.arange(12.0), np.repeat([0, 1, 2], 4)
    fit_rows, val_rows = _validation_split(y, groups, "regression", AttentiveConfig(val_fraction=0.2))
    assert len(np.unique(groups[val_rows])) == 1 and not set(groups[fit_rows]) & set(groups[val_rows])


def test_the_batch_order_follows_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed draws the mini-batch order as well as the initial weights: with the initialisation pinned, two
    seeds still train different probes (a fixed order would make them equal)."""
    real_manual_seed = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda seed: real_manual_seed(0))
    x, s = token_subset_data(n=24, dim=8)
    a, b = (AttentiveProbe("classification", fixed(heads=2, epochs=2, batch_size=4, seed=k)).fit(x, s)
            for k in (1, 2))
    assert not np.allclose(a.predict_proba(x), b.predict_proba(x), rtol=0, atol=1e-7)


def test_a_learning_rate_of_zero_is_refused() -> None:
    """lr 0 trains nothing; the grid of learning rates takes numbers > 0 only (weight decay 0 is fine)."""
    with pytest.raises(ConfigError, match=r"attentive.lrs must be one or more distinct finite numbers > 0"):
        AttentiveConfig(lrs=(0.0, 1e-3))
    assert AttentiveConfig(weight_decays=(0.0,)).weight_decays == (0.0,)


# ------------------------------------------------------------------------------------------- store and CLI
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from brainjepa.data.simulate import SimulationConfig, simulate_store

    path = tmp_path_factory.mktemp("store") / "s"
    simulate_store(path, SimulationConfig(subjects=12, rois=R, frames=T, modules=2, seed=0), progress=False)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = model_config("vit_tiny", num_rois=R, num_frames=T, embed_dim=16, depth=2, num_heads=2, pred_embed_dim=8,
                       pred_depth=1, gradient_dim=3)
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model") / "m"
    BrainJEPA(cfg, gradient=torch.randn(R, 3)).save_pretrained(path)
    return path


def test_probe_store_attentive_head_and_layer(store, model_dir, monkeypatch):
    import brainjepa.evaluation.probe as probe_module
    from brainjepa.evaluation.embed import EmbedOptions

    seen = []
    original = probe_module.embed_store

    def spy(model, data, **kwargs):
        seen.append((kwargs["pooling"], kwargs["options"].layer))
        return original(model, data, **kwargs)

    monkeypatch.setattr(probe_module, "embed_store", spy)
    table = probe_store(store, "group", model=model_dir, head="attentive", options=EmbedOptions(layer=0),
                        attentive=AttentiveConfig(epochs=5), folds=2, seeds=1, progress=False)
    assert list(table.results) == ["brainjepa", "random-init", "FC"]
    assert seen == [("tokens", 0), ("tokens", 0)]  # both encoder rows: tokens of block 0
    assert all(np.isfinite(r.summary["acc"][0]) for r in table.results.values())
    with pytest.raises(ConfigError, match="attentive probe: pooling must be 'tokens' or 'roi', got 'mean'"):
        probe_store(store, "group", model=model_dir, head="attentive", pooling="mean")


def test_probe_cli_attentive_layer_and_embeddings_refusals(store, model_dir, tmp_path, capsys):
    code = main(["probe", "--data", str(store), "--label", "group", "--model", str(model_dir), "--head", "attentive",
                 "--layer", "-2", "--folds", "2", "--seeds", "1", "--baselines", "--no-progress"])
    assert code == 0 and "| brainjepa |" in capsys.readouterr().out
    assert main(["probe", "--data", str(store), "--label", "group", "--model", str(model_dir), "--layer", "5",
                 "--no-progress"]) == 2
    assert "layer must be in [-2, 2)" in capsys.readouterr().err
    emb = tmp_path / "emb.npy"
    assert main(["embed", "--model", str(model_dir), "--data", str(store), "--out", str(emb), "--no-progress"]) == 0
    code = main(["probe", "--data", str(store), "--label", "group", "--embeddings", str(emb), "--layer", "0",
                 "--windows", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "--layer --windows need --model" in err
