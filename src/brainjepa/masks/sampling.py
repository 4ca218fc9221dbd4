"""Vectorised Brain-JEPA spatiotemporal mask sampling on an [R, P] token grid.

Tokens are numbered ROI-major (token = roi * P + time_patch), as the patch embedding flattens them.
Every sample of a batch is drawn at once with tensor ops so that a batch costs a few milliseconds
in DataLoader workers; all randomness comes from the generator passed in.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from brainjepa.errors import ConfigError
from brainjepa.masks.config import MaskConfig, Scale


class _Sizes(NamedTuple):
    """Per-sample block sizes, each a LongTensor [n]."""

    obs_rois: Tensor
    obs_width: Tensor
    alpha_rois: Tensor
    alpha_width: Tensor


class _Grids(NamedTuple):
    """Per-sample token grids of n samples; the three targets are disjoint.

    context and alpha are BoolTensor [n, R, P]; right and left [n, R, E] cover only the E edge patches.
    """

    context: Tensor
    alpha: Tensor
    right: Tensor
    left: Tensor


def side_edge_width(num_patches: int, side_time_high: float) -> int:
    """Time patches at each edge that side targets may use.

    The reference hard-codes patches {0, 1, 2} and {7, 8, 9} for P = 10: three, the widest side block
    `int(10 * U[0, 0.4))` can produce. Generically: that widest width, at most P // 2 so the sides never meet.
    """
    widest = math.ceil(round(num_patches * side_time_high, 9)) - 1
    return max(0, min(num_patches // 2, widest))


def _fraction(g: torch.Generator, n: int, scale: Scale) -> Tensor:
    low, high = scale
    return low + torch.rand(n, generator=g, dtype=torch.float64) * (high - low)


def _count(g: torch.Generator, n: int, scale: Scale, length: int) -> Tensor:
    """`int(length * U[low, high))` per sample, as the reference sizes its blocks."""
    return (_fraction(g, n, scale) * length).long()


def _below(g: torch.Generator, high: Tensor) -> Tensor:
    """Uniform integer in [0, high) per sample (0 where high is 0)."""
    return (torch.rand(high.shape[0], generator=g, dtype=torch.float64) * high).long()


def _span(start: Tensor, width: Tensor, length: int) -> Tensor:
    """Bool [n, length], true on [start, start + width)."""
    t = torch.arange(length)
    return (t >= start[:, None]) & (t < (start + width)[:, None])


def _mark_largest(keys: Tensor, counts: Tensor) -> Tensor:
    """Bool [n, L], true at the counts[i] largest keys of row i (topk: cheaper than a full sort)."""
    m = int(counts.max())
    order = keys.topk(m, dim=1, sorted=bool(counts.min() < m)).indices
    marks = torch.arange(m) < counts[:, None]
    return torch.zeros(keys.shape, dtype=torch.bool).scatter_(1, order, marks)


def _random_subset(g: torch.Generator, sizes: Tensor, length: int) -> Tensor:
    """Bool [n, length] with exactly sizes[i] true entries at uniformly random places in row i."""
    keys = torch.rand(sizes.shape[0], length, generator=g)
    if int(sizes.max()) <= length - int(sizes.min()):
        return _mark_largest(keys, sizes)
    return ~_mark_largest(keys, length - sizes)  # large subsets: pick the entries left out instead


def _block_sizes(g: torch.Generator, n: int, num_rois: int, num_patches: int, cfg: MaskConfig) -> _Sizes:
    """Observation and alpha sizes; clamped so the reference's start ranges stay non-empty.

    The observation starts in [0, P - width), so it spans at most P - 1 patches (the last patch is never
    observed); the alpha block starts in [0, obs_width - width) inside it, so it is narrower than it.
    """
    alpha_rois = _count(g, n, cfg.pred_mask_R_scale, num_rois).clamp(max=num_rois)
    alpha_width = _count(g, n, cfg.pred_mask_T_roi_scale, num_patches)
    obs_rois = _count(g, n, cfg.enc_mask_scale, num_rois).clamp(max=num_rois)
    obs_width = _count(g, n, cfg.enc_mask_scale, num_patches).clamp(max=num_patches - 1)
    alpha_width = torch.minimum(alpha_width, (obs_width - 1).clamp(min=0))
    return _Sizes(obs_rois, obs_width, alpha_rois, alpha_width)


def _side_rows(g: torch.Generator, pool_in: Tensor, scale: Scale) -> Tensor:
    """ROIs of one side target: the same fraction f of both pools (observed alpha ROIs / all others)."""
    n, num_rois = pool_in.shape
    f = _fraction(g, n, scale)
    n_in = pool_in.sum(1)
    keys = torch.rand(n, num_rois, generator=g)  # the pools are disjoint, so one draw serves both
    rows_in = _mark_largest(keys.masked_fill(~pool_in, -1.0), (n_in * f).long())
    rows_out = _mark_largest(keys.masked_fill(pool_in, -1.0), ((num_rois - n_in) * f).long())
    return rows_in | rows_out


def _side_columns(g: torch.Generator, n: int, num_patches: int, edge: int, scale: Scale) -> Tensor:
    """w distinct patches among the `edge` patches at one end of the time axis; Bool [n, edge]."""
    width = _count(g, n, scale, num_patches).clamp(max=edge)
    return _random_subset(g, width, edge)


def _draw(g: torch.Generator, sizes: _Sizes, num_rois: int, num_patches: int, cfg: MaskConfig) -> _Grids:
    n = sizes.obs_rois.shape[0]
    edge = side_edge_width(num_patches, cfg.pred_mask_T_scale[1])
    # Observation block: random ROIs (not contiguous) x a contiguous time span.
    obs_rows = _random_subset(g, sizes.obs_rois, num_rois)
    obs_start = _below(g, num_patches - sizes.obs_width)
    obs_cols = _span(obs_start, sizes.obs_width, num_patches)
    # Cross-ROI (alpha) target: other random ROIs over a time span inside the observation's.
    alpha_rows = _random_subset(g, sizes.alpha_rois, num_rois)
    alpha_start = obs_start + _below(g, sizes.obs_width - sizes.alpha_width)
    alpha = alpha_rows[:, :, None] & _span(alpha_start, sizes.alpha_width, num_patches)[:, None, :]
    # Side targets at the time edges, right then left as in the reference: Cross-Time rows from the
    # context ROIs and Double-Cross rows from the observed alpha ROIs, in the same proportion.
    pool_in = obs_rows & alpha_rows
    context_cols = obs_cols.clone()
    sides = []
    for region in (slice(num_patches - edge, num_patches), slice(0, edge)):
        rows = _side_rows(g, pool_in, cfg.pred_mask_R_roi_scale)
        cols = _side_columns(g, n, num_patches, edge, cfg.pred_mask_T_scale)
        context_cols[:, region] &= ~cols  # the context loses side columns at every ROI
        # Side tokens already in the alpha target are dropped (the reference keeps them twice).
        sides.append(rows[:, :, None] & cols[:, None, :] & ~alpha[:, :, region])
    # Context: the observation minus every alpha ROI (all times) and every side column.
    context = (obs_rows & ~alpha_rows)[:, :, None] & context_cols[:, None, :]
    return _Grids(context, alpha, *sides)


def _counts(grids: _Grids) -> tuple[Tensor, Tensor]:
    n_context = grids.context.flatten(1).sum(1, dtype=torch.int32)
    n_target = sum(grid.flatten(1).sum(1, dtype=torch.int32) for grid in grids[1:])
    return n_context, n_target


def _first_k(mask: Tensor, k: int, values: Tensor) -> Tensor:
    """values [M] at the first k true entries of each row of mask [n, M] (each row has >= k); Long [n, k]."""
    keep = mask & (mask.cumsum(dim=1, dtype=torch.int32) <= k)
    return values[keep.nonzero()[:, 1]].view(mask.shape[0], k)


def _token_ids(num_rois: int, num_patches: int, edge: int) -> Tensor:
    """Token index of every cell of the flattened target grids: alpha [R, P], right and left [R, E]."""
    rois = torch.arange(num_rois)[:, None] * num_patches
    edge_patches = torch.arange(edge)
    right = rois + (num_patches - edge) + edge_patches
    left = rois + edge_patches
    return torch.cat([torch.arange(num_rois * num_patches), right.flatten(), left.flatten()])


def sample_masks(
    generator: torch.Generator,
    batch_size: int,
    num_rois: int,
    num_patches: int,
    cfg: MaskConfig,
) -> tuple[Tensor, Tensor]:
    """Draw one context and one target index set per sample, truncated to the batch minimum.

    Observation and alpha sizes are shared by the batch (as in the reference); a sample whose context or
    target has fewer than `cfg.min_keep` tokens is redrawn with its own sizes, at most `cfg.max_tries` times in all.

    Returns:
        context_idx [B, K_enc] (sorted) and target_idx [B, K_pred] (alpha, then right, then left side
        target, each sorted), LongTensors of ROI-major token indices with no duplicates or shared tokens.

    Raises:
        ConfigError: min_keep could not be met within max_tries draws.
    """
    min_keep, max_tries = cfg.min_keep, cfg.max_tries
    shared = _block_sizes(generator, 1, num_rois, num_patches, cfg)
    sizes = _Sizes(*(s.expand(batch_size) for s in shared))
    grids = _draw(generator, sizes, num_rois, num_patches, cfg)
    n_context, n_target = _counts(grids)
    for attempt in range(1, max_tries + 1):
        redo = ((n_context < min_keep) | (n_target < min_keep)).nonzero().squeeze(1)
        if redo.numel() == 0:
            break
        if attempt == max_tries:
            raise ConfigError(
                f"mask: could not draw a context and a target of at least mask.min_keep={min_keep} tokens "
                f"on a {num_rois} x {num_patches} token grid in {max_tries} tries (smallest context "
                f"{int(n_context.min())}, target {int(n_target.min())} tokens); lower mask.min_keep or "
                "widen the mask scales"
            )
        fresh_sizes = _block_sizes(generator, redo.numel(), num_rois, num_patches, cfg)
        fresh = _draw(generator, fresh_sizes, num_rois, num_patches, cfg)
        for whole, part in zip(grids, fresh, strict=True):
            whole[redo] = part
        n_context[redo], n_target[redo] = _counts(fresh)
    tokens = torch.arange(num_rois * num_patches)
    context_idx = _first_k(grids.context.reshape(batch_size, -1), int(n_context.min()), tokens)
    targets = torch.cat([grid.reshape(batch_size, -1) for grid in grids[1:]], dim=1)
    target_tokens = _token_ids(num_rois, num_patches, grids.right.shape[2])
    target_idx = _first_k(targets, int(n_target.min()), target_tokens)
    return context_idx, target_idx
