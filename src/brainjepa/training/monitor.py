"""Watching a run: per-step metrics CSV, optional TensorBoard, collapse statistics, progress bar and final plot.

The training step never waits on the device: rows are handed over with device tensors (loss, grad norm) and
`Span`s (step times), `to_host` fetches a whole log interval of them in one transfer, and rank 0's `Monitor`
writes the host rows, one per optimizer step.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from brainjepa.errors import ConfigError
from brainjepa.io import atomic_write, output_error
from brainjepa.models.health import HEALTH_FIELDS, MIN_BLOCK_RATIO, RUN_SHARE_RANGE

logger = logging.getLogger(__name__)

# A JEPA run collapsing maps every token to nearly the same target: the spread of the (layer-normed) target
# features across samples and tokens falls toward 0 and their effective rank toward 1 (reference issue #14).
COLLAPSE_STD = 0.05
COLLAPSE_RANK_FRACTION = 0.02
TIMING_FIELDS = ("samples_per_s", "data_time_s", "step_time_s")  # differ between identical runs


@torch.no_grad()
def collapse_sample(target: Tensor, max_tokens: int = 2048) -> tuple[Tensor, Tensor]:
    """What the collapse statistics need from targets [B, K, D], taken without waiting on the device: up to
    `max_tokens` token features (evenly strided, fp32 copies) and each sample's mean over its K target tokens
    [B, D]: a statistic of the masked targets, not an embedding (features are pooled by `BrainEncoder.pool`)."""
    flat = target.detach().reshape(-1, target.shape[-1])
    stride = -(-flat.shape[0] // max_tokens)
    return flat[::stride].to(torch.float32, copy=True), target.detach().float().mean(1)


@torch.no_grad()
def collapse_stats(tokens: Tensor, pooled: Tensor) -> dict[str, float]:
    """Spread of target features (see `collapse_sample`): mean per-channel std over samples and tokens, std of the
    per-sample pooled features across the batch, and the effective rank (exp of the entropy of the singular
    values). The SVD synchronises a GPU, so it runs when the rows are fetched anyway."""
    sv = torch.linalg.svdvals(tokens - tokens.mean(0))
    p = sv / sv.sum().clamp_min(1e-12)
    rank = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
    batch_std = pooled.std(0).mean() if pooled.shape[0] > 1 else torch.tensor(float("nan"))
    values = torch.stack([tokens.std(0).mean(), batch_std.to(rank), rank]).tolist()
    return dict(zip(("target_std", "target_batch_std", "target_rank"), values, strict=True))


def rank_floor(dim: int, patch_size: int) -> float:
    """The effective rank below which the targets are suspect: 2% of the width (collapse), and, up to a quarter of
    the width, the patch size: LayerNorm(W x_patch) spans at most patch_size directions, so a rank below it means
    the encoder is no richer than a per-patch linear map (the patch-dominated regime sits at about patch_size / 2)."""
    return max(2.0, COLLAPSE_RANK_FRACTION * dim, min(float(patch_size), dim / 4))


def collapse_warning(stats: dict[str, float], dim: int, patch_size: int) -> str | None:
    floor = rank_floor(dim, patch_size)
    if stats["target_std"] < COLLAPSE_STD or stats["target_rank"] < floor:
        return (
            f"REPRESENTATION COLLAPSE? target feature std {stats['target_std']:.4f} (warn < {COLLAPSE_STD}), "
            f"effective rank {stats['target_rank']:.1f} of {dim} (warn < {floor:g}: a {patch_size}-frame patch's "
            "linear map spans no more); consider a lower LR, a longer warmup or a higher EMA, and read the encoder "
            "health (a rank below the patch size with small block updates means the input scale is too large)"
        )
    return None


class Stopwatch:
    """Time marks that do not wait for the device: CUDA events on a GPU (recorded in the stream, read once the
    work is done), `perf_counter` on CPU (where the work is done when the call returns)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def mark(self) -> float | torch.cuda.Event:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event


@dataclass(frozen=True)
class Span:
    """The interval between two `Stopwatch` marks; `seconds()` waits for the end mark on a GPU."""

    start: float | torch.cuda.Event
    end: float | torch.cuda.Event

    def seconds(self) -> float:
        if isinstance(self.start, float):
            return self.end - self.start
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / 1e3


def to_host(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Copies of `rows` with every 0-dim tensor and `Span` turned into a float. All tensors travel in one
    device-to-host copy: one synchronisation per log interval instead of one per value and step."""
    out = [dict(row) for row in rows]
    slots = [(row, key) for row in out for key, value in row.items() if isinstance(value, Tensor)]
    if slots:
        values = torch.stack([row[key].detach().float().reshape(()) for row, key in slots]).tolist()
        for (row, key), value in zip(slots, values, strict=True):
            row[key] = value
    for row in out:
        for key, value in row.items():
            if isinstance(value, Span):
                row[key] = value.seconds()
    return out


class Monitor:
    """Rank 0's view of a run: writes one metrics.csv row per optimizer step (and TensorBoard), adds collapse
    statistics every `collapse_every` steps (and at step 1) with a loud warning on collapse, keeps the progress
    bar and the `log_every` log line, and draws `training_curves.png` on `close`.

    Args:
        run_dir: the run folder. total_steps: steps of the whole run (for the bar). start_step: steps already done;
            metrics.csv rows after it (left by an interrupted run) are dropped, so each step has one row.
        samples_per_step: samples of one optimizer step, all processes and micro-batches (for samples_per_s).
        patch_size: frames per patch (the rank floor of `collapse_warning`).
        progress: draw the bar (off: the `log_every` lines alone, e.g. in a Slurm log).
    """

    FIELDS = ("step", "epoch", "batch", "loss", "lr", "weight_decay", "momentum", "samples_per_s", "data_time_s",
              "step_time_s", "grad_norm", "k_context", "k_target", "target_std", "target_batch_std", "target_rank",
              "heldout_loss", *HEALTH_FIELDS)

    def __init__(self, run_dir: Path, *, total_steps: int, start_step: int = 0, samples_per_step: int,
                 collapse_every: int, log_every: int, patch_size: int, tensorboard: bool = False,
                 progress: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.patch_size = patch_size
        self.samples_per_step, self.collapse_every, self.log_every = samples_per_step, collapse_every, log_every
        self._tb = _tensorboard(self.run_dir) if tensorboard else None
        path = self.run_dir / "metrics.csv"
        kept = []
        if path.exists():
            with open(path, newline="") as f:
                kept = [row for row in csv.DictReader(f) if int(row["step"]) <= start_step]

        def rewrite(tmp: Path) -> None:  # the kept rows are replaced atomically: a full disk loses none of them
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.FIELDS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(kept)

        atomic_write(path, rewrite)
        self._path = path
        self._file = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._csv = csv.DictWriter(self._file, fieldnames=self.FIELDS, extrasaction="ignore")
        self.bar = tqdm(total=total_steps, initial=start_step, desc="pretrain", dynamic_ncols=True,
                        disable=not progress)
        self._samples: dict[int, tuple[Tensor, Tensor]] = {}

    def watch(self, step: int, target: Tensor) -> None:
        """Keep what the collapse statistics of `step` need (on collapse steps), without waiting on the device."""
        if step == 1 or step % self.collapse_every == 0:
            self._samples[step] = collapse_sample(target)

    def log(self, row: dict[str, Any]) -> None:
        """Write one step's row of host values (`to_host`): step, epoch, batch, loss, lr, ..., timings."""
        row = dict(row)
        step = row["step"]
        row["samples_per_s"] = self.samples_per_step / max(row["step_time_s"] + row["data_time_s"], 1e-9)
        if step in self._samples:
            tokens, pooled = self._samples.pop(step)
            row.update(collapse_stats(tokens, pooled))
            warning = collapse_warning(row, tokens.shape[-1], self.patch_size)
            if warning:
                logger.warning("step %d: %s", step, warning)
        try:
            self._csv.writerow(row)
            self._file.flush()
        except OSError as err:  # a full disk: one line naming metrics.csv and the disk
            raise output_error(self._path, err) from err
        if self._tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch", "batch") and value is not None and value == value:
                    self._tb.add_scalar(key, value, step)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", sps=f"{row['samples_per_s']:.1f}")
        if row.get("heldout_loss") is not None:
            logger.info("step %d held-out JEPA loss %.5f (training loss %.5f)", step, row["heldout_loss"], row["loss"])
        if step % self.log_every == 0:
            logger.info("step %d epoch %d loss %.5f lr %.3e wd %.3f ema %.5f %.1f samples/s", step, row["epoch"],
                        row["loss"], row["lr"], row["weight_decay"], row["momentum"], row["samples_per_s"])

    def close(self) -> None:
        """Close the bar and the files and plot the curves (also after a failed run: they show what happened)."""
        self.bar.close()
        try:
            self._file.close()
        except OSError as err:  # its last rows could not be flushed (a full disk)
            raise output_error(self._path, err) from err
        if self._tb is not None:
            self._tb.close()
        plot_curves(self.run_dir / "metrics.csv", self.run_dir / "training_curves.png")


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:
        raise ConfigError("logging.tensorboard=true needs the tensorboard package (pip install tensorboard)") from err
    return SummaryWriter(str(run_dir / "tensorboard"))


def _points(step: list[float], values: list[float]) -> tuple[list[float], list[float]]:
    """The (step, value) pairs where a sparse column (measured every eval_every steps) has a value."""
    kept = [(s, v) for s, v in zip(step, values, strict=True) if v == v]
    return [s for s, _ in kept], [v for _, v in kept]


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
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    axes[0].plot(step, col("loss"), label="training")
    held = col("heldout_loss")
    if any(v == v for v in held):
        axes[0].plot(*_points(step, held), "o-", label="held-out subjects")
        axes[0].legend(fontsize=8)
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
    axes[3].plot(*_points(step, col("block_ratio")), "o-", label="block change of the stream")
    axes[3].plot(*_points(step, col("run_share")), "s-", label="feature variance between windows")
    axes[3].axhline(MIN_BLOCK_RATIO, color="C0", ls="--", lw=0.8)
    axes[3].axhspan(*RUN_SHARE_RANGE, color="C1", alpha=0.1, label="healthy share")
    axes[3].set(title="encoder health (dashed: min block change)", xlabel="optimizer step", ylim=(0, 1.05))
    axes[3].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    try:
        atomic_write(out_png, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return out_png
