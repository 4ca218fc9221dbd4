"""JEPA pretraining: one process or many (torchrun), resumable, observable.

`pretrain(cfg, out_dir)` builds data, masks, model and optimizer from a TrainConfig and runs
`Trainer.train_step` until the schedule (or `optimization.max_steps`) ends. Everything random is a function of
the seed and the position (epoch, batch, step): data order, windows, masks, the DataLoader's seed and drop path;
so a resumed run continues bit-exactly.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP

from brainjepa.config import TrainConfig, load_config, save_config
from brainjepa.data.dataset import StoreDataset
from brainjepa.data.gradients import compute_gradients, compute_group_fc
from brainjepa.data.normalize import make_normalizer, normalizer_from_dict
from brainjepa.data.store import RunStore
from brainjepa.data.windows import WindowSpec
from brainjepa.errors import ConfigError, TrainingError
from brainjepa.io import load_gradient, save_gradient
from brainjepa.models import BrainJEPA
from brainjepa.training import checkpoint as ckpt
from brainjepa.training.batch import DROP_PATH_STREAM, Batch, MaskedBatches, derive_seed, epoch_loader
from brainjepa.training.distributed import DistEnv, all_reduce_mean, barrier, cleanup, init_distributed
from brainjepa.training.monitor import Monitor, Span, Stopwatch, to_host
from brainjepa.training.sampler import GlobalBatchSampler
from brainjepa.training.schedules import Schedule
from brainjepa.training.warmstart import warm_start

logger = logging.getLogger(__name__)

# Keys that may differ between a run and its resumption (how long / how it is watched, not what is learned).
RESUMABLE_CHANGES = {("optimization", "max_steps"), ("data", "num_workers"), ("data", "pin_mem")} | {
    ("logging", k) for k in ("log_every", "checkpoint_every", "keep_last", "tensorboard", "collapse_every")
}


@dataclass
class Position:
    """Where training stands: optimizer steps done and the next micro-batch (epoch, batch in epoch)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0


def build_model(cfg: TrainConfig, dataset: StoreDataset, run_dir: Path, env: DistEnv,
                metadata: dict[str, Any]) -> BrainJEPA:
    """`cfg.model` with fresh (seeded) weights, or warm-started from meta.read_checkpoint (training/warmstart.py)."""
    if cfg.meta.load_checkpoint:
        return warm_start(cfg, metadata)
    return BrainJEPA(cfg.model, resolve_gradient(cfg, dataset, run_dir, env), metadata=metadata)


def build_dataset(cfg: TrainConfig, env: DistEnv, run_dir: Path):
    """Store -> normaliser (statistics reused from the store when present) -> windowed dataset."""
    if cfg.data.path is None:
        raise ConfigError("data.path is not set: give the store written by `brainjepa prepare` or `simulate`")
    store = RunStore(cfg.data.path)
    if store.num_rois != cfg.model.num_rois:
        raise ConfigError(f"model.num_rois (data.crop_size) is {cfg.model.num_rois} but the store {store.path} has "
                          f"{store.num_rois} ROIs")
    saved = store.metadata.get("normalization")
    if cfg.data.normalization == "robust" and isinstance(saved, dict) and saved.get("kind") == "robust":
        normalizer = normalizer_from_dict(saved)
    else:
        normalizer = make_normalizer(cfg.data.normalization, store=store, progress=env.is_main)
    window = WindowSpec(frames=cfg.model.num_frames, sampling_rate=cfg.data.sampling_rate, mode="random",
                        target_tr=cfg.data.target_tr, short=cfg.data.short_runs)
    return StoreDataset(store, normalizer=normalizer, window=window, seed=cfg.meta.seed), normalizer


def resolve_gradient(cfg: TrainConfig, dataset, run_dir: Path, env: DistEnv) -> np.ndarray:
    """data.gradient_csv_path, or model.gradient_dim gradients of the store's group FC (saved as
    RUN_DIR/gradients.csv). The gradient's width is declared (model.gradient_dim), so a CSV must match it."""
    n = cfg.model.gradient_dim
    if cfg.data.gradient_csv_path:
        gradient = load_gradient(cfg.data.gradient_csv_path, num_rois=cfg.model.num_rois)
        if gradient.shape[1] != n:
            raise ConfigError(f"data.gradient_csv_path {cfg.data.gradient_csv_path} has {gradient.shape[1]} "
                              f"gradient components but model.gradient_dim is {n}; set model.gradient_dim="
                              f"{gradient.shape[1]}")
        return gradient
    if not 1 <= n <= dataset.store.num_rois - 2:
        raise ConfigError(f"model.gradient_dim={n} gradients must be between 1 and ROIs - 2 = "
                          f"{dataset.store.num_rois - 2} to be computed from the store")
    fc = compute_group_fc(dataset.store, progress=env.is_main)
    gradient = compute_gradients(fc, n, sparsity=cfg.data.gradient_sparsity, seed=cfg.meta.seed)
    if env.is_main:
        save_gradient(run_dir / "gradients.csv", gradient)
    return gradient.astype(np.float32)


class Trainer:
    """Holds everything one pretraining run needs; `train_step` is one optimizer update."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, env: DistEnv, resume: bool) -> None:
        self.cfg, self.run_dir, self.env = cfg, run_dir, env
        torch.manual_seed(cfg.meta.seed)  # identical initial weights on every rank
        self.dataset, normalizer = build_dataset(cfg, env, run_dir)
        restored = ckpt.load_latest(run_dir, map_location=env.device) if resume else None
        if resume and restored is None:
            logger.warning("--resume: no usable checkpoint in %s, starting from scratch", run_dir)
        if restored is not None:
            self.model, state = restored
        else:
            metadata = {"normalization": normalizer.to_dict(), "write_tag": cfg.logging.write_tag}
            self.model, state = build_model(cfg, self.dataset, run_dir, env, metadata), None
        self.model.to(env.device)
        self.model.set_fused_attn(cfg.meta.attn_mode == "flash_attn")
        self.model.set_grad_checkpointing(cfg.meta.grad_checkpointing)
        self.sampler = GlobalBatchSampler(len(self.dataset), cfg.data.batch_size, world_size=env.world_size,
                                          rank=env.rank, seed=cfg.meta.seed)
        self.schedule = Schedule(cfg.optimization, self.sampler.batches_per_epoch, cfg.meta.accumulation_steps,
                                 legacy_ema=cfg.meta.legacy_ema)
        # fused AdamW: one pass over each tensor instead of ~8 multi-tensor ops (CPU and CUDA)
        self.optimizer = torch.optim.AdamW(self.model.param_groups(cfg.optimization.weight_decay),
                                           lr=cfg.optimization.start_lr, fused=True)
        self.net = DDP(self.model, broadcast_buffers=False) if env.distributed else self.model
        self.forward = torch.compile(self.net) if cfg.meta.compile else self.net
        self.position = Position()
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.position = Position(state["step"], state["epoch"], state["batch"])
        use_bf16 = cfg.meta.use_bfloat16 and (env.device.type == "cpu" or torch.cuda.is_bf16_supported())
        self.autocast = lambda: torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # -------------------------------------------------------------------------------------------- data
    def micro_batches(self) -> Iterator[Batch]:
        """This process's `Batch`es from the current position on, across epochs."""
        pos, grid = self.position, (self.model.config.num_rois, self.model.config.num_time_patches)
        batches = MaskedBatches(self.dataset, self.cfg.mask, grid, seed=self.cfg.meta.seed,
                                batch_size=self.cfg.data.batch_size, rank=self.env.rank,
                                world_size=self.env.world_size)
        pin = self.cfg.data.pin_mem and self.env.device.type == "cuda"
        for epoch in range(pos.epoch, self.cfg.optimization.epochs):
            yield from epoch_loader(batches, self.sampler, epoch, pos.batch if epoch == pos.epoch else 0,
                                    num_workers=self.cfg.data.num_workers, pin_memory=pin)

    # -------------------------------------------------------------------------------------------- step
    def train_step(self, micro: list[Batch]) -> dict[str, Any]:
        """Accumulate gradients over the micro-batches, then AdamW, schedules and the EMA update.

        Nothing here waits for the device: the row's `loss` (this process's mean over the micro-batches) and
        `grad_norm` stay tensors until `fit` fetches a log interval of rows at once. Drop path draws from torch's
        default generator (which activation checkpointing replays), reseeded before each micro-batch from
        (seed, step, micro-batch, rank): a resumed run drops the same paths whatever ran before.
        """
        step, dev, opt = self.position.step, self.env.device, self.cfg.optimization
        lr, wd = self.schedule.lr(step), self.schedule.weight_decay(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if not group["wd_exempt"]:
                group["weight_decay"] = wd
        total = torch.zeros((), device=dev)
        for i, batch in enumerate(micro):
            b = batch.to(dev, non_blocking=True)
            torch.manual_seed(derive_seed(self.cfg.meta.seed, DROP_PATH_STREAM, step, i, self.env.rank))
            sync = i == len(micro) - 1
            no_sync = self.net.no_sync() if self.env.distributed and not sync else contextlib.nullcontext()
            with no_sync:
                with self.autocast():
                    out = self.forward(b.x, b.context_idx, b.target_idx)
                (out.loss / len(micro)).backward()
            total += out.loss.detach().float() / len(micro)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), opt.clip_grad) if opt.clip_grad else None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        momentum = self.schedule.momentum(step)
        self.model.update_target(momentum)
        last = micro[-1]
        self.position = Position(step + 1, *self._next(last.epoch, last.batch))
        return {"step": step + 1, "epoch": last.epoch, "batch": last.batch, "loss": total, "lr": lr,
                "weight_decay": wd, "momentum": momentum, "grad_norm": grad_norm, "k_context": b.context_idx.shape[1],
                "k_target": b.target_idx.shape[1], "target": out.target}

    def _next(self, epoch: int, batch: int) -> tuple[int, int]:
        return (epoch + 1, 0) if batch + 1 >= self.sampler.batches_per_epoch else (epoch, batch + 1)

    # -------------------------------------------------------------------------------------------- state
    def save_checkpoint(self) -> Path | None:
        """Checkpoint the current position (rank 0 writes, every rank waits). Model and optimizer state and the
        position are all a resumed run needs: everything random is seeded from the seed and the position."""
        barrier(self.env)
        if not self.env.is_main:
            return None
        state = {"optimizer": self.optimizer.state_dict(), "step": self.position.step,
                 "epoch": self.position.epoch, "batch": self.position.batch,
                 "world_size": self.env.world_size, "config": yaml.safe_dump(self.cfg.to_dict())}
        return ckpt.save_checkpoint(self.run_dir, self.model, state, self.position.step, self.cfg.logging.keep_last)

    # -------------------------------------------------------------------------------------------- loop
    def fit(self) -> None:
        """Train to the end of the schedule (or `optimization.max_steps`).

        The host waits for the device only every `logging.log_every` steps and before each checkpoint, when the
        buffered rows are fetched (`_flush`); a non-finite loss is found there, so no checkpoint ever holds the
        weights it produced. Rank 0's `Monitor` writes metrics.csv (one row per step), the bar and the curves.
        """
        cfg, env, accum = self.cfg, self.env, self.cfg.meta.accumulation_steps
        total = min(self.schedule.total_steps, cfg.optimization.max_steps or self.schedule.total_steps)
        monitor = Monitor(self.run_dir, total_steps=total, start_step=self.position.step,
                          samples_per_step=cfg.data.batch_size * env.world_size * accum,
                          collapse_every=cfg.logging.collapse_every, log_every=cfg.logging.log_every,
                          tensorboard=cfg.logging.tensorboard) if env.is_main else None
        stopwatch, batches = Stopwatch(env.device), self.micro_batches()
        pending: list[dict[str, Any]] = []
        saved = self.position.step if self.position.step else None  # a resumed run starts at its checkpoint
        try:
            while self.position.step < total:
                t0 = time.perf_counter()
                micro = list(itertools.islice(batches, accum))
                if len(micro) < accum:
                    break  # the data ran out before the schedule (ipe_scale < 1 or leftover micro-batches)
                data_time = time.perf_counter() - t0
                start = stopwatch.mark()
                row = self.train_step(micro)
                target = row.pop("target")
                row.update(data_time_s=data_time, step_time_s=Span(start, stopwatch.mark()))
                if monitor is not None:
                    monitor.watch(row["step"], target)
                pending.append(row)
                if row["step"] % cfg.logging.checkpoint_every == 0:
                    self._flush(pending, monitor)
                    self.save_checkpoint()
                    saved = self.position.step
                elif row["step"] % cfg.logging.log_every == 0:
                    self._flush(pending, monitor)
            self._flush(pending, monitor)
            if saved != self.position.step:
                self.save_checkpoint()
        finally:
            if monitor is not None:
                monitor.close()
        if env.is_main:
            self.model.save_pretrained(self.run_dir / "model")

    def _flush(self, pending: list[dict[str, Any]], monitor: Monitor | None) -> None:
        """Fetch the buffered rows in one transfer (loss averaged over processes), empty `pending`, hand the rows
        to the monitor and raise TrainingError at the first non-finite loss (every process sees the same mean)."""
        if not pending:
            return
        losses = all_reduce_mean(torch.stack([row["loss"] for row in pending]), self.env)
        rows = to_host([{**row, "loss": loss} for row, loss in zip(pending, losses.unbind(), strict=True)])
        pending.clear()
        bad = next((i for i, row in enumerate(rows) if not math.isfinite(row["loss"])), None)
        if monitor is not None:
            for row in rows[: None if bad is None else bad + 1]:
                monitor.log(row)
        if bad is not None:
            row, done = rows[bad], ckpt.list_checkpoints(self.run_dir)
            last = f"the last good state is {done[-1]}" if done else "no checkpoint was written before it"
            raise TrainingError(
                f"non-finite loss ({row['loss']}) at optimizer step {row['step']} (epoch {row['epoch']}, batch "
                f"{row['batch']}), found at step {self.position.step}; stopped without checkpointing, {last}")


def pretrain(cfg: TrainConfig, out_dir: str | Path | None = None, *, resume: bool = False) -> Path:
    """Pretrain Brain-JEPA; returns the run folder (default logging.folder/logging.write_tag; final weights in
    RUN_DIR/model, loadable with `BrainJEPA.from_pretrained(RUN_DIR)`)."""
    run_dir = Path(out_dir) if out_dir is not None else cfg.logging.run_dir
    env = init_distributed(cfg.meta.device)
    try:
        _prepare_run_dir(cfg, run_dir, resume, env)
        Trainer(cfg, run_dir, env, resume).fit()
    finally:
        cleanup(env)
    return run_dir


def _prepare_run_dir(cfg: TrainConfig, run_dir: Path, resume: bool, env: DistEnv) -> None:
    saved = run_dir / "config.yaml"
    if saved.exists():
        if not resume:
            raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it or choose a new --out")
        old = load_config(saved).to_dict()  # through the adapter: run folders of the earlier config form compare too
        new = cfg.to_dict()
        changed = [f"{s}.{k}" for s in new for k in new[s] if old.get(s, {}).get(k) != new[s][k]
                   and (s, k) not in RESUMABLE_CHANGES]
        if changed:
            raise ConfigError(f"cannot resume {run_dir} with a different config: {', '.join(changed)} changed")
    barrier(env)  # every rank has checked the folder before rank 0 writes into it
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, saved)
    barrier(env)
