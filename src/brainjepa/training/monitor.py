"""Watching a run: per-step metrics CSV, optional TensorBoard, collapse statistics, and the final plot."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from brainjepa.errors import ConfigError

logger = logging.getLogger(__name__)

# A JEPA run collapsing maps every token to nearly the same target: the spread of the (layer-normed) target
# features across samples and tokens falls toward 0 and their effective rank toward 1 (reference issue #14).
COLLAPSE_STD = 0.05
COLLAPSE_RANK_FRACTION = 0.02


@torch.no_grad()
def collapse_stats(target: Tensor, max_tokens: int = 2048) -> dict[str, float]:
    """Spread of target features [B, K, D]: mean per-channel std over samples and tokens, std of the per-sample
    pooled features across the batch, and the effective rank (exp of the entropy of the singular values)."""
    flat = target.detach().float().reshape(-1, target.shape[-1])
    if flat.shape[0] > max_tokens:
        flat = flat[torch.linspace(0, flat.shape[0] - 1, max_tokens).long()]
    sv = torch.linalg.svdvals(flat - flat.mean(0))
    p = sv / sv.sum().clamp_min(1e-12)
    rank = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()).item()
    pooled = target.detach().float().mean(1)
    batch_std = pooled.std(0).mean().item() if pooled.shape[0] > 1 else float("nan")
    return {"target_std": flat.std(0).mean().item(), "target_batch_std": batch_std, "target_rank": rank}


def collapse_warning(stats: dict[str, float], dim: int) -> str | None:
    if stats["target_std"] < COLLAPSE_STD or stats["target_rank"] < max(2.0, COLLAPSE_RANK_FRACTION * dim):
        return (
            f"REPRESENTATION COLLAPSE? target feature std {stats['target_std']:.4f} (warn < {COLLAPSE_STD}), "
            f"effective rank {stats['target_rank']:.1f} of {dim}; consider a lower LR, a longer warmup or a higher EMA"
        )
    return None


class MetricsLogger:
    """Appends one CSV row per optimizer step (and mirrors to TensorBoard when asked)."""

    FIELDS = ["step", "epoch", "batch", "loss", "lr", "weight_decay", "momentum", "samples_per_s", "data_time_s",
              "step_time_s", "grad_norm", "k_context", "k_target", "target_std", "target_batch_std", "target_rank"]

    def __init__(self, run_dir: Path, tensorboard: bool = False) -> None:
        self.path = Path(run_dir) / "metrics.csv"
        new = not self.path.exists()
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.FIELDS, extrasaction="ignore")
        if new:
            self._writer.writeheader()
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise ConfigError("logging.tensorboard=true needs the tensorboard package (pip install tensorboard)") \
                    from err
            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, row: dict[str, Any]) -> None:
        self._writer.writerow(row)
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch", "batch") and value is not None and value == value:
                    self._tb.add_scalar(key, value, row["step"])

    def truncate_after(self, step: int) -> None:
        """On resume, drop rows past the checkpoint so the CSV has each step once."""
        self._file.close()
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=self.FIELDS, extrasaction="ignore")

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def plot_curves(metrics_csv: Path, out_png: Path) -> Path | None:
    """Loss, LR and collapse statistics against the step, as one PNG (None if matplotlib is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no training-curve plot (pip install 'brainjepa[viz]')")
        return None
    with open(metrics_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None

    def col(name):
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    step = col("step")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    axes[0].plot(step, col("loss"))
    axes[0].set(title="JEPA loss (smooth L1)", xlabel="optimizer step", yscale="log")
    axes[1].plot(step, col("lr"), label="lr")
    axes[1].set(title="learning rate", xlabel="optimizer step")
    axes[2].plot(step, col("target_std"), ".-", label="target std")
    axes[2].plot(step, col("target_batch_std"), ".-", label="pooled std across batch")
    ax2 = axes[2].twinx()
    ax2.plot(step, col("target_rank"), "r.-", label="effective rank")
    ax2.set_ylabel("effective rank", color="r")
    axes[2].axhline(COLLAPSE_STD, color="gray", ls="--", lw=0.8)
    axes[2].set(title="collapse monitor", xlabel="optimizer step")
    axes[2].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
