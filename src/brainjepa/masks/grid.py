"""Turn one sample's index masks back into an [R, P] grid, e.g. for `imshow` plots."""

from __future__ import annotations

import torch
from torch import Tensor

from brainjepa.errors import ConfigError

NONE, CONTEXT, TARGET = 0, 1, 2


def mask_grid(context_idx: Tensor, target_idx: Tensor, num_rois: int, num_time_patches: int) -> Tensor:
    """Grid [R, P] (LongTensor) with 0 = neither, 1 = context, 2 = target for one sample.

    Args:
        context_idx, target_idx: 1-D ROI-major token indices of one sample, e.g. `context_idx[0]`.
        num_rois, num_time_patches: the grid the indices refer to (R, P).

    Raises:
        ConfigError: an index tensor is not 1-D or holds values outside [0, R * P).
    """
    num_tokens = num_rois * num_time_patches
    grid = torch.full((num_tokens,), NONE, dtype=torch.long)
    for name, idx, value in (("context_idx", context_idx, CONTEXT), ("target_idx", target_idx, TARGET)):
        if idx.dim() != 1:
            raise ConfigError(f"mask_grid: {name} must be 1-D (one sample), got shape {list(idx.shape)}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_tokens):
            raise ConfigError(
                f"mask_grid: {name} has values outside [0, {num_tokens}) for a {num_rois} x {num_time_patches} grid"
            )
        grid[idx] = value
    return grid.view(num_rois, num_time_patches)
