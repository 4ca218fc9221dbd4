"""End-to-end fine-tuning of a pretrained Brain-JEPA encoder on one phenotype column of a store.

The network is the reference's downstream model: a `BrainEncoder` (the EMA target encoder's weights by default)
with the head `BrainEncoder.reset_classifier` puts on: mean over all tokens -> LayerNorm (``fc_norm``, eps 1e-6)
-> Linear (trunc-normal std 2e-5 init). What differs from the reference, on purpose:

* layer-wise LR decay applies (the reference's is inert because its parameter names never matched): with L
  blocks, patch and positional embeddings are layer 0, ``blocks.i`` is layer i + 1 and the final norm,
  ``fc_norm`` and head are layer L + 1; layer l trains at ``lr * layer_decay ** (L + 1 - l)``;
* drop path is applied (the reference's 0.1 never reached the encoder): rates rise linearly to ``drop_path``;
* evaluation windows are deterministic (centre) and training windows random, from `WindowSpec`;
* the best epoch on a validation split (carved from the training subjects) is kept, with early stopping;
* folds, splits and metrics are `brainjepa.evaluation.metrics`' (the same as the linear probe's).

The learning rate follows the reference's rule ``lr = blr * batch_size / 256`` unless ``lr`` is given, with
AdamW, linear warmup and a per-step half-cycle cosine to ``min_lr``. This module holds the settings, the
model's making, saving and loading, the folds with their early stopping and the result files; the per-epoch
passes are `brainjepa.evaluation.finetune_loop`'s.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from brainjepa.bounds import bounded
from brainjepa.data.dataset import StoreDataset
from brainjepa.data.normalize import Normalizer
from brainjepa.data.store import RunStore, check_num_rois, open_runs
from brainjepa.data.windows import WindowSpec
from brainjepa.errors import CheckpointError, ConfigError, DataError, TrainingError
from brainjepa.evaluation.embed import model_normalizer
from brainjepa.evaluation.finetune_loop import Fold, WarmupCosine, evaluate, train_one_epoch
from brainjepa.evaluation.labels import TASK_KINDS, Labels, TaskKind, read_labels
from brainjepa.evaluation.metrics import grouped_splits, summarize
from brainjepa.evaluation.options import EncoderOptions, option
from brainjepa.evaluation.probe import check_learnable
from brainjepa.io import atomic_writes, check_writable, load_weights_folder, save_weights_folder
from brainjepa.models import BrainJEPA, ModelConfig
from brainjepa.models.encoder import BrainEncoder
from brainjepa.runtime import Runtime, default_num_workers

logger = logging.getLogger(__name__)

FINETUNE_TASKS = ("auto", *TASK_KINDS)  # "auto": the kind `infer_task` reads from the labels
CHECKPOINT_CONFIG = "finetune.json"
CHECKPOINT_WEIGHTS = "model.safetensors"
FORMAT = "brainjepa-finetuned"


@dataclass(frozen=True)
class FinetuneConfig(EncoderOptions):
    """Every choice of a fine-tuning run.

    Args:
        task: "classification", "regression" or "auto" (text labels, or integers with at most 10 distinct values,
            are classes; anything else is regression).
        folds: outer subject-grouped folds (train / test).
        val_fraction: share of each fold's training subjects held out for validation: one fold of a
            round(1 / val_fraction)-fold subject-grouped split of the training subjects.
        epochs: maximum epochs per fold.
        batch_size: windows per step.
        blr: base learning rate; the peak is ``blr * batch_size / 256`` (reference rule) unless `lr` is set.
        lr: peak learning rate (overrides `blr`).
        min_lr: end of the cosine.
        warmup_epochs: linear warmup length in epochs (may be fractional).
        weight_decay: AdamW decay of weight matrices (biases and norms get none).
        layer_decay: layer-wise LR decay factor (1: off).
        drop_path: stochastic-depth rate of the last block (linear from 0 over depth).
        label_smoothing: cross-entropy label smoothing (classification only).
        patience: stop after this many epochs without a lower validation loss (0: never stop early).
        encoder: start from the "target" (EMA, the reference's downstream choice) or the "context" encoder.
        sampling_rate / target_tr / pad: how windows are cut (see `WindowSpec`; training windows are random,
            validation and test windows are the centre window).
        normalization: "model" (the model's stored normaliser, else a per-sample z-score), "sample_zscore",
            "roi_zscore" or "none".
        precision: "auto" (bf16 autocast where it is faster: `brainjepa.precision.choose_precision`), "bf16" or
            "fp32". `finetune` logs the choice and records it (bf16 / fp32) in each fold's finetune.json.
        grad_checkpointing: recompute block activations in backward (less memory, more time).
        num_workers: DataLoader workers; None: what the machine has (`brainjepa.runtime.default_num_workers`).
        seed: seeds splits, head init, drop path, window draws and batch order.
        device: torch device (default: CUDA if available, else CPU; `brainjepa.runtime.resolve_device`).
    """

    SECTION: ClassVar[str] = "finetune"

    task: TaskKind | Literal["auto"] = option(
        "auto", "classification, regression, or auto (text labels, or integers with at most 10 distinct values, "
        "are classes)", choices=FINETUNE_TASKS)
    folds: int = bounded(5, ge=2)
    val_fraction: float = bounded(0.2, gt=0, lt=0.5)
    epochs: int = bounded(20, ge=1)
    batch_size: int = bounded(16, ge=1)
    blr: float = bounded(1e-3, gt=0)
    lr: float | None = bounded(None, gt=0)
    min_lr: float = bounded(1e-6, ge=0)
    warmup_epochs: float = bounded(2.0, ge=0)
    weight_decay: float = bounded(0.05, ge=0)
    layer_decay: float = bounded(0.75, gt=0, le=1)
    drop_path: float = bounded(0.1, ge=0, lt=1)
    label_smoothing: float = bounded(0.0, ge=0, lt=1)
    patience: int = bounded(5, ge=0)
    grad_checkpointing: bool = False
    num_workers: int | None = bounded(None, ge=0)
    seed: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        """Pretraining's schedule rules (`OptimizationConfig.check_schedule`): the peak LR is reached and the cosine
        runs; label smoothing is refused where it cannot apply."""
        super().__post_init__()
        if self.warmup_epochs > self.epochs:
            raise ConfigError(f"finetune.warmup_epochs ({self.warmup_epochs:g}) exceeds finetune.epochs "
                              f"({self.epochs}): the learning rate would never reach its peak; lower "
                              "finetune.warmup_epochs")
        if self.min_lr > self.peak_lr:
            peak = "finetune.lr" if self.lr is not None else "finetune.blr x finetune.batch_size / 256"
            raise ConfigError(f"finetune.min_lr ({self.min_lr:g}) exceeds the peak learning rate ({peak} = "
                              f"{self.peak_lr:g}): the cosine decay would never run")
        if self.task == "regression":
            check_smoothing(self.label_smoothing, self.task)

    def for_machine(self) -> FinetuneConfig:
        """This config with `precision` chosen for the device (logged in one line) and `num_workers` for the CPUs:
        what the run uses, and what finetune.json records."""
        run = self.runtime()
        run.log(logger)
        workers = default_num_workers(run.device) if self.num_workers is None else self.num_workers
        return replace(self, precision=run.precision.name, num_workers=workers)

    @property
    def peak_lr(self) -> float:
        """`lr`, or the reference's rule ``blr * batch_size / 256``."""
        return self.lr if self.lr is not None else self.blr * self.batch_size / 256

    def window(self, frames: int, *, train: bool) -> WindowSpec:
        """Windows of `frames` samples: random for training, the centre window for validation and test."""
        return WindowSpec(frames=frames, sampling_rate=self.sampling_rate, mode="random" if train else "center",
                          target_tr=self.target_tr, short="pad" if self.pad else "error")


def check_smoothing(label_smoothing: float, task: str) -> None:
    """Label smoothing changes the cross-entropy only: with a regression target it would be accepted and ignored."""
    if label_smoothing and task != "classification":
        raise ConfigError(f"finetune.label_smoothing ({label_smoothing:g}) applies to classification only, and this "
                          f"task is {task}; leave finetune.label_smoothing at 0")


def build_finetune_model(model: BrainJEPA, num_outputs: int, *, encoder: str = "target",
                         drop_path: float = 0.0) -> BrainEncoder:
    """A fresh `BrainEncoder` that copies `model`'s (target or context) encoder weights, rebuilt with stochastic
    depth rising linearly to `drop_path` (DropPath has no weights, so the state dict loads as is), with a new
    head of `num_outputs` (`BrainEncoder.reset_classifier`) and every parameter trainable."""
    source = model.target_encoder if encoder == "target" else model.encoder
    net = BrainEncoder(model.config.replace(drop_path_rate=drop_path), source.pos_embed.gradient.cpu())
    net.load_state_dict(source.state_dict(), strict=True)  # copies the values
    net.reset_classifier(num_outputs)
    return net.requires_grad_(True)


def save_finetuned(net: BrainEncoder, directory: str | Path, info: dict[str, Any]) -> Path:
    """Write ``model.safetensors`` (the encoder's state dict, head included) and ``finetune.json`` (architecture,
    `num_outputs`, then `info`: task, classes, label statistics, normalisation, windows) into directory."""
    meta = {"model": net.cfg.to_dict(), "num_outputs": net.num_outputs, **info}
    return save_weights_folder(directory, net, meta, config_name=CHECKPOINT_CONFIG, weights_name=CHECKPOINT_WEIGHTS,
                               fmt=FORMAT, json_default=_json_default)


def load_finetuned(directory: str | Path) -> tuple[BrainEncoder, dict[str, Any]]:
    """Read what `save_finetuned` wrote: the encoder with its head (eval mode; logits are
    ``net.forward_head(net(x))``) and its ``finetune.json`` record.

    Folders written before the head moved onto the encoder hold the same tensors with the encoder's under
    ``encoder.`` (a wrapper module's names); they load too.

    Raises:
        CheckpointError: not a fine-tuned model folder, unreadable or non-finite weights, or weights that do not
            match the recorded architecture.
    """
    meta, state = load_weights_folder(directory, config_name=CHECKPOINT_CONFIG, weights_name=CHECKPOINT_WEIGHTS,
                                      fmt=FORMAT, what="fine-tuned model")
    state = {name.removeprefix("encoder."): tensor for name, tensor in state.items()}
    try:
        config = ModelConfig.from_dict(meta["model"])
    except ConfigError as err:
        raise CheckpointError(f"{directory}/{CHECKPOINT_CONFIG}: {err}") from None
    try:
        net = BrainEncoder(config, state["pos_embed.gradient"])
        net.reset_classifier(int(meta["num_outputs"]))
        net.load_state_dict(state, strict=True)
    except (KeyError, RuntimeError) as err:
        why = " ".join(str(err).split())  # torch's report spans lines; errors here are one line
        raise CheckpointError(f"{directory}: weights do not match their config ({why})") from err
    return net.eval(), meta


# ------------------------------------------------------------------------------------------------- results
@dataclass
class FinetuneResult:
    """Outcome of `finetune`: per-fold test metrics, their mean and std, and per-fold training curves."""

    task: str
    label: str
    classes: list[Any] | None  # class values in output order (classification), else None
    folds: list[dict[str, float]]  # test metrics per fold
    summary: dict[str, tuple[float, float]]  # metric -> (mean, std) over folds
    best_epochs: list[int]  # 1-based epoch whose weights were kept, per fold
    histories: list[list[dict[str, float]]] = field(default_factory=list)  # one row per epoch, per fold

    def table(self) -> str:
        """Markdown: one row per metric, mean ± std over folds, then the per-fold values."""
        names = list(self.summary)
        head = "| metric | mean ± std | " + " | ".join(f"fold {k + 1}" for k in range(len(self.folds))) + " |"
        lines = [head, "|" + "---|" * (len(self.folds) + 2)]
        for name in names:
            mean, std = self.summary[name]
            per_fold = " | ".join(f"{fold[name]:.4f}" for fold in self.folds)
            lines.append(f"| {name} | {mean:.4f} ± {std:.4f} | {per_fold} |")
        return "\n".join(lines)

    def save(self, out: str | Path) -> None:
        """Write ``finetune.csv`` (one row per fold, then mean and std), ``finetune.md`` and
        ``history_fold{k}.csv`` into out."""
        import pandas as pd

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        pairs = enumerate(zip(self.folds, self.best_epochs, strict=True))
        rows = [{"fold": str(k + 1), "best_epoch": epoch, **m} for k, (m, epoch) in pairs]
        rows.append({"fold": "mean", **{n: v[0] for n, v in self.summary.items()}})
        rows.append({"fold": "std", **{n: v[1] for n, v in self.summary.items()}})
        title = f"# Fine-tuning: {self.label} ({self.task}, {len(self.folds)} subject-grouped folds)\n\n"
        text = title + self.table() + "\n"
        tables = [("finetune.csv", pd.DataFrame(rows).astype({"best_epoch": "Int64"}))] + [
            (f"history_fold{k + 1}.csv", pd.DataFrame(history)) for k, history in enumerate(self.histories)]
        writes = [(out / name, lambda tmp, t=table: t.to_csv(tmp, index=False)) for name, table in tables]
        atomic_writes([*writes, (out / "finetune.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))])


# ----------------------------------------------------------------------------------------------- main loop
def finetune(
    model: BrainJEPA | str | Path,
    store: RunStore | str | Path,
    label: str,
    *,
    config: FinetuneConfig | None = None,
    gradient: str | Path | np.ndarray | None = None,
    out: str | Path | None = None,
    save_checkpoints: bool = True,
    progress: bool = True,
) -> FinetuneResult:
    """Fine-tune `model` on the phenotype column `label` of `store` in subject-grouped folds.

    Args:
        model: a BrainJEPA, or a folder / checkpoint `BrainJEPA.load` reads (copied; never changed).
        store: a RunStore or its directory; every run with a value in `label` is a sample.
        label: manifest column to predict.
        config: hyperparameters (default `FinetuneConfig()`).
        gradient: the gradient CSV an official reference checkpoint needs.
        out: folder for ``finetune.csv``, ``finetune.md``, ``history_fold{k}.csv`` and, with
            `save_checkpoints`, the best weights of fold k in ``fold{k}/`` (`save_finetuned`).
        save_checkpoints: write the per-fold best checkpoints into `out`.
        progress: tqdm bars over epochs.

    Returns:
        `FinetuneResult` with the test metrics of every fold and their mean ± std.

    Raises:
        DataError: a bad label (missing column, all missing, non-finite, text for a regression, a single class,
            too few labelled subjects for the folds: `brainjepa.evaluation.labels.read_labels`, checked before the
            model is loaded), store and model ROI counts differ.
        ConfigError: bad hyperparameters.
        TrainingError: a non-finite training loss (the message says whether the labels or the LR are the cause).
    """
    cfg = config or FinetuneConfig()
    if out is not None:
        check_writable(out, folder=True)  # before hours of training, not after
    store, _ = open_runs(store, None)
    labels = read_labels(store, label, cfg.task, folds=cfg.folds)  # refused here, before any training
    check_smoothing(cfg.label_smoothing, labels.task)  # task "auto" is known only now
    check_learnable(labels.targets, labels.groups, labels.task, cfg.folds, f"{store.path}: label {label!r}")
    cfg = cfg.for_machine()
    run = cfg.runtime()  # bf16 or fp32 now: chosen (and logged) once by for_machine
    pretrained = BrainJEPA.load(model, gradient=gradient)
    check_num_rois(store, pretrained.config.num_rois)
    normalizer = model_normalizer(pretrained, cfg.normalization)
    splits = grouped_splits(labels.targets, labels.groups, task=labels.task, folds=cfg.folds, seed=cfg.seed)
    logger.info("fine-tuning on %r (%s): %d runs of %d subjects, %d folds, peak lr %.3g", label, labels.task,
                len(labels.runs), len(np.unique(labels.groups)), cfg.folds, cfg.peak_lr)
    fold_metrics, best_epochs, histories = [], [], []
    for k, (train, test) in enumerate(splits):
        fold_out = Path(out) / f"fold{k + 1}" if out is not None and save_checkpoints else None
        metrics, best_epoch, history = _run_fold(pretrained, store, labels, train, test, normalizer, cfg, run, k,
                                                 fold_out, progress)
        fold_metrics.append(metrics)
        best_epochs.append(best_epoch)
        histories.append(history)
    result = FinetuneResult(labels.task, label, labels.classes, fold_metrics, summarize(fold_metrics), best_epochs,
                            histories)
    if out is not None:
        result.save(out)
    return result


def _run_fold(pretrained: BrainJEPA, store: RunStore, labels: Labels, train: np.ndarray, test: np.ndarray,
              normalizer: Normalizer, cfg: FinetuneConfig, run: Runtime, fold: int, out: Path | None,
              progress: bool) -> tuple[dict[str, float], int, list[dict[str, float]]]:
    """Train on one fold (validation carved from its training subjects); test metrics of the best epoch."""
    from tqdm.auto import tqdm

    try:
        inner = grouped_splits(labels.targets[train], labels.groups[train], task=labels.task,
                               folds=max(2, round(1 / cfg.val_fraction)), seed=cfg.seed + fold)
    except ValueError as err:  # DataError, or scikit-learn's own complaint about too few members per class
        raise DataError(f"{store.path}: validation split of fold {fold + 1} (val_fraction {cfg.val_fraction}): "
                        f"{err}") from err
    fit, val = train[inner[0][0]], train[inner[0][1]]
    mean, std = 0.0, 1.0
    if labels.task == "regression":
        mean, std = float(labels.targets[fit].mean()), float(labels.targets[fit].std())
        if std == 0:
            raise DataError(f"{store.path}: label {labels.name!r} is constant in the training subjects of fold "
                            f"{fold + 1}; it cannot be standardised")
    fold_seed = cfg.seed * 1000 + fold
    num_outputs = len(labels.classes) if labels.classes is not None else 1
    facts = Fold(fold, labels.task, labels.classes, mean, std)
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        torch.manual_seed(fold_seed)  # head init and drop path
        net = build_finetune_model(pretrained, num_outputs, encoder=cfg.encoder, drop_path=cfg.drop_path)
        net.to(run.device).set_grad_checkpointing(cfg.grad_checkpointing)
        frames = net.cfg.num_frames
        loaders = {name: _loader(store, labels, idx, normalizer, cfg, frames, train=name == "fit", seed=fold_seed)
                   for name, idx in (("fit", fit), ("val", val), ("test", test))}
        optimizer = torch.optim.AdamW(net.param_groups(cfg.weight_decay, cfg.layer_decay), lr=cfg.peak_lr)
        steps = len(loaders["fit"])
        schedule = WarmupCosine(warmup_steps=int(cfg.warmup_epochs * steps), total_steps=max(1, cfg.epochs * steps),
                                base_lr=cfg.peak_lr, final_lr=cfg.min_lr)
        best_loss, best_epoch, best_state, waited, history = math.inf, 0, None, 0, []
        bar = tqdm(range(cfg.epochs), desc=f"fold {fold + 1}/{cfg.folds}", unit="epoch", disable=not progress)
        for epoch in bar:
            loaders["fit"].dataset.set_epoch(epoch)
            train_loss = train_one_epoch(net, loaders["fit"], optimizer, schedule, facts, epoch, run,
                                         label_smoothing=cfg.label_smoothing)
            if not math.isfinite(train_loss):
                raise TrainingError(f"fine-tuning fold {fold + 1}: non-finite training loss in epoch {epoch + 1}; "
                                    f"{_non_finite_hint(facts, labels.targets[fit], cfg.peak_lr)}")
            val_loss, val_metrics = evaluate(net, loaders["val"], facts, run)
            history.append({"epoch": epoch + 1, "lr": optimizer.param_groups[-1]["lr"], "train_loss": train_loss,
                            "val_loss": val_loss, **{f"val_{n}": v for n, v in val_metrics.items()}})
            bar.set_postfix(train=f"{train_loss:.3f}", val=f"{val_loss:.3f}")
            if val_loss < best_loss:
                best_loss, best_epoch, waited = val_loss, epoch + 1, 0
                best_state = {n: t.detach().cpu().clone() for n, t in net.state_dict().items()}
            else:
                waited += 1
                if cfg.patience and waited >= cfg.patience:
                    logger.info("fold %d: early stop after epoch %d (best %d)", fold + 1, epoch + 1, best_epoch)
                    break
        if best_state is None:
            raise TrainingError(f"fine-tuning fold {fold + 1}: the validation loss was never finite")
        net.load_state_dict(best_state)
        _, test_metrics = evaluate(net, loaders["test"], facts, run)
    if out is not None:
        info = {"task": labels.task, "classes": labels.classes, "label_mean": mean, "label_std": std,
                "best_epoch": best_epoch, "normalization": normalizer.to_dict(),
                "window": asdict(cfg.window(frames, train=False)), "config": asdict(cfg)}
        save_finetuned(net.cpu(), out, info)
    return test_metrics, best_epoch, history


def _non_finite_hint(fold: Fold, targets: np.ndarray, lr: float) -> str:
    """What to change after a non-finite training loss: the labels (the fold's training `targets`) when they are
    the cause, else the learning rate `lr`."""
    if fold.task == "regression":
        with np.errstate(over="ignore", invalid="ignore"):  # the float32 targets the loss sees
            scaled = (targets.astype(np.float32) - np.float32(fold.mean)) / np.float32(fold.std)
        if not np.isfinite(scaled).all():
            return (f"the labels are the cause: standardised in float32 they overflow (values up to "
                    f"{np.abs(targets).max():.3g}, mean {fold.mean:.3g}, std {fold.std:.3g}); rescale the label column")
        checked = f"the labels are finite (standardised with mean {fold.mean:.3g}, std {fold.std:.3g})"
    else:
        checked = f"the labels are {len(np.unique(targets))} valid classes"
    return f"{checked}, so the learning rate is likely too high: lower lr (--lr; now {lr:.3g})"


def _loader(store: RunStore, labels: Labels, items: np.ndarray, normalizer: Normalizer, cfg: FinetuneConfig,
            frames: int, *, train: bool, seed: int) -> torch.utils.data.DataLoader:
    """Batches of {"x": [B, R, frames], "y": [B]} for the labelled items `items` (shuffled when training)."""
    dataset = _Labelled(StoreDataset(store, indices=labels.runs[items], normalizer=normalizer,
                                     window=cfg.window(frames, train=train), seed=seed), labels.targets[items])
    return torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=train, num_workers=cfg.num_workers,
        generator=torch.Generator().manual_seed(seed) if train else None,
    )


class _Labelled(torch.utils.data.Dataset):
    """A StoreDataset whose items also carry the training target ``y``."""

    def __init__(self, windows: torch.utils.data.Dataset, targets: np.ndarray) -> None:
        self.windows = windows
        self.targets = torch.from_numpy(targets)

    def set_epoch(self, epoch: int) -> None:
        self.windows.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"x": self.windows[i]["x"], "y": self.targets[i]}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
