"""Pretraining: schedules, the loop, exact resume, corrupt checkpoints, non-finite loss, DDP."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA
from brainjepa.cli import main
from brainjepa.config import OptimizationConfig, load_config
from brainjepa.errors import ConfigError, TrainingError
from brainjepa.training import Schedule, pretrain
from brainjepa.training import checkpoint as ckpt
from brainjepa.training.monitor import TIMING_FIELDS
from conftest import tiny_model

ROOT = Path(__file__).resolve().parents[1]
R, T = 20, 64


def _overrides(store: Path, **extra) -> list[str]:
    base = {
        "data.path": str(store), "data.crop_size": f"[{R},{T}]", "data.batch_size": 4, "data.num_workers": 0,
        "data.sampling_rate": 1, "data.pin_mem": "false", "data.gradient_components": 8,
        "data.gradient_sparsity": 0.5, "mask.patch_size": 16, "meta.model_name": "vit_tiny",
        "meta.embed_dim": 32, "meta.depth": 1, "meta.num_heads": 2, "meta.pred_emb_dim": 16, "meta.pred_depth": 1,
        "meta.use_bfloat16": "false", "meta.accumulation_steps": 1, "optimization.epochs": 4,
        "optimization.warmup": 1, "optimization.start_lr": 1e-4, "logging.checkpoint_every": 3,
        "logging.keep_last": 2, "logging.collapse_every": 2,
        "data.holdout": 0,  # exact step counts: every run trains (held-out subjects: tests/test_health.py)
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _state(run: Path) -> dict[str, torch.Tensor]:
    return BrainJEPA.from_pretrained(run).state_dict()


def _metrics(run: Path) -> list[dict[str, str]]:
    """metrics.csv rows without the timing columns (which differ between identical runs)."""
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in csv.DictReader(f)]


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
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 33))
    losses = np.array([float(r["loss"]) for r in rows])
    assert losses[-8:].mean() < losses[:4].mean()  # it learns
    assert float(rows[-1]["momentum"]) == pytest.approx(1.0)
    assert rows[1]["target_rank"] and float(rows[1]["target_std"]) > 0
    model = BrainJEPA.from_pretrained(run)
    record = model.metadata["normalization"]  # the default input scale: a ROI z-score x the calibrated gain
    assert record["kind"] == "roi_zscore" and record["gain"] > 1
    # the run folder is not silently reused
    assert main(["pretrain", "--out", str(run), *_overrides(store)]) == 2


def test_resume_is_bit_exact(store, tmp_path):
    """5 steps + 3 resumed steps == 8 steps: weights, optimizer state and metrics.csv rows, with drop path on
    (its masks, like the DataLoader's seed, must not depend on the RNG state a restart leaves behind)."""
    extra = {"meta.accumulation_steps": 2, "optimization.epochs": 6,  # accumulation crosses epoch ends
             "meta.drop_path": 0.2, "meta.depth": 2, "meta.pred_depth": 2}  # depth 1 would make every rate 0
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
    rows = _metrics(resumed)
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    assert rows == _metrics(full)
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


def test_checkpoints_keep_exactly_the_newest_keep_last(tmp_path):
    """save_checkpoint keeps the newest `keep_last` checkpoints and deletes the older ones."""
    model = tiny_model(R)
    for step in range(1, 6):
        state = {"optimizer": {"state": {}, "param_groups": []}, "step": step, "epoch": 0, "batch": step}
        ckpt.save_checkpoint(tmp_path, model, state, step, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == [f"step-{s:08d}" for s in (4, 5)]
    assert ckpt.load_latest(tmp_path)[1]["step"] == 5


def test_a_checkpoint_is_assembled_under_a_temporary_name(tmp_path, monkeypatch):
    """While a checkpoint is being written nothing exists under its real name (a crash mid-write must not leave a
    half-written step-N folder); the finished folder then holds every file its manifest lists."""
    final = ckpt.checkpoint_dir(tmp_path) / "step-00000007"
    real_save, seen = torch.save, []

    def save(obj, f, *args, **kwargs):
        seen.append(final.exists())
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", save)
    state = {"optimizer": {"state": {}, "param_groups": []}, "step": 7, "epoch": 0, "batch": 7}
    assert ckpt.save_checkpoint(tmp_path, tiny_model(R), state, 7, keep_last=2) == final
    assert seen == [False]
    assert ckpt.verify(final) is None and not [p for p in final.parent.iterdir() if p.name.startswith(".tmp")]


def test_each_step_applies_its_lr_and_decays_only_the_decayed_groups(store, tmp_path):
    """Step s (0-based) trains at the warmup LR start_lr + (s + 1) / W (lr - start_lr) and the cosine weight
    decay of step s; groups exempt from decay (biases, norms) keep weight decay 0 at every step. Read from the
    optimizer state of the step-3 checkpoint and from metrics.csv (16 runs, batch 4: 4 steps per epoch)."""
    cfg = load_config(None, _overrides(store, **{"optimization.max_steps": 3}))
    run = pretrain(cfg, tmp_path / "r")
    o, per_epoch = cfg.optimization, 16 // 4
    warmup, total = o.warmup * per_epoch, o.epochs * per_epoch
    lrs = [o.start_lr + (s + 1) / warmup * (o.lr - o.start_lr) for s in range(3)]
    assert [float(r["lr"]) for r in _metrics(run)] == pytest.approx(lrs, rel=1e-9)
    groups = torch.load(ckpt.list_checkpoints(run)[-1] / "training.pt", weights_only=True)["optimizer"]["param_groups"]
    wd = o.final_weight_decay + (o.weight_decay - o.final_weight_decay) * 0.5 * (1 + np.cos(np.pi * 3 / total))
    assert {g["wd_exempt"] for g in groups} == {True, False}
    for g in groups:
        assert g["lr"] == pytest.approx(lrs[-1], rel=1e-9)
        assert g["weight_decay"] == (0.0 if g["wd_exempt"] else pytest.approx(wd, rel=1e-9))


def test_non_finite_loss_stops_without_checkpointing_it(store, tmp_path, monkeypatch):
    """The loss is checked when rows are fetched (log interval, checkpoint): the error names the first bad step,
    and no checkpoint holds weights after it."""
    from brainjepa.models import jepa

    real = jepa.BrainJEPA.forward
    calls = {"n": 0}

    def poisoned(self, x, ctx, tgt):
        calls["n"] += 1
        out = real(self, x, ctx, tgt)
        return out._replace(loss=out.loss * float("nan")) if calls["n"] == 5 else out

    monkeypatch.setattr(jepa.BrainJEPA, "forward", poisoned)
    run = tmp_path / "nan"
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at optimizer step 5 \(epoch 1, batch 0\), "
                       r"found at step 6; .*step-00000003"):
        pretrain(load_config(None, _overrides(store, **{"logging.log_every": 4})), run)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000003"]  # step 6 was not saved
    rows = _metrics(run)
    assert [r["step"] for r in rows] == ["1", "2", "3", "4", "5"] and rows[-1]["loss"] == "nan"
    assert all(np.isfinite(float(r["loss"])) for r in rows[:-1])


def test_steps_do_not_wait_for_the_device(store, tmp_path, monkeypatch):
    """`train_step` reads no tensor value on the host; `fit` fetches the rows once per log interval/checkpoint."""
    from brainjepa.training import loop

    def forbidden(*args, **kwargs):
        raise AssertionError("train_step read a tensor value on the host")

    real_step, real_to_host, fetched = loop.Trainer.train_step, loop.to_host, []

    def guarded(self, micro):
        with monkeypatch.context() as m:
            for name in ("item", "tolist", "__bool__", "__float__"):
                m.setattr(torch.Tensor, name, forbidden)
            return real_step(self, micro)

    monkeypatch.setattr(loop.Trainer, "train_step", guarded)
    monkeypatch.setattr(loop, "to_host", lambda rows: fetched.append(len(rows)) or real_to_host(rows))
    run = pretrain(load_config(None, _overrides(store, **{
        "optimization.max_steps": 7, "logging.log_every": 2, "logging.checkpoint_every": 3,
        "optimization.clip_grad": 1.0})), tmp_path / "r")
    assert fetched == [2, 1, 1, 2, 1]  # steps 1-2 (log), 3 (checkpoint), 4 (log), 5-6 (checkpoint), 7 (end)
    rows = _metrics(run)
    assert [int(r["step"]) for r in rows] == list(range(1, 8)) and all(float(r["grad_norm"]) > 0 for r in rows)


def _trainer(store: Path, run: Path, **extra):
    """A `Trainer` of the tiny config, one process on the CPU, before its first step."""
    from brainjepa.training.distributed import DistEnv
    from brainjepa.training.loop import Trainer

    return Trainer(load_config(None, _overrides(store, **extra)), run, DistEnv(progress=False), resume=False)


def test_each_step_moves_the_target_encoder_by_its_ema(store, tmp_path):
    """After each optimizer step the target encoder is m x its weights before + (1 - m) x the online encoder's
    after, m the momentum the step reports (momentum 0.5 and a large LR so that the move is far above rounding)."""
    trainer = _trainer(store, tmp_path / "r", **{"optimization.ema": "[0.5,0.5]", "optimization.start_lr": 1e-2})
    model, batches = trainer.model, trainer.micro_batches()
    for _ in range(2):
        before = [p.detach().clone() for p in model.target_encoder.parameters()]
        m = trainer.train_step([next(batches)])["momentum"]
        assert m == 0.5
        after = [p.detach() for p in model.target_encoder.parameters()]
        online = [p.detach() for p in model.encoder.parameters()]
        for old, new, o in zip(before, after, online, strict=True):
            torch.testing.assert_close(new, m * old + (1 - m) * o, rtol=1e-6, atol=1e-7)
        assert max((new - old).abs().max().item() for old, new in zip(before, after, strict=True)) > 1e-4


def test_accumulated_micro_batches_average_their_gradients(store, tmp_path):
    """A step over the same micro-batch twice (accumulation 2) has the gradient of a step over it once: each
    micro-batch's loss counts 1/k. Summed instead, the gradient and its logged norm would double (AdamW alone would
    hide that; clipping and `grad_norm` would not)."""
    extra = {"meta.accumulation_steps": 2, "optimization.clip_grad": 1e6}
    once, twice = (_trainer(store, tmp_path / name, **extra) for name in ("once", "twice"))
    batch = next(once.micro_batches())
    norms = [once.train_step([batch])["grad_norm"], twice.train_step([batch, batch])["grad_norm"]]
    assert norms[0] > 0
    torch.testing.assert_close(norms[1], norms[0], rtol=1e-5, atol=0)


def test_the_seed_sets_the_initial_weights_and_the_masks(store, tmp_path):
    """meta.seed seeds the initial weights (the same seed, the same weights; another seed, others) and each
    batch's masks: batch (epoch 1, batch 2) has the same masks for seed 7 twice, other masks for seed 8."""
    from brainjepa.masks import MaskConfig
    from brainjepa.training.batch import MaskedBatches

    trainers = [_trainer(store, tmp_path / f"r{i}", **{"meta.seed": seed}) for i, seed in enumerate((0, 0, 1))]
    weights = [t.model.encoder.blocks[0].attn.qkv.weight.detach() for t in trainers]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    grid = (trainers[0].model.config.num_rois, trainers[0].model.config.num_time_patches)

    def masks(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        batch = MaskedBatches(trainers[0].dataset, MaskConfig(), grid, seed=seed, batch_size=4)[1, 2, [0, 1, 2, 3]]
        return batch.context_idx, batch.target_idx

    first, again, other = masks(7), masks(7), masks(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_drop_path_draws_anew_at_every_step(store, tmp_path):
    """Drop path's generator is reseeded from (seed, step, micro-batch, rank) before each forward: every forward
    of two steps x two micro-batches starts from its own state (without the step, every step would drop the same
    paths)."""
    trainer = _trainer(store, tmp_path / "r", **{"meta.drop_path": 0.2, "meta.depth": 2, "meta.pred_depth": 2,
                                                 "meta.accumulation_steps": 2})
    states, forward = [], trainer.forward

    def spy(*args):
        states.append(torch.get_rng_state())
        return forward(*args)

    trainer.forward = spy
    batches = trainer.micro_batches()
    for _ in range(2):
        trainer.train_step([next(batches), next(batches)])
    assert len(states) == 4 and len({bytes(s.numpy()) for s in states}) == 4


def test_robust_scaling_is_fitted_on_the_training_subjects_only(store, tmp_path):
    """data.normalization robust with held-out subjects: the median / IQR are those of the training runs'
    subject means (computed here from the store), not of every run (held-out subjects would leak into them)."""
    from brainjepa.data.store import RunStore
    from brainjepa.training.distributed import DistEnv
    from brainjepa.training.loop import build_dataset

    cfg = load_config(None, _overrides(store, **{"data.normalization": "robust", "data.holdout": 0.25}))
    dataset, held = build_dataset(cfg, DistEnv(progress=False))
    runs = RunStore(store)
    assert "normalization" not in runs.metadata  # fitted here, not read from the store
    train = np.setdiff1d(np.arange(len(runs)), held)
    assert len(held) and np.array_equal(dataset.indices, train)
    subjects = runs.manifest["subject"].astype(str).to_numpy()

    def stats(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        means = np.stack([np.mean([runs.window(i, 0, runs.frames(i)).astype(np.float64).mean(1)
                                   for i in indices if subjects[i] == s], axis=0)
                          for s in np.unique(subjects[indices])])
        q25, median, q75 = np.percentile(means, [25, 50, 75], axis=0)
        return median, q75 - q25

    median, iqr = stats(train)
    np.testing.assert_allclose(dataset.normalizer.median, median, rtol=1e-9)
    np.testing.assert_allclose(dataset.normalizer.iqr, iqr, rtol=1e-9)
    assert not np.allclose(stats(np.arange(len(runs)))[0], median)  # every run would give other statistics


def test_two_processes_equal_one_with_double_batch(store, tmp_path):
    """torchrun with 2 ranks x batch 2 ends with the same weights as 1 process x batch 4 (same samples, masks)."""
    common = _overrides(store, **{"optimization.max_steps": 4, "data.gradient_csv_path": str(tmp_path / "g.csv"),
                                  "data.gradient_sparsity": 0.9})  # the default: the gradient is given
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
    # the logged loss is the mean over the processes (each rank's loss is the mean of its half of the batch)
    losses = [[float(r["loss"]) for r in _metrics(run)] for run in (single, tmp_path / "two")]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    # its checkpoints record the process count, which a resume must match (check_world_size)
    state = torch.load(ckpt.list_checkpoints(tmp_path / "two")[-1] / ckpt.TRAINING_FILE, weights_only=True)
    assert state["world_size"] == 2


def test_all_reduce_max_and_mean_combine_every_process(tmp_path):
    """Two gloo processes under torchrun: the max is the larger value on both ranks (not the smaller, nor the sum),
    the mean the average."""
    script = tmp_path / "reduce.py"
    script.write_text(
        "import torch\n"
        "from brainjepa.training.distributed import all_reduce_max, all_reduce_mean, cleanup, init_distributed\n"
        "env = init_distributed('cpu')\n"
        "top = all_reduce_max(3 if env.rank == 0 else 7, env)\n"
        "mean = all_reduce_mean(torch.tensor(2.0 * env.rank + 1.0), env).item()\n"
        "import sys, pathlib\n"
        "pathlib.Path(sys.argv[1], f'rank{env.rank}').write_text(f'max={top} mean={mean}')\n"
        "cleanup(env)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
           str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(tmp_path / f"rank{r}").read_text() for r in (0, 1)] == ["max=7 mean=2.0"] * 2


def _state_init(trained: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights at step 0 of the same config, to show the runs moved."""
    torch.manual_seed(0)
    from brainjepa.models import ModelConfig

    model = BrainJEPA(ModelConfig(num_rois=R, num_frames=T, patch_size=16, embed_dim=32, depth=1, num_heads=2,
                                  pred_embed_dim=16, pred_depth=1, gradient_dim=8),
                      trained["encoder.pos_embed.gradient"])
    return model.state_dict()


def test_a_resumed_monitor_drops_the_rows_after_its_checkpoint(tmp_path):
    """A run killed after its last checkpoint left rows for steps it will train again: the resumed monitor keeps
    the rows up to the checkpoint's step only, so every step has one row."""
    import csv

    from brainjepa.training.monitor import Monitor

    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=Monitor.FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({"step": s, "loss": 1.0 / s} for s in range(1, 7))
    monitor = Monitor(tmp_path, total_steps=10, start_step=4, samples_per_step=4, collapse_every=100, log_every=100,
                      patch_size=16, progress=False)
    monitor.close()
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and float(rows[-1]["loss"]) == 0.25


def _position(step: int, **extra) -> dict:
    return {"optimizer": {"state": {}, "param_groups": []}, "step": step, "epoch": 0, "batch": step, **extra}


def test_saving_a_step_again_replaces_its_checkpoint(tmp_path):
    """A checkpoint written again at a step that already has one (a resumed run saving where it resumed) replaces
    the old folder instead of failing on it."""
    model = tiny_model(R)
    ckpt.save_checkpoint(tmp_path, model, _position(3), 3, keep_last=2)
    ckpt.save_checkpoint(tmp_path, model, _position(3, epoch=1), 3, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000003"]
    assert ckpt.load_latest(tmp_path)[1]["epoch"] == 1


def test_only_step_folders_are_checkpoints(tmp_path):
    """A temporary folder left by an interrupted write, or any other folder, is neither listed nor resumed from nor
    deleted by keep_last."""
    model = tiny_model(R)
    first = ckpt.save_checkpoint(tmp_path, model, _position(2), 2, keep_last=1)
    root = ckpt.checkpoint_dir(tmp_path)
    shutil.copytree(first, root / ".tmp-step-00000009-123")
    (root / "step-9").mkdir()
    (root / "notes").mkdir()
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-00000002"]
    ckpt.save_checkpoint(tmp_path, model, _position(4), 4, keep_last=1)
    assert sorted(p.name for p in root.iterdir()) == [".tmp-step-00000009-123", "notes", "step-00000004", "step-9"]
    assert ckpt.load_latest(tmp_path)[1]["step"] == 4


def test_a_checkpoint_with_a_negative_position_is_skipped(tmp_path, caplog):
    """A training state whose epoch or batch is negative is no position to resume from: the previous one is used."""
    model = tiny_model(R)
    ckpt.save_checkpoint(tmp_path, model, _position(2), 2, keep_last=5)
    ckpt.save_checkpoint(tmp_path, model, _position(4, epoch=-1), 4, keep_last=5)
    ckpt.save_checkpoint(tmp_path, model, _position(6, batch=-3), 6, keep_last=5)
    with caplog.at_level(logging.WARNING):
        assert ckpt.load_latest(tmp_path)[1]["step"] == 2
    assert caplog.text.count("does not hold an optimizer state and a position") == 2


def test_a_manifest_whose_files_are_not_a_mapping_is_unreadable(tmp_path):
    """A manifest listing file names without checksums is refused as unreadable (not a crash on resume)."""
    path = ckpt.save_checkpoint(tmp_path, tiny_model(R), _position(1), 1, keep_last=1)
    (path / ckpt.MANIFEST).write_text(json.dumps({"step": 1, "files": sorted(ckpt.REQUIRED_FILES)}))
    assert ckpt.verify(path).startswith("unreadable manifest")
    assert ckpt.load_latest(tmp_path) is None


def _monitor_rows(tmp_path: Path, steps, **kwargs) -> list[dict[str, str]]:
    from brainjepa.training.monitor import Monitor

    monitor = Monitor(tmp_path, total_steps=10, samples_per_step=8, log_every=100, patch_size=16, progress=False,
                      **kwargs)
    target = torch.randn(4, 6, 32, generator=torch.Generator().manual_seed(0))
    for step in steps:
        monitor.watch(step, target)
        monitor.log({"step": step, "epoch": 0, "batch": step - 1, "loss": 0.5, "lr": 1e-3, "weight_decay": 0.04,
                     "momentum": 0.996, "data_time_s": 1.0, "step_time_s": 3.0})
    monitor.close()
    with open(tmp_path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_monitor_counts_samples_per_second_over_data_and_compute_time(tmp_path):
    """samples_per_s is the samples of a step over its whole time: fetching its batches plus computing it."""
    rows = _monitor_rows(tmp_path, [1, 2], collapse_every=100)
    assert [float(r["samples_per_s"]) for r in rows] == [2.0, 2.0]  # 8 samples / (1 s + 3 s)


def test_monitor_checks_collapse_at_step_1_and_every_collapse_every(tmp_path):
    """The collapse statistics are taken at step 1 (the first sign of a bad start) and every collapse_every steps."""
    rows = _monitor_rows(tmp_path, range(1, 8), collapse_every=3)
    assert [int(r["step"]) for r in rows if r["target_rank"]] == [1, 3, 6]


def test_an_interrupted_checkpoint_write_leaves_no_temporary_folder(tmp_path, monkeypatch):
    """Ctrl-C in the middle of writing a checkpoint removes its temporary folder before the interrupt goes on."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, tiny_model(R), _position(1), 1, keep_last=1)
    assert list(ckpt.checkpoint_dir(tmp_path).iterdir()) == []


def test_max_steps_beyond_the_schedule_ends_with_the_schedule(store, tmp_path):
    """optimization.max_steps only shortens a run: one above the schedule's step count (1 epoch of 16 runs at batch
    4: 4 steps) leaves the run at the schedule's length, whose last step is checkpointed."""
    run = pretrain(load_config(None, _overrides(store, **{"optimization.epochs": 1, "optimization.warmup": 0,
                                                          "optimization.max_steps": 10})), tmp_path / "r")
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["steps"], summary["total_steps"]) == (4, 4)
    # the last step is checkpointed at the end although it is no multiple of logging.checkpoint_every (3)
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000003", "step-00000004"]


def test_a_schedule_longer_than_the_data_stops_before_a_partial_accumulation(store, tmp_path):
    """With ipe_scale > 1 the data end before the schedule: the 4 micro-batches of one epoch make one step of 3
    accumulated micro-batches; the 1 left over is not stepped on alone."""
    run = pretrain(load_config(None, _overrides(store, **{
        "optimization.epochs": 1, "optimization.warmup": 0, "optimization.ipe_scale": 2,
        "meta.accumulation_steps": 3})), tmp_path / "r")
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["steps"], summary["total_steps"]) == (1, 2)


def test_the_plan_counts_the_global_batch_of_every_process():
    """A run needs data.batch_size x processes runs per step, so 6 runs at batch 4 train one process but not two;
    an epoch of exactly accumulation_steps micro-batches still takes its one optimizer step; an ipe_scale that
    rounds the schedule down to no step is refused before any work."""
    from brainjepa.training.loop import check_plan

    cfg = load_config(None, ["data.batch_size=4", "optimization.epochs=1", "optimization.warmup=0",
                                 "meta.accumulation_steps=2"])
    check_plan(cfg, 8, 1)  # 2 micro-batches = 2 accumulation steps: one optimizer step
    check_plan(replace(cfg, meta=replace(cfg.meta, accumulation_steps=1)), 6, 1)
    with pytest.raises(ConfigError, match=r"data.batch_size=4 x 2 process\(es\) needs at least 8 runs per batch"):
        check_plan(replace(cfg, meta=replace(cfg.meta, accumulation_steps=1)), 6, 2)
    short = replace(cfg, optimization=replace(cfg.optimization, ipe_scale=0.4))  # int(0.4 x 2 / 2) = 0 steps
    with pytest.raises(ConfigError, match=r"optimization.ipe_scale=0.4 leaves a schedule of 0 optimizer steps"):
        check_plan(short, 8, 1)


def test_rank_and_local_rank_come_from_their_own_variables(monkeypatch):
    """RANK is the global rank and LOCAL_RANK the process's index on its node: on a second node they differ, and
    only rank 0 of all processes draws progress bars (when they are wanted)."""
    from brainjepa.training.distributed import DistEnv, init_distributed

    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: no process group is joined
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    env = init_distributed("cpu")
    assert (env.rank, env.local_rank, env.world_size, env.is_main) == (3, 1, 1, False)
    assert not DistEnv(rank=1, world_size=2, progress=True).bars
    assert DistEnv(rank=0, world_size=2, progress=True).bars and not DistEnv(progress=False).bars


def test_to_host_turns_tensors_and_spans_into_floats_in_copies():
    """Rows fetched for the monitor hold floats (a span is its end minus its start); the pending rows handed in
    are left as they were."""
    from brainjepa.training.monitor import Span, to_host

    rows = [{"step": 1, "loss": torch.tensor(0.5), "step_time_s": Span(1.0, 3.5)}, {"step": 2, "loss": torch.ones(1)}]
    assert to_host(rows) == [{"step": 1, "loss": 0.5, "step_time_s": 2.5}, {"step": 2, "loss": 1.0}]
    assert isinstance(rows[0]["loss"], torch.Tensor) and isinstance(rows[0]["step_time_s"], Span)
