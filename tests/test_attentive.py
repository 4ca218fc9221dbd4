"""The attentive probe: it reads a label that only a few tokens carry (where mean pooling cannot), it is seeded,
and `probe --head attentive` / `--layer` reach it through the encoder's feature API."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, model_config
from brainjepa.cli import main
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.attentive import AttentiveConfig, AttentiveProbe, _early_stop_split
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
    mean_pooled = probe(x.mean(1), y, task="classification", folds=3, seeds=1)
    assert attentive.summary["balanced_acc"][0] > 0.9
    assert mean_pooled.summary["balanced_acc"][0] < 0.7  # chance is 0.5: the label is not in the mean


def test_attentive_regression_and_determinism():
    x, s = token_subset_data(n=90, seed=1)
    target = 3.0 * s + 10.0
    train, test = np.arange(60), np.arange(60, 90)
    config = AttentiveConfig(epochs=60, seed=3)
    a = AttentiveProbe("regression", config).fit(x[train], target[train])
    b = AttentiveProbe("regression", config).fit(x[train], target[train])
    c = AttentiveProbe("regression", AttentiveConfig(epochs=60, seed=4)).fit(x[train], target[train])
    pred = a.predict(x[test])
    assert np.corrcoef(pred, target[test])[0, 1] > 0.9
    assert abs(pred.mean() - target[test].mean()) < 1.0  # predictions are in the target's units
    assert np.array_equal(pred, b.predict(x[test]))
    assert not np.array_equal(pred, c.predict(x[test]))


def test_early_stopping_holds_out_whole_groups():
    groups = np.repeat(np.arange(10), 3)
    train, val = _early_stop_split(30, groups, AttentiveConfig(patience=5, val_fraction=0.2),
                                   np.random.default_rng(0))
    assert len(np.unique(groups[val])) == 2 and not set(groups[train]) & set(groups[val])
    assert _early_stop_split(30, groups, AttentiveConfig(), np.random.default_rng(0))[1] is None
    x, s = token_subset_data(n=60)
    fitted = AttentiveProbe("classification", AttentiveConfig(epochs=200, patience=3)).fit(x, s, groups=None)
    assert set(fitted.predict(x[:5])) <= {-1.0, 1.0}


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
