"""JEPA pretraining: one process or many (torchrun), resumable, observable.

`pretrain(cfg, out_dir)` builds data, masks, model and optimizer from a TrainConfig and runs
`Trainer.train_step` until the schedule (or `optimization.max_steps`) ends. Everything random is a function of
the seed and the position (epoch, batch, step): data order, windows, masks, the DataLoader's seed and drop path;
so a resumed run continues bit-exactly.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP

from brainjepa.config import TrainConfig
from brainjepa.data.dataset import StoreDataset
from brainjepa.data.gradients import compute_gradients, compute_group_fc
from brainjepa.data.normalize import make_normalizer, normalizer_from_dict
from brainjepa.data.store import RunStore, check_num_rois
from brainjepa.data.windows import WindowSpec, window_positions
from brainjepa.errors import CheckpointError, ConfigError, DataError, TrainingError
from brainjepa.io import atomic_write_text, check_writable, load_gradient, save_gradient
from brainjepa.models import BrainJEPA
from brainjepa.models.health import HEALTH_FIELDS, Health
from brainjepa.models.layers import InferenceKernel, set_inference_attention
from brainjepa.runtime import Runtime, default_num_workers, runtime
from brainjepa.training import checkpoint as ckpt
from brainjepa.training.batch import DROP_PATH_STREAM, Batch, MaskedBatches, derive_seed, epoch_loader
from brainjepa.training.compiled import compile_forward, graphs_compiled
from brainjepa.training.distributed import (
    DistEnv,
    all_reduce_max,
    all_reduce_mean,
    barrier,
    cleanup,
    init_distributed,
)
from brainjepa.training.interrupt import Interrupted, StopSignals
from brainjepa.training.monitor import Monitor, Span, Stopwatch, to_host
from brainjepa.training.record import data_record, training_record
from brainjepa.training.rundir import claim_run_dir
from brainjepa.training.sampler import GlobalBatchSampler
from brainjepa.training.schedules import Schedule
from brainjepa.training.warmstart import warm_start
from brainjepa.training.watch import Watch, holdout_split, input_gain
from brainjepa.tuning import plan_target_attention

logger = logging.getLogger(__name__)


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


def build_dataset(cfg: TrainConfig, env: DistEnv) -> tuple[StoreDataset, np.ndarray]:
    """Store -> held-out subjects (data.holdout) -> normaliser fitted on the training runs (robust statistics
    reused from the store when present), gain 1 until `input_gain` sets it -> windowed dataset of the training
    runs. Returns the dataset and the held-out run indices."""
    if cfg.data.path is None:
        raise ConfigError("data.path is not set: give the store written by `brainjepa prepare` or `simulate`")
    store = RunStore(cfg.data.path)
    check_num_rois(store, cfg.model.num_rois, "model.num_rois (data.crop_size; leave it out to take the store's)")
    train, held = holdout_split(store, cfg.data.holdout, cfg.meta.seed)
    check_plan(cfg, len(train), env.world_size, held=len(held))
    window = WindowSpec(frames=cfg.model.num_frames, sampling_rate=cfg.data.sampling_rate, mode="random",
                        target_tr=cfg.data.target_tr, short=cfg.data.short_runs)
    for run, subject in enumerate(store.manifest["subject"].astype(str)):  # a short run or missing TR fails now
        try:
            window_positions(store.frames(run), window, start=0.0, tr=store.tr(run), subject=f"subject {subject!r}")
        except DataError as err:
            raise DataError(f"{store.path}: {err}") from None
    saved = store.metadata.get("normalization")
    if cfg.data.normalization == "robust" and isinstance(saved, dict) and saved.get("kind") == "robust":
        normalizer = normalizer_from_dict(saved)
    else:
        normalizer = make_normalizer(cfg.data.normalization, store=store, indices=train, progress=env.bars)
    return StoreDataset(store, indices=train, normalizer=normalizer, window=window, seed=cfg.meta.seed), held


def check_world_size(state: dict, world_size: int, run_dir: Path) -> None:
    """A resumed run keeps its process count: the global batch (data.batch_size x processes) sets the batches per
    epoch, hence the LR/EMA schedules and which runs the saved (epoch, batch) position points at."""
    saved = state.get("world_size", world_size)
    if saved != world_size:
        raise ConfigError(f"--resume: {run_dir} was trained with {saved} process(es), this run has {world_size}; the "
                          f"global batch sets the schedule and the data order, so resume it with {saved} processes")


def check_plan(cfg: TrainConfig, num_items: int, world_size: int, held: int = 0) -> None:
    """Refuse, before any work, a run that names a missing file or would take no optimizer step, naming the key."""
    for key, path in (("data.gradient_csv_path", cfg.data.gradient_csv_path),
                      ("meta.read_checkpoint", cfg.meta.read_checkpoint)):
        if path and not Path(path).exists():
            raise ConfigError(f"{key} {path}: no such file or folder")
    opt, accum, batch = cfg.optimization, cfg.meta.accumulation_steps, cfg.data.batch_size
    per_epoch = num_items // (batch * world_size)  # micro-batches per epoch (the last partial one is dropped)
    if per_epoch == 0:
        kept = f" once data.holdout={cfg.data.holdout:g} holds {held} run(s) out" if held else ""
        raise ConfigError(f"data.batch_size={batch} x {world_size} process(es) needs at least {batch * world_size} "
                          f"runs per batch but the store {cfg.data.path} has {num_items}{kept}; lower data.batch_size"
                          + (" or data.holdout" if held else ""))
    if opt.epochs * per_epoch < accum:
        raise ConfigError(f"optimization.epochs={opt.epochs} x {per_epoch} batch(es) per epoch is fewer micro-batches "
                          f"than meta.accumulation_steps={accum}, so no optimizer step would run; raise "
                          "optimization.epochs or lower meta.accumulation_steps")
    if int(opt.ipe_scale * opt.epochs * per_epoch / accum) == 0:
        raise ConfigError(f"optimization.ipe_scale={opt.ipe_scale:g} leaves a schedule of 0 optimizer steps "
                          f"({opt.epochs} epoch(s) x {per_epoch} batch(es) / {accum} accumulation steps); raise "
                          "optimization.ipe_scale")


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
    fc = compute_group_fc(dataset.store, progress=env.bars)
    gradient = compute_gradients(fc, n, sparsity=cfg.data.gradient_sparsity, seed=cfg.meta.seed)
    if env.is_main:
        save_gradient(run_dir / "gradients.csv", gradient)
    return gradient.astype(np.float32)


class Trainer:
    """Holds everything one pretraining run needs; `train_step` is one optimizer update."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, env: DistEnv, resume: bool) -> None:
        self.cfg, self.run_dir, self.env = cfg, run_dir, env
        torch.manual_seed(cfg.meta.seed)  # identical initial weights on every rank
        restored = ckpt.load_latest(run_dir, map_location=env.device) if resume else None
        if resume and restored is None:
            raise CheckpointError(f"--resume: no usable checkpoint in {run_dir} (each one is named in a warning "
                                  "above); remove the folder or choose a new --out to start again")
        if restored is not None:
            check_world_size(restored[1], env.world_size, run_dir)
        self.dataset, held = build_dataset(cfg, env)
        if restored is not None:  # the input scale the run started with (its gain was calibrated on the init)
            self.model, state = restored
            self.dataset.normalizer = normalizer_from_dict(self.model.metadata["normalization"])
        else:
            record = {"write_tag": cfg.logging.write_tag, **data_record(self.dataset.store),
                      "training": training_record(cfg, self.dataset.store, self.dataset.indices, held)}
            self.model, state = build_model(cfg, self.dataset, run_dir, env, record), None
            self.dataset.normalizer = self.dataset.normalizer.with_gain(input_gain(cfg, self.dataset, self.model))
            self.model.metadata["normalization"] = self.dataset.normalizer.to_dict()
        self.watch = Watch(self.dataset, held, cfg) if env.is_main else None
        self.model.to(env.device)
        self.model.set_fused_attn(cfg.meta.attn_mode == "flash_attn")
        self.model.set_grad_checkpointing(cfg.meta.grad_checkpointing)
        self.sampler = GlobalBatchSampler(len(self.dataset), cfg.data.batch_size, world_size=env.world_size,
                                          rank=env.rank, seed=cfg.meta.seed)
        self.schedule = Schedule(cfg.optimization, self.sampler.batches_per_epoch, cfg.meta.accumulation_steps,
                                 legacy_ema=cfg.meta.legacy_ema)
        # fused AdamW: one pass over each tensor instead of ~8 multi-tensor ops (CPU and CUDA, torch >= 2.4)
        self.optimizer = torch.optim.AdamW(self.model.param_groups(cfg.optimization.weight_decay),
                                           lr=cfg.optimization.start_lr, fused=True)
        self.net = DDP(self.model, broadcast_buffers=False) if env.distributed else self.model
        self.graphs_before = graphs_compiled()
        self.forward = compile_forward(self.net, cfg.meta.compile_backend) if cfg.meta.compile else self.net
        self.position = Position()
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.position = Position(state["step"], state["epoch"], state["batch"])
        schedule_steps = self.schedule.total_steps
        self.total_steps = min(schedule_steps, cfg.optimization.max_steps or schedule_steps)
        # at the last step without model/: stopped after its last checkpoint, before the end; fit() finishes it
        if self.position.step >= self.total_steps and (run_dir / "model").exists():
            more = (f"raise optimization.max_steps (the schedule has {schedule_steps})"
                    if self.total_steps < schedule_steps else "the schedule is complete")
            raise ConfigError(f"--resume: nothing to train, {run_dir} is at step {self.position.step} of "
                              f"{self.total_steps}; {more}")
        # `auto` is decided once per run: a resumed run keeps the precision its checkpoints were trained in, so it
        # continues as the uninterrupted run would have, whatever this machine's timing says now
        kept = state.get("precision") if state is not None and cfg.meta.precision == "auto" else None
        run = runtime(env.device, kept or cfg.meta.precision, setting="meta.device")
        if kept:
            run = replace(run, precision=run.precision._replace(reason="meta.precision auto, as this run chose at "
                                                                       "its start"))
        self.precision, self.autocast = run.precision, run.autocast
        self.target_attention = self.choose_target_attention(run)
        auto_workers = cfg.data.num_workers is None
        self.num_workers = default_num_workers(env.device) if auto_workers else cfg.data.num_workers
        if env.is_main:
            run.log(logger)
            logger.info("DataLoader workers: %d per process (%s)", self.num_workers,
                        "auto: from the CPUs available" if auto_workers else "data.num_workers")
        self.start_watch = self.check() if env.is_main and state is None else None
        self.last_watch, self.last_watch_step = self.start_watch, 0
        if self.start_watch is not None:  # what `embed` compares new data with (a wrong scale is warned about)
            self.model.metadata["input_sd"] = self.start_watch["input_sd"]

    def choose_target_attention(self, run: Runtime) -> InferenceKernel:
        """The attention kernel of the target encoder's pass (no gradient): oneDNN's fused attention where a timing
        on this run's batch shape says it is faster (bf16 on a CPU; `brainjepa.tuning.plan_target_attention`), else
        SDPA. A compiled or explicit-attention run keeps its own path, so nothing is timed for it; nor for a
        distributed one, whose ranks could time differently."""
        if self.cfg.meta.compile or self.cfg.meta.attn_mode != "flash_attn" or self.env.distributed:
            return "sdpa"
        cfg = self.model.config
        shape = (self.cfg.data.batch_size, cfg.num_rois, cfg.num_frames)
        kernel, why = plan_target_attention(self.model.target_encoder, torch.zeros(shape, device=run.device), run,
                                            steps=self.total_steps)
        set_inference_attention(self.model.target_encoder, kernel)
        if why and self.env.is_main:
            logger.info("target pass attention: %s (%s)", kernel, why)
        return kernel

    def check(self) -> dict[str, Any]:
        """Held-out loss and encoder health now (rank 0), logged; degenerate regimes are warned about by name."""
        row = self.watch.measure(self.model, self.autocast)
        health = Health(**{k: row[k] for k in HEALTH_FIELDS})
        held = (f"held-out JEPA loss {row['heldout_loss']:.5f} on {len(self.watch.held_x)} windows of "
                f"{self.watch.held_subjects} subject(s)" if row["heldout_loss"] is not None else "no held-out subjects")
        logger.info("step %d: encoder health: %s; %s", self.position.step, health.summary(), held)
        for problem in health.problems():
            logger.warning("step %d: DEGENERATE ENCODER? %s", self.position.step, problem)
        return row

    # -------------------------------------------------------------------------------------------- data
    def micro_batches(self) -> Iterator[Batch]:
        """This process's `Batch`es from the current position to the last epoch's end, from one DataLoader (its
        workers live for the whole run). On CUDA they are pinned for asynchronous copies (data.pin_mem) and each
        worker keeps enough batches ahead that two optimizer steps' micro-batches are ready."""
        pos, grid = self.position, (self.model.config.num_rois, self.model.config.num_time_patches)
        batches = MaskedBatches(self.dataset, self.cfg.mask, grid, seed=self.cfg.meta.seed,
                                batch_size=self.cfg.data.batch_size, rank=self.env.rank,
                                world_size=self.env.world_size)
        cuda, workers = self.env.device.type == "cuda", self.num_workers
        ahead = max(2, -(-2 * self.cfg.meta.accumulation_steps // workers)) if cuda and workers else None
        yield from epoch_loader(batches, self.sampler, pos.epoch, pos.batch, end_epoch=self.cfg.optimization.epochs,
                                num_workers=workers, pin_memory=self.cfg.data.pin_mem and cuda, prefetch_factor=ahead)

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
        self._record_steps()
        state = {"optimizer": self.optimizer.state_dict(), "step": self.position.step,
                 "epoch": self.position.epoch, "batch": self.position.batch,
                 "world_size": self.env.world_size, "precision": self.precision.name,
                 "config": yaml.safe_dump(self.cfg.to_dict())}
        return ckpt.save_checkpoint(self.run_dir, self.model, state, self.position.step, self.cfg.logging.keep_last)

    def write_summary(self) -> Path:
        """Log the run's last line and write RUN_DIR/summary.json: steps, precision (and why), the target pass's
        attention kernel, DataLoader workers and, with meta.compile, the graphs compiled in this process (1 when the
        dynamic token counts work; each recompilation adds one)."""
        graphs = graphs_compiled() - self.graphs_before if self.cfg.meta.compile else None
        summary = {"steps": self.position.step, "total_steps": self.total_steps, "precision": self.precision.name,
                   "precision_reason": self.precision.reason, "target_attention": self.target_attention,
                   "num_workers": self.num_workers,
                   "compiled_graphs": graphs, "input_gain": self.dataset.normalizer.gain,
                   "heldout_subjects": self.watch.held_subjects, "start": self.start_watch,
                   "end": self.last_watch if self.last_watch_step == self.position.step else self.check()}
        logger.info("finished at step %d of %d, precision %s, %d DataLoader worker(s), %s", self.position.step,
                    self.total_steps, self.precision.name, self.num_workers,
                    "not compiled" if graphs is None else f"{graphs} compiled graph(s)")
        return atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")

    # -------------------------------------------------------------------------------------------- loop
    def fit(self, on_first_step: Callable[[], None] | None = None) -> None:
        """Train to the end of the schedule (or `optimization.max_steps`); `on_first_step` is called once the first
        optimizer step of this process has completed (a failure before it is a failed start, `claim_run_dir`).

        The host waits for the device only every `logging.log_every` steps and before each checkpoint, when the
        buffered rows are fetched (`_flush`); a non-finite loss is found there, so no checkpoint ever holds the
        weights it produced. Rank 0's `Monitor` writes metrics.csv (one row per step), the bar and the curves.
        """
        cfg, env, accum, total = self.cfg, self.env, self.cfg.meta.accumulation_steps, self.total_steps
        monitor = Monitor(self.run_dir, total_steps=total, start_step=self.position.step,
                          samples_per_step=cfg.data.batch_size * env.world_size * accum,
                          collapse_every=cfg.logging.collapse_every, log_every=cfg.logging.log_every,
                          patch_size=cfg.model.patch_size,
                          tensorboard=cfg.logging.tensorboard, progress=env.progress) if env.is_main else None
        stopwatch, batches = Stopwatch(env.device), self.micro_batches()
        pending: list[dict[str, Any]] = []
        saved = self.position.step if self.position.step else None  # a resumed run starts at its checkpoint
        try:
            with StopSignals() as stop:
                while self.position.step < total:
                    t0 = time.perf_counter()
                    micro = list(itertools.islice(batches, accum))
                    if len(micro) < accum:
                        break  # the data ran out before the schedule (ipe_scale > 1)
                    data_time = time.perf_counter() - t0
                    start = stopwatch.mark()
                    row = self.train_step(micro)
                    if on_first_step is not None:
                        on_first_step()
                        on_first_step = None
                    target = row.pop("target")
                    row.update(data_time_s=data_time, step_time_s=Span(start, stopwatch.mark()))
                    if env.is_main and row["step"] % cfg.logging.eval_every == 0:  # where an interrupted run has
                        self.last_watch = self.check()                               # them too: rows stay equal
                        row.update(self.last_watch)
                        self.last_watch_step = row["step"]
                    if monitor is not None:
                        monitor.watch(row["step"], target)
                    pending.append(row)
                    at_checkpoint = row["step"] % cfg.logging.checkpoint_every == 0
                    synced = at_checkpoint or row["step"] % cfg.logging.log_every == 0
                    if synced:
                        self._flush(pending, monitor)
                    if at_checkpoint:
                        self.save_checkpoint()
                        saved = self.position.step
                    signum = self._agreed_stop(stop.signum, synced)
                    if signum:
                        self._flush(pending, monitor)
                        path = self.save_checkpoint() if saved != self.position.step else None
                        path = path or ckpt.checkpoint_dir(self.run_dir) / f"step-{self.position.step:08d}"
                        raise Interrupted(f"interrupted by {signal.Signals(signum).name} at step "
                                          f"{self.position.step}; checkpoint saved in {path}; resume with --resume",
                                          signum)
            self._flush(pending, monitor)
            if saved != self.position.step:
                self.save_checkpoint()
        except BaseException:
            if monitor is not None:  # the error that stopped the run is the one reported (not, on a full disk,
                try:                 # the curves that could not be drawn after it)
                    monitor.close()
                except OSError as err:
                    logger.debug("closing the monitor after the failure failed too: %s", err)
            raise
        if monitor is not None:
            monitor.close()
        if env.is_main:
            self._record_steps()
            self.model.save_pretrained(self.run_dir / "model")
            self.write_summary()

    def _record_steps(self) -> None:
        """The training record (metadata "training", absent in runs begun before it existed) counts the steps."""
        record = self.model.metadata.get("training")
        if isinstance(record, dict):
            record["steps"] = self.position.step

    def release(self) -> None:
        """Drop the DDP wrapper (and the compiled forward around it): its reducer holds the process group, which
        `brainjepa.training.distributed.cleanup` must be the one to tear down. The trainer cannot step after."""
        self.net = self.forward = None

    def _agreed_stop(self, signum: int, synced: bool) -> int:
        """The signal that stops the run at this step boundary (0: go on). Under torchrun the processes agree where
        they meet anyway (log and checkpoint steps), so all of them stop after the same step."""
        if not self.env.distributed:
            return signum
        return all_reduce_max(signum, self.env) if synced else 0

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


def pretrain(cfg: TrainConfig, out_dir: str | Path | None = None, *, resume: bool = False,
             progress: bool = True) -> Path:
    """Pretrain Brain-JEPA; returns the run folder (default logging.folder/logging.write_tag; final weights in
    RUN_DIR/model, loadable with `BrainJEPA.from_pretrained(RUN_DIR)`).

    The folder is locked for the run and checked first (training/rundir.py); config.yaml is written once the run
    is built, so a start that fails leaves nothing behind. SIGINT / SIGTERM stop it at the next step boundary
    with a checkpoint (`Interrupted`). `progress`: draw the bars (rank 0; log lines are written either way)."""
    run_dir = check_writable(Path(out_dir) if out_dir is not None else cfg.logging.run_dir, folder=True)
    env = replace(init_distributed(cfg.meta.device), progress=progress)
    finished, trainer = False, None
    try:
        with claim_run_dir(run_dir, cfg, resume, env) as start:
            trainer = Trainer(cfg, run_dir, env, resume)
            start()
            trainer.fit(on_first_step=start.commit)
        finished = True
    finally:
        if trainer is not None:  # (a traceback may keep the trainer alive, but not its DDP wrapper)
            trainer.release()
        cleanup(env, finished=finished)
    return run_dir
