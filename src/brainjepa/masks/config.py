"""`MaskConfig`: the reference yaml `mask:` keys that size Brain-JEPA's context and target blocks.

It is the `mask` section of the pretraining config and what `draw_masks` takes; its defaults are the reference's
(configs/ukb_vitb_ep300.yaml), declared here only. The grid (ROIs x time patches) is not part of it: it comes
from the model (data crop and patch size).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

from brainjepa.bounds import bounded, check_bounds
from brainjepa.errors import ConfigError

Scale = tuple[float, float]
SCALE_KEYS = ("enc_mask_scale", "pred_mask_R_scale", "pred_mask_T_roi_scale", "pred_mask_R_roi_scale",
              "pred_mask_T_scale")


@dataclass(frozen=True)
class MaskConfig:
    """Block-size ranges (fractions of the grid, `(low, high)`) and the redraw limits.

    enc_mask_scale: ROI and time fraction of the observation block.
    pred_mask_R_scale / pred_mask_T_roi_scale: ROI / time fraction of the Cross-ROI (alpha) target.
    pred_mask_R_roi_scale / pred_mask_T_scale: ROI / time fraction of each side (left, right) target.
    min_keep: fewest tokens a context or target may have; such samples are redrawn.
    max_tries: draws per sample before a `min_keep` failure raises (a brainjepa addition).

    Raises:
        ConfigError: naming `mask.<key>` for a scale outside 0 <= low <= high <= 1 or a bad count.
    """

    enc_mask_scale: Scale = bounded((0.84, 1.0), ge=0, le=1, pair=True)
    pred_mask_R_scale: Scale = bounded((0.45, 0.6), ge=0, le=1, pair=True)
    pred_mask_T_roi_scale: Scale = bounded((0.2, 0.6), ge=0, le=1, pair=True)
    pred_mask_R_roi_scale: Scale = bounded((0.15, 0.3), ge=0, le=1, pair=True)
    pred_mask_T_scale: Scale = bounded((0.0, 0.4), ge=0, le=1, pair=True)
    min_keep: int = bounded(4, ge=1)
    max_tries: int = bounded(20, ge=1)

    def __post_init__(self) -> None:
        check_bounds(self, "mask")
        for name in SCALE_KEYS:  # YAML gives lists: store tuples, so the config stays immutable
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))

    def check_grid(self, num_rois: int, num_time_patches: int) -> None:
        """Raise ConfigError unless masks can be drawn on a `num_rois` x `num_time_patches` token grid."""
        check_count("mask grid num_rois", num_rois, 1)
        # the observation never covers the last time patch, so one patch leaves no context
        check_count("mask grid num_time_patches (frames / patch_size)", num_time_patches, 2)
        if self.min_keep > num_rois * num_time_patches:
            raise ConfigError(f"mask.min_keep={self.min_keep} exceeds the {num_rois * num_time_patches} tokens "
                              f"of the {num_rois} x {num_time_patches} grid")


def check_count(label: str, value: Any, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{label} must be an integer >= {minimum}, got {value!r}")
