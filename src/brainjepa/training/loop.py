"""JEPA pretraining: one process or many (torchrun), resumable, observable.

`pretrain(cfg, out_dir)` builds data, masks, model and optimizer from a TrainConfig and runs
`Trainer.train_step` until the schedule (or `optimization.max_steps`) ends. Everything random is a function of
the seed and the position (epoch, batch): data order, windows and masks; so a resumed run continues exactly.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from brainjepa.config import TrainConfig, save_config
from brainjepa.errors import ConfigError, TrainingError
from brainjepa.masks import MaskCollator
from brainjepa.models import BrainJEPA, model_config
from brainjepa.training import checkpoint as ckpt
from brainjepa.training.distributed import DistEnv, all_reduce_mean, barrier, cleanup, init_distributed
from brainjepa.training.monitor import MetricsLogger, collapse_stats, collapse_warning, plot_curves
from brainjepa.training.sampler import GlobalBatchSampler, MaskedBatches
from brainjepa.training.schedules import Schedule

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


def build_model(cfg: TrainConfig, gradient: np.ndarray, metadata: dict[str, Any]) -> BrainJEPA:
    """The model a config describes: preset, then explicit dims, then the data's shape."""
    m = cfg.meta
    explicit = {k: getattr(m, k) for k in ("embed_dim", "depth", "num_heads", "pred_num_heads") if getattr(m, k)}
    mcfg = model_config(
        m.model_name, num_rois=cfg.data.crop_size[0], num_frames=cfg.data.crop_size[1],
        patch_size=cfg.mask.patch_size, pred_embed_dim=m.pred_emb_dim, pred_depth=m.pred_depth,
        gradient_dim=gradient.shape[1], pos_embed="mapping" if m.add_w == "mapping" else "sincos",
        drop_path_rate=m.drop_path, **explicit,
    )
    return BrainJEPA(mcfg, gradient, metadata=metadata)


def build_dataset(cfg: TrainConfig, env: DistEnv, run_dir: Path):
    """Store -> normaliser (statistics reused from the store when present) -> windowed dataset."""
    from brainjepa.data.dataset import StoreDataset
    from brainjepa.data.normalize import make_normalizer, normalizer_from_dict
    from brainjepa.data.store import RunStore
    from brainjepa.data.windows import WindowSpec

    if cfg.data.path is None:
        raise ConfigError("data.path is not set: give the store written by `brainjepa prepare` or `simulate`")
    store = RunStore(cfg.data.path)
    rois, frames = cfg.data.crop_size
    if store.num_rois != rois:
        raise ConfigError(f"data.crop_size says {rois} ROIs but the store {store.path} has {store.num_rois}")
    kind = "sample_zscore" if cfg.meta.use_standatdization else cfg.data.normalization
    saved = store.metadata.get("normalization")
    if kind == "robust" and isinstance(saved, dict) and saved.get("kind") == "robust":
        normalizer = normalizer_from_dict(saved)
    else:
        normalizer = make_normalizer(kind, store=store, progress=env.is_main)
    window = WindowSpec(frames=frames, sampling_rate=cfg.data.sampling_rate if cfg.meta.downsample else 1,
                        mode="random", target_tr=cfg.data.target_tr, short=cfg.data.short_runs)
    return StoreDataset(store, normalizer=normalizer, window=window, seed=cfg.meta.seed), normalizer


def resolve_gradient(cfg: TrainConfig, dataset, run_dir: Path, env: DistEnv) -> np.ndarray:
    """data.gradient_csv_path, or gradients of the store's group FC (saved as RUN_DIR/gradients.csv)."""
    from brainjepa.data.gradients import compute_gradients, compute_group_fc, load_gradient, save_gradient

    if cfg.data.gradient_csv_path:
        return load_gradient(cfg.data.gradient_csv_path, num_rois=cfg.data.crop_size[0])
    n = cfg.data.gradient_components
    if not 1 <= n <= dataset.store.num_rois - 2:
        raise ConfigError(f"data.gradient_components={n} must be between 1 and ROIs - 2 = {dataset.store.num_rois - 2}")
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
            gradient = resolve_gradient(cfg, self.dataset, run_dir, env)
            self.model, state = build_model(cfg, gradient, {"normalization": normalizer.to_dict()}), None
        self.model.to(env.device)
        self.model.set_fused_attn(cfg.meta.attn_mode == "flash_attn")
        self.model.set_grad_checkpointing(cfg.meta.grad_checkpointing)
        self.sampler = GlobalBatchSampler(len(self.dataset), cfg.data.batch_size, world_size=env.world_size,
                                          rank=env.rank, seed=cfg.meta.seed)
        self.collator = MaskCollator(tuple(cfg.data.crop_size), seed=cfg.meta.seed, **cfg.mask_kwargs())
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
            torch.set_rng_state(state["rng"])
            if env.device.type == "cuda" and "cuda_rng" in state:
                torch.cuda.set_rng_state(state["cuda_rng"])
        use_bf16 = cfg.meta.use_bfloat16 and (env.device.type == "cpu" or torch.cuda.is_bf16_supported())
        self.autocast = lambda: torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=use_bf16)

    # -------------------------------------------------------------------------------------------- data
    def micro_batches(self) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(epoch, batch, x, context_idx, target_idx) from the current position on, across epochs."""
        pos = self.position
        batches = MaskedBatches(self.dataset, self.collator, self.cfg.data.batch_size, self.env.rank,
                                self.sampler.global_batch)
        for epoch in range(pos.epoch, self.cfg.optimization.epochs):
            self.sampler.set_epoch(epoch, pos.batch if epoch == pos.epoch else 0)
            loader = torch.utils.data.DataLoader(
                batches, sampler=self.sampler, batch_size=None, num_workers=self.cfg.data.num_workers,
                pin_memory=self.cfg.data.pin_mem and self.env.device.type == "cuda")
            for item in loader:
                yield item["epoch"], item["batch"], item["x"], item["context_idx"], item["target_idx"]

    # -------------------------------------------------------------------------------------------- step
    def train_step(self, micro: list[tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor]]) -> dict[str, Any]:
        """Accumulate gradients over the micro-batches, then AdamW, schedules and the EMA update."""
        step, dev, opt = self.position.step, self.env.device, self.cfg.optimization
        lr, wd = self.schedule.lr(step), self.schedule.weight_decay(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if not group["wd_exempt"]:
                group["weight_decay"] = wd
        total = torch.zeros((), device=dev)
        for i, (epoch, b, x, ctx, tgt) in enumerate(micro):
            x, ctx, tgt = x.to(dev, non_blocking=True), ctx.to(dev), tgt.to(dev)
            sync = i == len(micro) - 1
            no_sync = self.net.no_sync() if self.env.distributed and not sync else contextlib.nullcontext()
            with no_sync:
                with self.autocast():
                    out = self.forward(x, ctx, tgt)
                if not torch.isfinite(out.loss):
                    self.save_checkpoint()
                    raise TrainingError(
                        f"non-finite loss ({out.loss.item()}) at optimizer step {step} (epoch {epoch}, batch {b}); "
                        f"the last good state is checkpointed in {ckpt.checkpoint_dir(self.run_dir)}")
                (out.loss / len(micro)).backward()
            total += out.loss.detach() / len(micro)
        grad_norm = None
        if opt.clip_grad:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), opt.clip_grad).item()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        momentum = self.schedule.momentum(step)
        self.model.update_target(momentum)
        self.position = Position(step + 1, *self._next(micro[-1][0], micro[-1][1]))
        return {"step": step + 1, "epoch": epoch, "batch": b, "loss": total, "lr": lr, "weight_decay": wd,
                "momentum": momentum, "grad_norm": grad_norm, "k_context": ctx.shape[1], "k_target": tgt.shape[1],
                "target": out.target}

    def _next(self, epoch: int, batch: int) -> tuple[int, int]:
        return (epoch + 1, 0) if batch + 1 >= self.sampler.batches_per_epoch else (epoch, batch + 1)

    # -------------------------------------------------------------------------------------------- state
    def save_checkpoint(self) -> Path | None:
        barrier(self.env)
        if not self.env.is_main:
            return None
        state = {"optimizer": self.optimizer.state_dict(), "step": self.position.step,
                 "epoch": self.position.epoch, "batch": self.position.batch, "rng": torch.get_rng_state(),
                 "world_size": self.env.world_size, "config": yaml.safe_dump(self.cfg.to_dict())}
        if self.env.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state()
        return ckpt.save_checkpoint(self.run_dir, self.model, state, self.position.step, self.cfg.logging.keep_last)

    # -------------------------------------------------------------------------------------------- loop
    def fit(self) -> None:
        cfg, accum = self.cfg, self.cfg.meta.accumulation_steps
        total = min(self.schedule.total_steps, cfg.optimization.max_steps or self.schedule.total_steps)
        metrics = MetricsLogger(self.run_dir, cfg.logging.tensorboard) if self.env.is_main else None
        if metrics is not None and self.position.step:
            metrics.truncate_after(self.position.step)
        bar = tqdm(total=total, initial=self.position.step, desc="pretrain", disable=not self.env.is_main,
                   dynamic_ncols=True)
        batches = self.micro_batches()
        samples = cfg.data.batch_size * self.env.world_size * accum
        while self.position.step < total:
            t0 = time.perf_counter()
            micro = [m for _, m in zip(range(accum), batches, strict=False)]
            if len(micro) < accum:
                break  # the data ran out before the schedule (ipe_scale < 1 or leftover micro-batches)
            t1 = time.perf_counter()
            row = self.train_step(micro)
            self._log(row, metrics, bar, data_time=t1 - t0, step_time=time.perf_counter() - t1, samples=samples)
            if row["step"] % cfg.logging.checkpoint_every == 0:
                self.save_checkpoint()
        bar.close()
        self.save_checkpoint()
        if self.env.is_main:
            metrics.close()
            self.model.save_pretrained(self.run_dir / "model")
            plot_curves(self.run_dir / "metrics.csv", self.run_dir / "training_curves.png")

    def _log(self, row: dict[str, Any], metrics: MetricsLogger | None, bar, *, data_time: float, step_time: float,
             samples: int) -> None:
        step, target = row["step"], row.pop("target")
        row["loss"] = all_reduce_mean(row["loss"], self.env).item()
        row.update(samples_per_s=samples / max(step_time + data_time, 1e-9), data_time_s=data_time,
                   step_time_s=step_time)
        if step % self.cfg.logging.collapse_every == 0 or step == 1:
            row.update(collapse_stats(target))
            warning = collapse_warning(row, target.shape[-1])
            if warning and self.env.is_main:
                logger.warning("step %d: %s", step, warning)
        if metrics is None:
            return
        metrics.log(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", sps=f"{row['samples_per_s']:.1f}")
        if step % self.cfg.logging.log_every == 0:
            logger.info("step %d epoch %d loss %.5f lr %.3e wd %.3f ema %.5f %.1f samples/s", step, row["epoch"],
                        row["loss"], row["lr"], row["weight_decay"], row["momentum"], row["samples_per_s"])


def pretrain(cfg: TrainConfig, out_dir: str | Path | None = None, *, resume: bool = False) -> Path:
    """Pretrain Brain-JEPA; returns the run folder (final weights in RUN_DIR/model, loadable with
    `BrainJEPA.from_pretrained(RUN_DIR)`)."""
    run_dir = Path(out_dir or cfg.logging.folder)
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
        old = yaml.safe_load(saved.read_text())
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
