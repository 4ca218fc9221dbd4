"""Pretraining: config, schedules, the loop, exact resume, corrupt checkpoints, non-finite loss, DDP."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA
from brainjepa.cli import main
from brainjepa.config import OptimizationConfig, TrainConfig, load_config
from brainjepa.errors import ConfigError, TrainingError
from brainjepa.training import Schedule, pretrain
from brainjepa.training import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]
R, T = 20, 64


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """16 simulated subjects (coupled oscillators on a modular connectome), R ROIs, 80 frames."""
    from brainjepa.data.simulate import SimulationConfig, simulate_store

    path = tmp_path_factory.mktemp("store") / "s"
    simulate_store(path, SimulationConfig(subjects=16, rois=R, frames=80, seed=0), progress=False)
    return path


def _overrides(store: Path, **extra) -> list[str]:
    base = {
        "data.path": str(store), "data.crop_size": f"[{R},{T}]", "data.batch_size": 4, "data.num_workers": 0,
        "data.sampling_rate": 1, "data.pin_mem": "false", "data.gradient_components": 8,
        "data.gradient_sparsity": 0.5, "mask.patch_size": 16, "meta.model_name": "vit_tiny",
        "meta.embed_dim": 32, "meta.depth": 1, "meta.num_heads": 2, "meta.pred_emb_dim": 16, "meta.pred_depth": 1,
        "meta.use_bfloat16": "false", "meta.accumulation_steps": 1, "optimization.epochs": 4,
        "optimization.warmup": 1, "optimization.start_lr": 1e-4, "logging.checkpoint_every": 3,
        "logging.keep_last": 2, "logging.collapse_every": 2,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _state(run: Path) -> dict[str, torch.Tensor]:
    return BrainJEPA.from_pretrained(run).state_dict()


# ------------------------------------------------------------------------------------------------- config
def test_reference_yaml_means_the_defaults():
    cfg = load_config(ROOT / "configs" / "ukb_vitb_ep300.yaml")
    expected = TrainConfig().to_dict()
    expected["data"]["gradient_csv_path"] = "path/to/gradient_mapping_450.csv"
    assert cfg.to_dict() == expected
    assert cfg.meta.accumulation_steps == 8 and cfg.mask.enc_mask_scale == [0.84, 1.0]


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key optimization.lrr"):
        load_config(None, ["optimization.lrr=1"])
    with pytest.raises(ConfigError, match="data.batch_size has value 'many'"):
        load_config(None, ["data.batch_size=many"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta:\n  attn_mode: turbo\n")
    with pytest.raises(ConfigError, match=r"meta.attn_mode .*'flash_attn', 'normal'"):
        load_config(bad)
    assert load_config(None, ["optimization.lr=1e-3"]).optimization.lr == 1e-3


# ------------------------------------------------------------------------------------------------- schedules
def test_schedules():
    opt = OptimizationConfig(epochs=10, warmup=2, start_lr=1e-4, lr=1e-3, final_lr=1e-6, ema=[0.99, 1.0])
    s = Schedule(opt, iters_per_epoch=16, accumulation_steps=4)
    assert (s.total_steps, s.warmup_steps) == (40, 8)
    lrs = [s.lr(i) for i in range(s.total_steps)]
    assert lrs[0] < 2.5e-4 and max(lrs) == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-6)
    assert np.argmax(lrs) == s.warmup_steps - 1 and all(np.diff(lrs[8:]) <= 0)
    wds = [s.weight_decay(i) for i in range(s.total_steps)]
    assert all(np.diff(wds) >= 0) and wds[-1] == pytest.approx(0.4)
    assert s.momentum(s.total_steps - 1) == pytest.approx(1.0)
    legacy = Schedule(opt, iters_per_epoch=16, accumulation_steps=4, legacy_ema=True)
    assert legacy.momentum(legacy.total_steps - 1) == pytest.approx(0.99 + 0.01 / 4)


# ------------------------------------------------------------------------------------------------- the loop
def test_pretrain_cli_end_to_end(store, tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), *_overrides(store, **{"optimization.epochs": 8})]) == 0
    for name in ("config.yaml", "metrics.csv", "gradients.csv", "training_curves.png", "model/model.safetensors"):
        assert (run / name).is_file(), name
    import csv

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 33))
    losses = np.array([float(r["loss"]) for r in rows])
    assert losses[-8:].mean() < losses[:4].mean()  # it learns
    assert float(rows[-1]["momentum"]) == pytest.approx(1.0)
    assert rows[1]["target_rank"] and float(rows[1]["target_std"]) > 0
    model = BrainJEPA.from_pretrained(run)
    assert model.metadata["normalization"]["kind"] == "robust"
    # the run folder is not silently reused
    assert main(["pretrain", "--out", str(run), *_overrides(store)]) == 2


def test_resume_is_bit_exact(store, tmp_path):
    extra = {"meta.accumulation_steps": 2, "optimization.epochs": 6}  # accumulation crosses epoch ends
    full = pretrain(load_config(None, _overrides(store, **extra, **{"optimization.max_steps": 8})), tmp_path / "a")
    pretrain(load_config(None, _overrides(store, **extra, **{"optimization.max_steps": 5})), tmp_path / "b")
    resumed = pretrain(load_config(None, _overrides(store, **extra, **{"optimization.max_steps": 8})),
                       tmp_path / "b", resume=True)
    a, b = _state(full), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    opt_a = torch.load(ckpt.list_checkpoints(full)[-1] / "training.pt", weights_only=True)["optimizer"]
    opt_b = torch.load(ckpt.list_checkpoints(resumed)[-1] / "training.pt", weights_only=True)["optimizer"]
    for key, st in opt_a["state"].items():
        assert torch.equal(st["exp_avg_sq"], opt_b["state"][key]["exp_avg_sq"])
    steps = [int(line.split(",")[0]) for line in open(resumed / "metrics.csv").read().split()[1:]]
    assert steps == list(range(1, 9))
    with pytest.raises(ConfigError, match="optimization.lr changed"):
        pretrain(load_config(None, _overrides(store, **extra, **{"optimization.lr": 0.5})), tmp_path / "b",
                 resume=True)


def test_corrupt_latest_checkpoint_falls_back(store, tmp_path, caplog):
    run = pretrain(load_config(None, _overrides(store, **{"optimization.max_steps": 6})), tmp_path / "r")
    names = [p.name for p in ckpt.list_checkpoints(run)]
    assert names == ["step-00000003", "step-00000006"]
    latest = ckpt.list_checkpoints(run)[-1] / "model.safetensors"
    latest.write_bytes(latest.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING):
        model, state = ckpt.load_latest(run)
    assert state["step"] == 3
    assert "step-00000006 is unusable" in caplog.text and "checksum" in caplog.text


def test_non_finite_loss_stops_with_checkpoint(store, tmp_path, monkeypatch):
    from brainjepa.models import jepa

    real = jepa.BrainJEPA.forward
    calls = {"n": 0}

    def poisoned(self, x, ctx, tgt):
        calls["n"] += 1
        out = real(self, x, ctx, tgt)
        return out._replace(loss=out.loss * float("nan")) if calls["n"] == 3 else out

    monkeypatch.setattr(jepa.BrainJEPA, "forward", poisoned)
    with pytest.raises(TrainingError, match="non-finite loss .* at optimizer step 2 "):
        pretrain(load_config(None, _overrides(store)), tmp_path / "nan")
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "nan")] == ["step-00000002"]


def test_two_processes_equal_one_with_double_batch(store, tmp_path):
    """torchrun with 2 ranks x batch 2 ends with the same weights as 1 process x batch 4 (same samples, masks)."""
    common = _overrides(store, **{"optimization.max_steps": 4, "data.gradient_csv_path": str(tmp_path / "g.csv")})
    np.savetxt(tmp_path / "g.csv", np.random.default_rng(0).normal(size=(R, 8)), delimiter=",")
    single = pretrain(load_config(None, common), tmp_path / "one")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "brainjepa",
           "pretrain", "--out", str(tmp_path / "two"), *common, "data.batch_size=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _state(single), _state(tmp_path / "two")
    errors = {k: (a[k] - b[k]).abs().max().item() for k in a}
    worst = max(errors, key=errors.get)
    assert errors[worst] < 1e-5, f"{worst}: {errors[worst]}"
    assert any((a[k] - _state_init(a)[k]).abs().max() > 1e-4 for k in a if "encoder.blocks" in k)


def _state_init(trained: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights at step 0 of the same config, to show the runs moved."""
    torch.manual_seed(0)
    from brainjepa.models import ModelConfig

    model = BrainJEPA(ModelConfig(num_rois=R, num_frames=T, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                                  pred_embed_dim=16, pred_depth=1, gradient_dim=8),
                      trained["encoder.pos_embed.gradient"])
    return model.state_dict()
