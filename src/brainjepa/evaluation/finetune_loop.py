"""One fold of fine-tuning as plain functions, as timm's ``train_one_epoch`` / ``validate``: the learning-rate
schedule (plain numbers), one training pass, one evaluation pass, and the small `Fold` value both read.

`brainjepa.evaluation.finetune` owns everything around them: splits, model building, early stopping, files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from brainjepa.evaluation.labels import TaskKind
from brainjepa.evaluation.metrics import classification_metrics, regression_metrics
from brainjepa.models.encoder import BrainEncoder
from brainjepa.runtime import Runtime
from brainjepa.training.schedules import warmup_cosine


@dataclass(frozen=True)
class WarmupCosine:
    """The learning rate of each optimizer step: linear warmup from 0 to `base_lr` over `warmup_steps`, then a
    half-cycle cosine to `final_lr` at `total_steps` (floored at `final_lr`); pretraining's LR rule
    (`brainjepa.training.schedules.Schedule.lr`) with a start LR of 0."""

    warmup_steps: int
    total_steps: int
    base_lr: float
    final_lr: float

    def lr(self, step: int) -> float:
        """LR of 0-based optimizer step `step`."""
        return warmup_cosine(step, self.warmup_steps, self.total_steps, 0.0, self.base_lr, self.final_lr)


@dataclass(frozen=True)
class Fold:
    """What one fold's loss and metrics read.

    Args:
        index: 0-based fold number (messages say ``index + 1``).
        task: "classification" (outputs are class logits) or "regression" (one output).
        classes: class values in output order (classification), else None.
        mean / std: the training subjects' label statistics; regression targets are standardised with them for
            the loss, and predictions mapped back with them for the metrics (label units).
    """

    index: int
    task: TaskKind
    classes: list[Any] | None = None
    mean: float = 0.0
    std: float = 1.0

    def loss(self, out: Tensor, y: Tensor, label_smoothing: float = 0.0) -> Tensor:
        """Cross-entropy (with `label_smoothing`) of class logits, or MSE on the standardised target."""
        if self.task == "classification":
            return F.cross_entropy(out, y, label_smoothing=label_smoothing)
        return F.mse_loss(out[:, 0], (y.float() - self.mean) / self.std)

    def metrics(self, out: Tensor, y: Tensor) -> dict[str, float]:
        """`brainjepa.evaluation.metrics`' classification or regression metrics of outputs [N, C] and targets."""
        if self.task == "classification":
            classes = np.asarray(self.classes)
            prob = out.softmax(-1).numpy()
            return classification_metrics(classes[y.numpy()], classes[prob.argmax(1)], prob, labels=self.classes)
        return regression_metrics(y.numpy(), out[:, 0].numpy() * self.std + self.mean)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Give every group ``lr * lr_scale`` (layer-wise decay, `BrainEncoder.param_groups`)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def train_one_epoch(net: BrainEncoder, loader: DataLoader, optimizer: torch.optim.Optimizer, schedule: WarmupCosine,
                    fold: Fold, epoch: int, run: Runtime, *, label_smoothing: float = 0.0) -> float:
    """One pass over the batches {"x", "y"} of `loader`, the LR of step ``epoch * len(loader) + i`` set before
    batch i; returns the mean loss, which may be non-finite (the caller says why)."""
    net.train()
    total, count = torch.zeros((), device=run.device), 0
    for i, batch in enumerate(loader):
        set_lr(optimizer, schedule.lr(epoch * len(loader) + i))
        x, y = batch["x"].to(run.device), batch["y"].to(run.device)
        with run.autocast():
            out = net.forward_head(net(x))
        loss = fold.loss(out.float(), y, label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach() * len(y)
        count += len(y)
    return float(total) / max(count, 1)


@torch.no_grad()
def evaluate(net: BrainEncoder, loader: DataLoader, fold: Fold, run: Runtime) -> tuple[float, dict[str, float]]:
    """Loss (no label smoothing) and metrics of `net` on all batches of `loader`."""
    net.eval()
    outs, ys = [], []
    for batch in loader:
        with run.autocast():
            outs.append(net.forward_head(net(batch["x"].to(run.device))).float().cpu())
        ys.append(batch["y"])
    out, y = torch.cat(outs), torch.cat(ys)
    return float(fold.loss(out, y)), fold.metrics(out, y)
