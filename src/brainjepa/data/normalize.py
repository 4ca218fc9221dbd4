"""Amplitude normalisation of one [R, T] sample: the reference's robust scaling, z-scores, or nothing.

Every normaliser maps a float array [R, T] to float32 [R, T] and describes itself with `to_dict()`, so the
choice (and, for robust scaling, the fitted statistics) can be stored in the store's metadata and in a model
config, and rebuilt exactly with `normalizer_from_dict` (`brainjepa.data.prepare.save_robust_stats` fits the
statistics and keeps them with the store).
"""

from __future__ import annotations

import copy
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import numpy as np

from brainjepa.data.store import RunStore, open_runs
from brainjepa.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

NormalizationKind = Literal["robust", "sample_zscore", "roi_zscore", "none"]
NORMALIZATION_KINDS: tuple[str, ...] = get_args(NormalizationKind)  # the one list of kinds (config, CLI, checks)

_FIT_CHUNK_FRAMES = 4096  # frames read at a time while fitting: memory stays flat for any run length


def _roi_name(i: int, roi_labels: Sequence[str] | None) -> str:
    return f"ROI {i} ({roi_labels[i]})" if roi_labels is not None else f"ROI {i}"


def _check_sample(x: np.ndarray, num_rois: int | None = None) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise DataError(f"expected a [ROIs, frames] array, got shape {arr.shape}")
    if num_rois is not None and arr.shape[0] != num_rois:
        raise DataError(f"sample has {arr.shape[0]} ROIs but the normaliser was fitted on {num_rois}")
    return arr


class Normalizer(ABC):
    """Maps one sample [R, T] to float32 [R, T]; `to_dict()` records it, `normalizer_from_dict` rebuilds it.

    Every kind ends with a multiplication by `gain` (default 1): the input scale the encoder sees. Pretraining's
    `data.input_gain: auto` sets it so that the patch embedding and the positional code have equal token norms
    (`brainjepa.models.health.calibrate_gain`); the record carries it, so embedding uses the same scale.
    """

    kind: ClassVar[str]
    num_rois: int | None = None  # ROI count the normaliser is tied to (None: works for any R)
    gain: float = 1.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = self._apply(x)
        return out if self.gain == 1.0 else (out * np.float32(self.gain)).astype(np.float32, copy=False)

    @abstractmethod
    def _apply(self, x: np.ndarray) -> np.ndarray: ...

    def with_gain(self, gain: float) -> Normalizer:
        """A copy of this normaliser whose output is multiplied by `gain` (finite, > 0)."""
        gain = float(gain)
        if not (math.isfinite(gain) and gain > 0):
            raise ConfigError(f"input gain must be a finite number > 0, got {gain!r}")
        out = copy.copy(self)
        out.gain = gain
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **self._fields(), **({"gain": self.gain} if self.gain != 1.0 else {})}

    def _fields(self) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        gain = f"gain={self.gain:g}" if self.gain != 1.0 else ""
        return f"{type(self).__name__}({gain})"


class Identity(Normalizer):
    """No normalisation (the data are only cast to float32)."""

    kind = "none"

    def _apply(self, x: np.ndarray) -> np.ndarray:
        return _check_sample(x).astype(np.float32, copy=False)


class _ZScore(Normalizer):
    """Shared z-score: subtract the mean and divide by the sample std (ddof=1) over `axis`.

    ddof=1 matches the reference's `torch.Tensor.std()`. With `eps == 0` a zero std raises a DataError naming
    what is constant; with `eps > 0` the divisor is `std + eps`, so constant signals come out as zeros.
    """

    axis: ClassVar[int | None]

    def __init__(self, eps: float = 0.0):
        if not (np.isfinite(eps) and eps >= 0):
            raise ConfigError(f"normalization eps must be a finite number >= 0, got {eps!r}")
        self.eps = float(eps)

    def _apply(self, x: np.ndarray) -> np.ndarray:
        arr = _check_sample(x).astype(np.float64)
        if (arr.size if self.axis is None else arr.shape[1]) < 2:
            raise DataError(f"{self.kind}: needs at least 2 values to estimate a std, got shape {arr.shape}")
        keep = self.axis is not None
        mean = arr.mean(axis=self.axis, keepdims=keep)
        std = arr.std(axis=self.axis, ddof=1, keepdims=keep)
        if self.eps == 0.0:
            self._check_std(np.atleast_1d(std).ravel())
        return ((arr - mean) / (std + self.eps)).astype(np.float32)

    @abstractmethod
    def _check_std(self, std: np.ndarray) -> None: ...

    def _fields(self) -> dict[str, Any]:
        return {"eps": self.eps}

    def __repr__(self) -> str:
        gain = f", gain={self.gain:g}" if self.gain != 1.0 else ""
        return f"{type(self).__name__}(eps={self.eps}{gain})"


class SampleZScore(_ZScore):
    """Z-score over the whole [R, T] sample (the reference's `use_standatdization=True`)."""

    kind = "sample_zscore"
    axis = None

    def _check_std(self, std: np.ndarray) -> None:
        if std[0] == 0:
            raise DataError("sample_zscore: the window is constant (std 0) and cannot be z-scored; check the run "
                            "(brainjepa validate), or in Python give the normaliser eps > 0 to map it to zeros")


class RoiZScore(_ZScore):
    """Z-score of each ROI over time (each row gets mean 0, std 1)."""

    kind = "roi_zscore"
    axis = 1

    def _check_std(self, std: np.ndarray) -> None:
        flat = np.flatnonzero(std == 0)
        if flat.size:
            names = ", ".join(_roi_name(int(i), None) for i in flat[:5])
            more = f" and {flat.size - 5} more" if flat.size > 5 else ""
            raise DataError(
                f"roi_zscore: constant over time (std 0): {names}{more}; such a ROI cannot be z-scored: check the "
                "run (brainjepa validate), or in Python give the normaliser eps > 0 to map it to zeros"
            )


class RobustScaler(Normalizer):
    """The reference's robust scaling: `x = (x - median[roi]) / iqr[roi]`.

    median and IQR (75th minus 25th percentile, linear interpolation) are taken per ROI across training
    subjects of each subject's ROI temporal mean. They remove ROI-specific offsets and divide by the
    between-subject spread of those offsets; within-subject temporal variance is left as it is.

    Args:
        median: [R] per-ROI median of subject means.
        iqr: [R] per-ROI interquartile range of subject means; every entry must be > 0.
        roi_labels: ROI names used in error messages (optional).
        num_subjects: subjects the statistics came from (recorded, informative only).
        num_runs: runs the statistics came from (recorded, informative only).
    """

    kind = "robust"

    def __init__(
        self,
        median: np.ndarray | Sequence[float],
        iqr: np.ndarray | Sequence[float],
        *,
        roi_labels: Sequence[str] | None = None,
        num_subjects: int | None = None,
        num_runs: int | None = None,
    ):
        med = np.asarray(median, dtype=np.float64)
        spread = np.asarray(iqr, dtype=np.float64)
        if med.ndim != 1 or med.shape != spread.shape:
            raise DataError(
                f"robust scaling: median {med.shape} and iqr {spread.shape} must be equal 1-D shapes"
            )
        if roi_labels is not None and len(roi_labels) != med.size:
            raise DataError(f"robust scaling: {len(roi_labels)} ROI labels for {med.size} ROIs")
        for name, values in (("median", med), ("iqr", spread)):
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise DataError(
                    f"robust scaling: {name} of {_roi_name(int(bad[0]), roi_labels)} is not finite"
                )
        zero = np.flatnonzero(spread <= 0)
        if zero.size:
            more = f" (and {zero.size - 1} more ROIs)" if zero.size > 1 else ""
            raise DataError(
                f"robust scaling: IQR of {_roi_name(int(zero[0]), roi_labels)} across subjects is "
                f"{spread[zero[0]]:g}{more}; its subject means do not vary (too few subjects, or an empty ROI), "
                "so scaling would divide by zero. Use more training subjects or another normalization"
            )
        self.median = med
        self.iqr = spread
        self.roi_labels = None if roi_labels is None else list(roi_labels)
        self.num_subjects = num_subjects
        self.num_runs = num_runs
        self.num_rois = med.size

    @classmethod
    def fit(
        cls,
        store: RunStore | str | Path,
        indices: Sequence[int] | np.ndarray | None = None,
        *,
        progress: bool = True,
    ) -> RobustScaler:
        """Fit on the runs `indices` (None: all) of a store; one temporal mean per subject.

        A subject with several runs contributes the average of its runs' temporal means (each run weighs the
        same). Runs are read in chunks of at most 4096 frames and summed in float64, so memory does not grow
        with run length; only the [subjects, R] matrix of means is held.

        Raises:
            DataError: no runs selected, or a ROI whose IQR across subjects is 0 (named in the message).
        """
        from tqdm.auto import tqdm

        store, idx = open_runs(store, indices)
        if idx.size == 0:
            raise DataError(f"{store.path}: no runs selected to fit robust scaling")
        subjects = store.manifest["subject"].astype(str).to_numpy()
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for i in tqdm(idx.tolist(), desc="robust scaling stats", disable=not progress, leave=False):
            n = store.frames(i)
            total = np.zeros(store.num_rois, dtype=np.float64)
            for start in range(0, n, _FIT_CHUNK_FRAMES):
                chunk = store.window(i, start, min(_FIT_CHUNK_FRAMES, n - start))
                total += chunk.sum(axis=1, dtype=np.float64)
            subject = subjects[i]
            sums[subject] = sums.get(subject, 0.0) + total / n
            counts[subject] = counts.get(subject, 0) + 1
        means = np.stack([sums[s] / counts[s] for s in sums])
        q25, med, q75 = np.percentile(means, [25, 50, 75], axis=0)
        logger.debug(
            "robust scaling fitted on %d runs of %d subjects from %s", idx.size, len(sums), store.path
        )
        return cls(
            med, q75 - q25, roi_labels=store.roi_labels, num_subjects=len(sums), num_runs=int(idx.size)
        )

    def _apply(self, x: np.ndarray) -> np.ndarray:
        arr = _check_sample(x, self.num_rois)
        # float64 arithmetic: raw fMRI offsets can be ~1e4, where float32 subtraction would lose digits.
        return ((arr - self.median[:, None]) / self.iqr[:, None]).astype(np.float32)

    def _fields(self) -> dict[str, Any]:
        return {
            "median": self.median.tolist(),
            "iqr": self.iqr.tolist(),
            "num_subjects": self.num_subjects,
            "num_runs": self.num_runs,
        }

    def __repr__(self) -> str:
        gain = f", gain={self.gain:g}" if self.gain != 1.0 else ""
        return f"RobustScaler(num_rois={self.num_rois}, num_subjects={self.num_subjects}{gain})"


_KINDS: dict[str, type[Normalizer]] = {
    cls.kind: cls for cls in (RobustScaler, SampleZScore, RoiZScore, Identity)
}


def make_normalizer(
    kind: NormalizationKind,
    *,
    store: RunStore | str | Path | None = None,
    indices: Sequence[int] | np.ndarray | None = None,
    eps: float = 0.0,
    progress: bool = True,
) -> Normalizer:
    """Build a normaliser by name.

    Args:
        kind: "robust", "sample_zscore", "roi_zscore" or "none".
        store: for "robust", the store to fit on (required for it, ignored otherwise).
        indices: for "robust", the training runs to fit on (None: all runs).
        eps: for the z-scores, added to the std (0: a constant signal raises a DataError).
        progress: show a progress bar while fitting robust statistics.

    To reuse statistics saved earlier, call `normalizer_from_dict(store.metadata["normalization"])`.
    """
    if kind == "robust":
        if store is None:
            raise ConfigError("normalization 'robust' needs a store to fit on (or use normalizer_from_dict)")
        return RobustScaler.fit(store, indices, progress=progress)
    if kind == "sample_zscore":
        return SampleZScore(eps)
    if kind == "roi_zscore":
        return RoiZScore(eps)
    if kind == "none":
        return Identity()
    raise ConfigError(f"unknown normalization {kind!r}; choose one of {sorted(_KINDS)}")


def normalizer_from_dict(d: Mapping[str, Any]) -> Normalizer:
    """Rebuild a normaliser from `Normalizer.to_dict()` (store metadata, model config)."""
    if not isinstance(d, Mapping) or "kind" not in d:
        raise ConfigError(f"normalization record must be a mapping with a 'kind' key, got {d!r:.80}")
    kind = d["kind"]
    fields = {k: v for k, v in d.items() if k not in ("kind", "gain")}
    if kind == "robust":
        missing = {"median", "iqr"} - fields.keys()
        if missing:
            raise ConfigError(f"normalization record of kind 'robust' lacks {sorted(missing)}")
        allowed = {"median", "iqr", "num_subjects", "num_runs"}
    elif kind in ("sample_zscore", "roi_zscore"):
        allowed = {"eps"}
    elif kind == "none":
        allowed = set()
    else:
        raise ConfigError(f"unknown normalization {kind!r}; choose one of {sorted(_KINDS)}")
    unknown = fields.keys() - allowed
    if unknown:
        raise ConfigError(f"normalization record of kind {kind!r} has unknown keys {sorted(unknown)}")
    normalizer = _KINDS[kind](**fields)
    gain = d.get("gain", 1.0)
    if isinstance(gain, bool) or not isinstance(gain, int | float):
        raise ConfigError(f"normalization record: gain must be a number, got {gain!r}")
    return normalizer.with_gain(gain) if gain != 1.0 else normalizer

