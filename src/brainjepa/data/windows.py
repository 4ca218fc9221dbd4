"""Which frames of a run make one model sample: the reference's stride-3 clip, TR-aware resampling, centre
windows for evaluation, and k evenly spaced windows for embeddings.

Two ways to set the temporal stride:

* fixed (``target_tr=None``): the reference rule. A clip of ``sampling_rate * frames`` frames starts at a
  float ``start``; ``linspace(start, start + clip - 1, frames)`` (float32, as torch computes it) is clamped to
  ``[0, T-1]`` and truncated to integers. For 3 x 160 the effective stride is 479/159 ~ 3.013.
* TR-aware (``target_tr`` set and the run's TR known): the stride is exactly ``target_tr / tr`` frames, so
  the output is sampled every ``target_tr`` seconds. ``start`` is an integer frame; a fractional position is
  linearly interpolated between its two neighbouring frames (an integral stride therefore copies frames).
  No anti-alias filter is applied, as in the reference.

A run shorter than a window needs is an error naming the subject (``short="error"``), or with
``short="pad"`` the window starts at frame 0 and positions past the end repeat the last frame (edge padding
at the end; this is exactly what the reference's clamp does), logged at debug level.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from brainjepa.bounds import SCANNER_TR, bounded, check_bounds, check_value
from brainjepa.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

_SNAP = 1e-6  # positions this close to an integer are that integer (TR ratios like 2.16 / 0.72 are inexact)


@dataclass(frozen=True)
class WindowSpec:
    """How to cut a window of `frames` samples from a run.

    Args:
        frames: samples per window (model input length).
        sampling_rate: fixed stride in frames, used when `target_tr` is None (reference: 3).
        mode: "random" (training: a new start every draw) or "center" (evaluation: deterministic).
        target_tr: seconds between output samples; when set, each run is resampled by its own TR.
        short: what a run too short for the window gets: "error" (DataError) or "pad" (repeat last frame).
    """

    frames: int = bounded(160, ge=1)
    sampling_rate: int = bounded(3, ge=1)
    mode: Literal["random", "center"] = "random"
    target_tr: float | None = bounded(None, ge=SCANNER_TR[0], le=SCANNER_TR[1])  # seconds
    short: Literal["error", "pad"] = "error"

    def __post_init__(self) -> None:
        check_bounds(self, "window")
        if self.mode not in ("random", "center"):
            raise ConfigError(f"window.mode must be 'random' or 'center', got {self.mode!r}")
        if self.short not in ("error", "pad"):
            raise ConfigError(f"window.short must be 'error' or 'pad', got {self.short!r}")


@dataclass(frozen=True)
class _Layout:
    span: float  # offset of the last sample from the window start, in frames
    needed: int  # frames a run needs to hold one window without padding
    resampled: bool  # TR-aware (integer start, interpolation) instead of the reference rule


def _layout(spec: WindowSpec, tr: float | None, subject: str) -> _Layout:
    if spec.target_tr is None:
        clip = spec.sampling_rate * spec.frames
        return _Layout(span=float(clip - 1), needed=clip, resampled=False)
    if tr is None:
        raise DataError(
            f"{subject}: run has no TR, so it cannot be resampled to target_tr={spec.target_tr} s; "
            "give its TR where the run is read (tr=, --tr: embed --file, prepare) or drop target_tr "
            "(--target-tr) to use the fixed sampling_rate"
        )
    if not (math.isfinite(tr) and tr > 0):
        raise DataError(f"{subject}: run TR must be a positive number of seconds, got {tr!r}")
    span = _snap(np.float64(spec.target_tr / tr * (spec.frames - 1)))
    return _Layout(span=float(span), needed=math.ceil(span) + 1, resampled=True)


def _snap(pos: np.ndarray) -> np.ndarray:
    near = np.round(pos)
    return np.where(np.abs(pos - near) < _SNAP, near, pos)


def _max_start(num_frames: int, layout: _Layout) -> int:
    return max(num_frames - layout.needed, 0)


def _check_length(num_frames: int, spec: WindowSpec, layout: _Layout, subject: str) -> bool:
    """True if the run must be padded; raises under short="error"."""
    if num_frames >= layout.needed:
        return False
    how = f"target TR {spec.target_tr} s" if layout.resampled else f"stride {spec.sampling_rate}"
    if spec.short == "error":
        raise DataError(
            f"{subject}: run has {num_frames} frames but a {spec.frames}-frame window at {how} needs "
            f"{layout.needed}; repeat its last frame (pad=True in Python; --pad (embed, probe, finetune) or "
            "data.short_runs=pad (pretrain)), or leave this run out"
        )
    logger.debug(
        "%s: run has %d of the %d frames needed; padding the window end with the last frame",
        subject,
        num_frames,
        layout.needed,
    )
    return True


def window_positions(
    num_frames: int,
    spec: WindowSpec,
    *,
    rng: np.random.Generator | None = None,
    start: float | None = None,
    tr: float | None = None,
    subject: str = "the run",
) -> np.ndarray:
    """Frame positions (float64 [frames], within [0, T-1]) of one window of a run of `num_frames` frames.

    Integral values are frame indices; fractional ones (TR-aware mode only) are interpolated by `sample_at`.

    Args:
        num_frames: T, frames in the run.
        spec: the window description.
        rng: draws the start in mode "random" (required there).
        start: use this start instead of the mode's (float for the fixed rule, integer frame if TR-aware).
        tr: the run's TR in seconds (needed when `spec.target_tr` is set).
        subject: how error and log messages name the run, e.g. ``subject '07' run '1'`` or a file path.

    Raises:
        DataError: the run is too short under short="error", or its TR is missing/invalid.
    """
    layout = _layout(spec, tr, subject)
    if _check_length(num_frames, spec, layout, subject):
        start = 0.0
    elif start is None:
        start = _mode_start(num_frames, spec, layout, rng)
    if not layout.resampled:
        # The reference rule, with torch's float32 linspace so every index matches it exactly.
        grid = torch.linspace(float(start), float(start) + layout.span, spec.frames, dtype=torch.float32)
        return torch.clamp(grid, 0, num_frames - 1).long().numpy().astype(np.float64)
    grid = _snap(np.linspace(start, start + layout.span, spec.frames))
    return np.clip(grid, 0, num_frames - 1)


def _centre(top: int, layout: _Layout) -> float:
    return float(top // 2) if layout.resampled else top / 2


def _mode_start(num_frames: int, spec: WindowSpec, layout: _Layout, rng: np.random.Generator | None) -> float:
    top = _max_start(num_frames, layout)
    if spec.mode == "center":
        return _centre(top, layout)
    if rng is None:
        raise ConfigError("window mode 'random' needs a numpy Generator (rng)")
    return float(rng.integers(0, top + 1)) if layout.resampled else float(rng.uniform(0, top))


def window_starts(
    num_frames: int, spec: WindowSpec, k: int, *, tr: float | None = None, subject: str = "the run"
) -> np.ndarray:
    """Starts (float64 [k]) of k deterministic windows: k=1 is the centre window (as mode "center"); k>=2 are
    evenly spaced from the first possible start to the last, so together they cover the whole run."""
    check_value("number of windows", k, integer=True, ge=1)
    layout = _layout(spec, tr, subject)
    top = _max_start(num_frames, layout)
    if k == 1:
        return np.array([_centre(top, layout)], dtype=np.float64)
    starts = np.linspace(0, top, k)
    return np.floor(starts) if layout.resampled else starts


def sample_at(ts: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Take [R, len(positions)] float32 from ts [R, L] at frame positions in [0, L-1] (linear interpolation
    where a position is fractional)."""
    lo = np.floor(positions).astype(np.intp)
    frac = positions - lo
    if not frac.any():
        return np.asarray(ts[:, lo], dtype=np.float32)
    hi = np.minimum(lo + 1, ts.shape[1] - 1)
    w = frac.astype(np.float32)
    return (ts[:, lo] * (1 - w) + ts[:, hi] * w).astype(np.float32, copy=False)


def _check_ts(ts: np.ndarray, subject: str) -> np.ndarray:
    arr = np.asarray(ts)
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise DataError(
            f"{subject}: expected a [ROIs, frames] array with frames, got shape {arr.shape}"
        )
    return arr


def take_window(
    ts: np.ndarray,
    spec: WindowSpec,
    rng: np.random.Generator | None = None,
    *,
    tr: float | None = None,
    subject: str = "the run",
) -> np.ndarray:
    """One window [R, frames] float32 of a run ts [R, T] (see `window_positions` for the arguments)."""
    arr = _check_ts(ts, subject)
    return sample_at(arr, window_positions(arr.shape[1], spec, rng=rng, tr=tr, subject=subject))


def take_windows(
    ts: np.ndarray, spec: WindowSpec, k: int, *, tr: float | None = None, subject: str = "the run"
) -> np.ndarray:
    """k deterministic windows [k, R, frames] float32 of a run ts [R, T], started at `window_starts`."""
    arr = _check_ts(ts, subject)
    T = arr.shape[1]
    return np.stack(
        [
            sample_at(arr, window_positions(T, spec, start=s, tr=tr, subject=subject))
            for s in window_starts(T, spec, k, tr=tr, subject=subject)
        ]
    )
