"""Learning-rate, weight-decay and EMA-momentum schedules as pure functions of the optimizer step.

Pure functions make resuming trivial (only the step is needed) and keep every schedule testable on its own.
Steps count optimizer updates (after gradient accumulation), as in the reference's LR and WD schedulers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from brainjepa.config import OptimizationConfig


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, start_lr: float, base_lr: float,
                  final_lr: float) -> float:
    """LR of 0-based optimizer step `step`: linear warmup start_lr -> base_lr over `warmup_steps`, then a half-cycle
    cosine base_lr -> final_lr at `total_steps` (floored at final_lr); pretraining's and fine-tuning's rule."""
    if step < warmup_steps:
        return start_lr + (step + 1) / warmup_steps * (base_lr - start_lr)
    progress = (step + 1 - warmup_steps) / max(1, total_steps - warmup_steps)
    return max(final_lr, final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass(frozen=True)
class Schedule:
    """All schedules of one run.

    Args:
        opt: the optimization config section.
        iters_per_epoch: micro-batches per epoch on one process (the reference's `ipe`).
        accumulation_steps: micro-batches per optimizer step.
        legacy_ema: reproduce the reference's EMA denominator (micro-batches, not optimizer steps), which
            leaves the momentum at about 0.996 + 0.004 / accumulation_steps at the end.
    """

    opt: OptimizationConfig
    iters_per_epoch: int
    accumulation_steps: int = 1
    legacy_ema: bool = False

    @property
    def total_steps(self) -> int:
        return max(1, int(self.opt.ipe_scale * self.opt.epochs * self.iters_per_epoch / self.accumulation_steps))

    @property
    def warmup_steps(self) -> int:
        return int(self.opt.warmup * self.iters_per_epoch / self.accumulation_steps)

    def lr(self, step: int) -> float:
        """Linear warmup start_lr -> lr, then cosine lr -> final_lr (floored at final_lr)."""
        o = self.opt
        return warmup_cosine(step, self.warmup_steps, self.total_steps, o.start_lr, o.lr, o.final_lr)

    def weight_decay(self, step: int) -> float:
        """Cosine from weight_decay to final_weight_decay over all steps, clamped at the final value."""
        o = self.opt
        progress = (step + 1) / self.total_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        wd = o.final_weight_decay + (o.weight_decay - o.final_weight_decay) * cosine
        clamp = max if o.final_weight_decay <= o.weight_decay else min
        return clamp(o.final_weight_decay, wd)

    def momentum(self, step: int) -> float:
        """EMA momentum after optimizer step `step` (0-based): linear from ema[0], reaching ema[1] at the end."""
        start, end = self.opt.ema
        denominator = self.total_steps * (self.accumulation_steps if self.legacy_ema else 1)
        return min(end, start + (step + 1) * (end - start) / denominator)
