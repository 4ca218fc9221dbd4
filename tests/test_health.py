"""Encoder health (does the encoder see the data?), the input gain, held-out subjects, and the warnings that fire."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA
from brainjepa.config import load_config
from brainjepa.data.normalize import RoiZScore, normalizer_from_dict
from brainjepa.data.store import RunStore
from brainjepa.errors import ConfigError
from brainjepa.evaluation import embed as embed_module
from brainjepa.evaluation.embed import EmbedOptions, embed, model_normalizer
from brainjepa.models.config import ModelConfig
from brainjepa.models.health import HealthMeter, calibrate_gain, encoder_health
from brainjepa.training import pretrain
from brainjepa.training.monitor import collapse_sample, collapse_stats, collapse_warning
from brainjepa.training.watch import holdout_split

R, T = 20, 64


def _model(seed: int = 0) -> BrainJEPA:
    torch.manual_seed(seed)
    cfg = ModelConfig(num_rois=R, num_frames=T, patch_size=16, embed_dim=32, depth=2, num_heads=2, pred_embed_dim=16,
                      pred_depth=1, gradient_dim=4)
    return BrainJEPA(cfg, torch.randn(R, 4))


def _windows(n: int = 8, seed: int = 0) -> torch.Tensor:
    """Unit-scale windows [n, R, T] that differ between samples (per-ROI z-scored noise)."""
    x = np.random.default_rng(seed).standard_normal((n, R, T))
    return torch.from_numpy(np.stack([RoiZScore()(w) for w in x]))


def test_health_tells_the_three_regimes_apart():
    enc, x = _model().target_encoder, _windows()
    gain = calibrate_gain(enc, x)
    big, unit, balanced = (encoder_health(enc, x * s) for s in (400.0, 1.0, gain))
    # patch-dominated: the blocks barely touch the stream and nearly all variance is content
    assert big.block_ratio < 0.1 and big.run_share > 0.85
    assert any("per-patch linear map" in p for p in big.problems())
    # position-dominated: most of the feature variance is the token position
    assert unit.run_share < 0.15 and any("mostly the token position" in p for p in unit.problems())
    # matched norms: content and position both count, no warning (a fresh 2-block model's updates are small)
    assert big.block_ratio < balanced.block_ratio and 0.15 <= balanced.run_share < big.run_share
    assert not balanced.problems()
    assert big.input_sd == pytest.approx(400 * float(x.std()), rel=1e-4)


@pytest.mark.parametrize("windows", [2, 5])
def test_run_share_is_the_across_window_share_of_one_sum_of_squares(windows):
    """The features' spread across windows at each token over their total spread about each channel's mean: a
    fraction of one total, so at most 1 (two variances with their own degrees of freedom reached 2 at two windows)."""
    enc, x = _model().target_encoder, _windows(windows) * 400.0
    with torch.no_grad():
        final = enc.forward_features(x).double()  # [W, N, D] after the final norm
    across = ((final - final.mean(0)) ** 2).sum()
    total = ((final - final.mean((0, 1))) ** 2).sum()
    share = encoder_health(enc, x).run_share
    assert share == pytest.approx(float(across / total), rel=1e-6) and 0 < share <= 1


def test_calibrated_gain_matches_patch_and_position_norms():
    enc, x = _model().target_encoder, _windows()
    gain = calibrate_gain(enc, x)
    health = encoder_health(enc, x * gain)
    assert health.patch_norm == pytest.approx(health.pos_norm, rel=1e-4)
    assert calibrate_gain(enc, 10 * x) == pytest.approx(gain / 10, rel=1e-5)  # linear in the input scale
    with pytest.raises(ValueError, match="zero patch embedding"):
        calibrate_gain(enc, torch.zeros_like(x))


def test_health_needs_two_windows_and_restores_training_mode():
    enc = _model().target_encoder.train()
    with pytest.raises(ValueError, match="at least 2 windows"):
        encoder_health(enc, _windows(1))
    encoder_health(enc, _windows(2))
    assert enc.training


def test_meter_over_batches_equals_one_pass():
    enc, x = _model().target_encoder.eval(), _windows(8) * 5
    meter = HealthMeter(enc)
    for part in (x[:2], x[2:5], x[5:]):
        meter.add(part, enc.forward_intermediates(part, [-1])[0])
    fed, whole = meter.result().to_dict(), encoder_health(enc, x).to_dict()
    assert meter.windows == 8 and fed == pytest.approx(whole, rel=1e-5)
    assert whole != pytest.approx(encoder_health(enc, x[:4]).to_dict(), rel=1e-3)  # the windows matter
    with pytest.raises(ValueError, match="at least 2 windows, got 0"):
        HealthMeter(enc).result()
    with pytest.raises(ValueError, match="3 windows but a stream of 2"):
        HealthMeter(enc).add(x[:3], enc.forward_intermediates(x[:2], [-1])[0])


def _blocks_seen(model: BrainJEPA) -> list[int]:
    """Windows through the target encoder's first block, counted per call."""
    seen: list[int] = []
    model.target_encoder.blocks[0].register_forward_hook(lambda mod, args, out: seen.append(len(out)))
    return seen


def _logged_health(caplog) -> str:
    return next(r.getMessage() for r in caplog.records if r.getMessage().startswith("encoder health on"))


def test_embed_health_comes_from_its_own_passes(caplog):
    model = _model()
    seen = _blocks_seen(model)
    x = np.random.default_rng(1).standard_normal((5, R, T)).astype(np.float32) * 3 + 1
    with caplog.at_level(logging.INFO):
        out = embed(model, x, options=EmbedOptions(batch_size=2, precision="fp32"))
    assert sum(seen) == 5  # each window through the encoder once: no second pass for the check
    normalizer = model_normalizer(model)
    windows = torch.from_numpy(np.stack([normalizer(w) for w in x]).astype(np.float32))
    expected = encoder_health(model.target_encoder, windows).summary()
    assert _logged_health(caplog) == f"encoder health on 5 windows: {expected}"
    np.testing.assert_allclose(out, model.target_encoder.pool(model.target_encoder.forward_features(windows)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("options", "window"), [(EmbedOptions(windows=3), 0), (EmbedOptions(masked_views=2), None),
                                                 (EmbedOptions(layer=0), None)])
def test_embed_health_reads_one_window_per_run(options, window, caplog):
    """Fed from the passes: each run's first window; masked views or an earlier block: a pass on centre windows."""
    model = _model()
    x = np.random.default_rng(2).standard_normal((4, R, 3 * T)).astype(np.float32)
    with caplog.at_level(logging.INFO):
        embed(model, x, options=dataclasses.replace(options, precision="fp32"))
    normalizer, spec = model_normalizer(model), options.window_spec(T)
    k = options.windows if window is not None else 1
    cut = embed_module._windows  # the windows embed reads: [k, R, T] per run
    windows = torch.from_numpy(np.stack([cut(w, None, "s", spec, k, normalizer, R)[window or 0] for w in x]))
    expected = encoder_health(model.target_encoder, windows.float()).summary()
    assert _logged_health(caplog) == f"encoder health on 4 windows: {expected}"


def test_gain_is_part_of_the_normalisation_record():
    x = np.random.default_rng(0).standard_normal((R, T)) * 3 + 5
    scaled = RoiZScore().with_gain(7.5)
    np.testing.assert_allclose(scaled(x), 7.5 * RoiZScore()(x), rtol=1e-6)
    record = scaled.to_dict()
    assert record == {"kind": "roi_zscore", "eps": 0.0, "gain": 7.5}
    np.testing.assert_array_equal(normalizer_from_dict(record)(x), scaled(x))
    assert "gain" not in RoiZScore().to_dict()  # records written before gains existed read the same
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="input gain"):
            RoiZScore().with_gain(bad)
    with pytest.raises(ConfigError, match="gain must be a number"):
        normalizer_from_dict({"kind": "none", "gain": "big"})


def test_holdout_split_keeps_subjects_apart(store):
    runs = RunStore(store)
    subjects = runs.manifest["subject"].astype(str).to_numpy()
    train, held = holdout_split(runs, 0.2, seed=0)
    assert np.unique(subjects[held]).size == round(0.2 * np.unique(subjects).size)
    assert not set(subjects[train]) & set(subjects[held])
    assert sorted([*train, *held]) == list(range(len(runs)))
    assert np.array_equal(holdout_split(runs, 0.2, seed=0)[1], held)  # a function of the seed
    assert holdout_split(runs, 0.01, seed=0)[1].size > 0  # at least one subject when asked for any
    assert holdout_split(runs, 0.0, seed=0)[1].size == 0
    assert holdout_split(runs, 0.99, seed=0)[0].size > 0  # at least one subject trains, however much is held out
    assert any(not np.array_equal(holdout_split(runs, 0.2, seed=s)[1], held) for s in (1, 2, 3))  # the seed counts


def test_holdout_needs_two_subjects(tmp_path: Path) -> None:
    """A store of one subject (two runs) cannot hold a subject out: refused by name, not trained without a
    held-out loss."""
    from brainjepa.data.store import StoreWriter

    with StoreWriter(tmp_path / "one", R) as writer:
        for run in ("1", "2"):
            writer.add(_windows(1)[0].numpy(), subject="a", run=run, tr=2.0)
    with pytest.raises(ConfigError, match=r"data\.holdout=0\.2 needs at least 2 subjects, but the store .* has 1"):
        holdout_split(RunStore(tmp_path / "one"), 0.2, seed=0)


def _config(store: Path, **extra) -> list[str]:
    base = {"data.path": str(store), "data.crop_size": f"[{R},{T}]", "data.batch_size": 4, "data.num_workers": 0,
            "data.sampling_rate": 1, "data.pin_mem": "false", "data.gradient_components": 4,
            "data.gradient_sparsity": 0.5, "meta.model_name": "vit_tiny", "meta.embed_dim": 32, "meta.depth": 2,
            "meta.num_heads": 2, "meta.pred_emb_dim": 16, "meta.pred_depth": 1, "meta.precision": "fp32",
            "meta.accumulation_steps": 1, "optimization.epochs": 2, "optimization.warmup": 1,
            "data.holdout": 0.2, "logging.eval_every": 3, "logging.checkpoint_every": 100}
    return [f"{k}={v}" for k, v in {**base, **extra}.items()]


@pytest.fixture(scope="module")
def run(store, tmp_path_factory) -> Path:
    return pretrain(load_config(None, _config(store)), tmp_path_factory.mktemp("runs") / "run")


def test_pretraining_logs_heldout_loss_and_health(run):
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    measured = [r for r in rows if r["heldout_loss"]]
    assert [int(r["step"]) for r in measured] == [s for s in range(1, len(rows) + 1) if s % 3 == 0]
    assert len(rows) % 3 == 0  # so the last step has a measurement, which summary.json repeats as "end"
    for r in measured:
        assert float(r["heldout_loss"]) > 0 and 0 < float(r["run_share"]) < 1 and float(r["block_ratio"]) > 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["heldout_subjects"] == 3  # 20% of 16 subjects
    assert summary["start"]["heldout_loss"] > 0 and summary["end"] == {
        k: pytest.approx(float(measured[-1][k])) for k in summary["end"]}
    # the default input scale: a ROI z-score times the gain that matched patch and position norms at init
    model = BrainJEPA.from_pretrained(run)
    record = model.metadata["normalization"]
    assert record["kind"] == "roi_zscore" and record["gain"] == pytest.approx(summary["input_gain"])
    assert summary["start"]["patch_norm"] == pytest.approx(summary["start"]["pos_norm"], rel=0.05)
    assert model.metadata["input_sd"] == pytest.approx(summary["start"]["input_sd"])


def test_the_heldout_loss_leaves_a_training_model_in_training_mode(store):
    """The held-out loss is measured in eval mode (no drop path), then the model goes back to the mode it was in:
    a run measured mid-training must keep training with drop path on, and an eval-mode model stays in eval."""
    from brainjepa.data.dataset import StoreDataset
    from brainjepa.data.windows import WindowSpec
    from brainjepa.training.watch import Watch

    cfg = load_config(None, _config(store))
    train, held = holdout_split(RunStore(store), cfg.data.holdout, cfg.meta.seed)
    watch = Watch(StoreDataset(store, indices=train, window=WindowSpec(frames=T, sampling_rate=1)), held, cfg)
    torch.manual_seed(0)
    model = BrainJEPA(cfg.model, torch.randn(R, cfg.model.gradient_dim))
    for mode in (True, False):
        model.train(mode)
        assert watch.heldout_loss(model, contextlib.nullcontext) is not None
        assert all(m.training == mode for m in model.modules())


class _MeanLoss(torch.nn.Module):
    """A stand-in for BrainJEPA whose loss is the mean of its input batch; records the mode of every pass."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.modes: list[bool] = []

    def forward(self, x: torch.Tensor, context: torch.Tensor, target: torch.Tensor) -> SimpleNamespace:
        self.modes.append(self.training)
        return SimpleNamespace(loss=x.mean() * self.scale)


def test_the_heldout_loss_is_the_mean_over_windows_in_eval_mode(store):
    """Each held-out window counts once whatever the batches (a mean of batch means would weigh the windows of a
    short last batch more), and every pass runs in eval mode (no drop path)."""
    from brainjepa.data.dataset import StoreDataset
    from brainjepa.data.windows import WindowSpec
    from brainjepa.training.watch import Watch

    cfg = load_config(None, _config(store, **{"data.batch_size": 2}))
    train, held = holdout_split(RunStore(store), cfg.data.holdout, cfg.meta.seed)
    watch = Watch(StoreDataset(store, indices=train, window=WindowSpec(frames=T, sampling_rate=1)), held, cfg)
    assert len(watch.held_x) % cfg.data.batch_size  # a short last batch
    model = _MeanLoss()
    assert watch.heldout_loss(model, contextlib.nullcontext) == pytest.approx(float(watch.held_x.mean()))
    assert model.modes == [False] * len(watch.masks) and model.training


def test_heldout_windows_are_centre_windows_spread_over_the_heldout_runs(store, monkeypatch):
    """At most HOLDOUT_WINDOWS held-out windows, from runs evenly spaced over the held-out runs (not the first
    ones), each the run's centre window (as evaluation reads it), so every measurement reads the same windows."""
    from brainjepa.data.dataset import StoreDataset
    from brainjepa.data.windows import WindowSpec
    from brainjepa.training import watch as watch_module

    monkeypatch.setattr(watch_module, "HOLDOUT_WINDOWS", 2)
    cfg = load_config(None, _config(store))
    train, held = holdout_split(RunStore(store), cfg.data.holdout, cfg.meta.seed)
    dataset = StoreDataset(store, indices=train, window=WindowSpec(frames=T, sampling_rate=1))
    watch = watch_module.Watch(dataset, held, cfg)
    centre = StoreDataset(store, indices=held[[0, -1]], normalizer=dataset.normalizer,
                          window=WindowSpec(frames=T, sampling_rate=1, mode="center"))
    assert len(held) > 2 and RunStore(store).run(0).shape[1] > T  # a middle run to skip, a window to place
    torch.testing.assert_close(watch.held_x, torch.stack([centre.sample(i, 0) for i in range(2)]))


def test_resume_keeps_the_gain_the_run_started_with(store, tmp_path):
    cfg = load_config(None, _config(store, **{"optimization.max_steps": 2, "logging.checkpoint_every": 1}))
    first = pretrain(cfg, tmp_path / "r")
    gain = json.loads((first / "summary.json").read_text())["input_gain"]
    longer = load_config(None, _config(store, **{"optimization.max_steps": 4, "logging.checkpoint_every": 1}))
    pretrain(longer, tmp_path / "r", resume=True)
    assert json.loads((first / "summary.json").read_text())["input_gain"] == gain  # not re-calibrated


def test_degenerate_input_scale_is_warned_about_by_name(store, tmp_path, caplog):
    cfg = load_config(None, _config(store, **{"data.input_gain": 300, "optimization.max_steps": 1}))
    with caplog.at_level(logging.WARNING):
        pretrain(cfg, tmp_path / "big")
    assert "DEGENERATE ENCODER? the blocks change the residual stream by only" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        pretrain(load_config(None, _config(store, **{"data.input_gain": 1, "optimization.max_steps": 1})),
                 tmp_path / "unit")
    assert "mostly the token position" in caplog.text


def test_holdout_that_leaves_no_batch_is_refused_by_name(store, tmp_path):
    with pytest.raises(ConfigError, match="data.holdout"):
        pretrain(load_config(None, _config(store, **{"data.holdout": 0.8, "data.batch_size": 8})), tmp_path / "x")


def test_embed_warns_when_the_data_have_another_scale(run, caplog):
    model = BrainJEPA.from_pretrained(run)
    x = np.random.default_rng(0).standard_normal((4, R, T)).astype(np.float32)
    with caplog.at_level(logging.INFO):
        embed(model, x)  # the model's own pipeline (ROI z-score x gain): same scale as in training
    assert "encoder health on 4 windows" in caplog.text and "another scale" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        from brainjepa.evaluation.embed import EmbedOptions

        embed(model, x * 500, options=EmbedOptions(normalization="none"))
    assert "another scale than the model was trained on" in caplog.text


@pytest.mark.parametrize(("ratio", "warned"), [(0.2, True), (0.3, False), (3.5, False), (5.0, True)])
def test_the_scale_warning_fires_beyond_a_factor_of_four_either_way(ratio, warned, caplog):
    """embed warns when the data's input SD is more than 4x off the training data's, either way, and not within that
    band (a wider band would let data on another scale, e.g. raw vs z-scored, pass unnoticed)."""
    from brainjepa.data.normalize import SampleZScore
    from brainjepa.evaluation.embed import report_health
    from brainjepa.models.health import Health
    from conftest import tiny_model

    model = tiny_model(4, metadata={"input_sd": 2.0})
    health = Health(input_sd=2.0 * ratio, patch_norm=1.0, pos_norm=1.0, block_ratio=0.5, run_share=0.5)
    with caplog.at_level(logging.WARNING):
        report_health(model, health, 4, SampleZScore())
    assert ("another scale than the model was trained on" in caplog.text) == warned


def test_collapse_monitor_fires_on_a_per_patch_map():
    """The default small model measured on the real sample: target rank 8.0 under robust scaling of demeaned runs
    (the per-patch map), 21-24 at any healthy input scale (benchmarks/RESULTS.md, "Input scale")."""
    healthy, patch_map = ({"target_std": 0.9, "target_rank": r} for r in (21.4, 7.98))
    assert collapse_warning(healthy, 96, 16) is None
    assert "linear map spans no more" in collapse_warning(patch_map, 96, 16)
    assert collapse_warning({"target_std": 0.9, "target_rank": 9.0}, 32, 16) is None  # floor min(16, 32 / 4) = 8
    assert "COLLAPSE" in collapse_warning({"target_std": 0.01, "target_rank": 40.0}, 96, 16)


def test_collapse_sample_keeps_at_most_max_tokens_and_pools_each_sample():
    """Targets with more tokens than max_tokens are strided down to at most max_tokens (2100 tokens: every second
    one), and each sample's pooled feature is its mean over its own target tokens."""
    target = torch.randn(3, 700, 4, generator=torch.Generator().manual_seed(0))
    tokens, pooled = collapse_sample(target, max_tokens=2048)
    assert tokens.shape == (1050, 4) and tokens.dtype == torch.float32
    torch.testing.assert_close(tokens, target.reshape(-1, 4)[::2], rtol=0, atol=0)
    torch.testing.assert_close(pooled, target.mean(1))


def test_collapse_stats_measure_the_spread_between_tokens():
    """Identical tokens have no spread (target_std 0) however their channels differ, and an offset shared by every
    token (the mean) does not change the effective rank."""
    g = torch.Generator().manual_seed(0)
    tokens, pooled = torch.randn(256, 32, generator=g), torch.randn(4, 32, generator=g)
    base, shifted = collapse_stats(tokens, pooled), collapse_stats(tokens + 10.0, pooled)
    assert base["target_rank"] > 16 and shifted["target_rank"] == pytest.approx(base["target_rank"], rel=1e-3)
    same = collapse_stats(torch.randn(1, 32, generator=g).repeat(64, 1), pooled)
    assert same["target_std"] == pytest.approx(0.0, abs=1e-6)


def test_sparse_curves_join_only_their_measured_points():
    """The held-out loss and health columns (measured every eval_every steps) are drawn through their measured
    points only, not broken by the steps in between."""
    from brainjepa.training.monitor import _points

    nan = float("nan")
    assert _points([1.0, 2.0, 3.0, 4.0], [nan, 0.5, nan, 0.25]) == ([2.0, 4.0], [0.5, 0.25])


def test_health_input_sd_is_about_the_mean_and_the_mode_is_restored() -> None:
    """input_sd is the windows' SD about their mean (an offset, as in raw un-demeaned series, is not spread); an
    eval-mode encoder stays in eval; a meter fed one window refuses, as `encoder_health` does (the content share
    needs two)."""
    enc, x = _model().target_encoder.eval(), _windows(4)
    assert encoder_health(enc, x + 3.0).input_sd == pytest.approx(float(x.std()), rel=1e-5)
    assert not enc.training
    meter = HealthMeter(enc)
    meter.add(x[:1], enc.forward_intermediates(x[:1], [-1])[0])
    with pytest.raises(ValueError, match="at least 2 windows, got 1"):
        meter.result()


def test_embed_health_reads_the_first_runs_only(caplog: pytest.LogCaptureFixture) -> None:
    """A long call checks the first HEALTH_WINDOWS runs (one window each), also when they end inside a batch."""
    model = _model()
    n = embed_module.HEALTH_WINDOWS + 4
    x = np.random.default_rng(3).standard_normal((n, R, T)).astype(np.float32) * 3 + 1
    with caplog.at_level(logging.INFO):
        embed(model, x, options=EmbedOptions(batch_size=3, precision="fp32"))
    normalizer = model_normalizer(model)
    windows = torch.from_numpy(np.stack([normalizer(w) for w in x[:embed_module.HEALTH_WINDOWS]]).astype(np.float32))
    expected = encoder_health(model.target_encoder, windows).summary()
    assert _logged_health(caplog) == f"encoder health on {embed_module.HEALTH_WINDOWS} windows: {expected}"


def test_patch_bias_is_left_out_of_the_content_but_in_the_embedded_tokens() -> None:
    """A trained patch embedding has a bias: patch_norm and calibrate_gain measure W x without it (so the gain is
    linear in the input scale and balances content against position), while block_ratio compares the stream with
    the tokens the encoder embeds (W x + bias + position)."""
    enc, x = _model().target_encoder.eval(), _windows()
    with torch.no_grad():
        enc.patch_embed.proj.bias.copy_(torch.randn_like(enc.patch_embed.proj.bias))
    gain = calibrate_gain(enc, x)
    assert calibrate_gain(enc, 10 * x) == pytest.approx(gain / 10, rel=1e-5)
    health = encoder_health(enc, x * gain)
    assert health.patch_norm == pytest.approx(health.pos_norm, rel=1e-4)
    with torch.no_grad():
        x0 = enc.patch_embed(x * gain) + enc.pos_embed()
        stream = enc.forward_intermediates(x * gain, [-1])[0]
    assert health.block_ratio == pytest.approx(float(((stream - x0).norm(dim=-1) / x0.norm(dim=-1)).median()),
                                               rel=1e-5)
