"""`draw_masks`: the context and target token indices of one batch, a pure function of its inputs.

The generator of each batch is seeded from (seed, epoch, batch index), never from a global RNG or a counter,
so masks do not depend on process count, worker timing or `num_workers`, and a resumed run draws the same ones.
"""

from __future__ import annotations

import numbers

import torch
from torch import Tensor

from brainjepa.errors import ConfigError
from brainjepa.masks.config import MaskConfig, check_count
from brainjepa.masks.sampling import sample_masks

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def batch_seed(seed: int, epoch: int, batch: int) -> int:
    """64-bit generator seed for one batch; well mixed, so nearby (seed, epoch, batch) share no streams."""
    h = 0
    for value in (seed, epoch, batch):
        h = _splitmix64(h ^ (value & _MASK64))
    return h


def draw_masks(cfg: MaskConfig, num_rois: int, num_time_patches: int, *, seed: int, epoch: int, batch: int,
               batch_size: int) -> tuple[Tensor, Tensor]:
    """(context_idx [B, K_enc], target_idx [B, K_pred]) of batch `batch` of `epoch`; see docs/masks.md.

    Args:
        cfg: block scales and min_keep (the config's `mask` section).
        num_rois, num_time_patches: the token grid R x P (P = frames // patch_size); tokens are ROI-major.
        seed, epoch, batch: what the batch's generator is seeded from; the same triple gives the same masks.
        batch_size: samples to draw (the global batch under DDP; each rank takes its rows).

    Raises:
        ConfigError: a bad grid or position, or min_keep not met within cfg.max_tries draws.
    """
    cfg.check_grid(num_rois, num_time_patches)
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ConfigError(f"draw_masks: seed must be an integer, got {seed!r}")
    for name, value, minimum in (("epoch", epoch, 0), ("batch", batch, 0), ("batch_size", batch_size, 1)):
        check_count(f"draw_masks: {name}", value, minimum)
    generator = torch.Generator().manual_seed(batch_seed(int(seed), int(epoch), int(batch)))
    return sample_masks(generator, int(batch_size), int(num_rois), int(num_time_patches), cfg)
