"""`MaskCollator`: stacks fMRI samples and draws Brain-JEPA context/target masks, reproducibly per batch.

The generator of each batch is seeded from (seed, epoch, batch index), never from a global RNG or a
counter shared between processes, so masks do not depend on worker timing or on `num_workers`.
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import default_collate, get_worker_info

from brainjepa.errors import ConfigError, DataError
from brainjepa.masks.sampling import MaskScales, sample_masks

logger = logging.getLogger(__name__)

DATA_KEYS = ("x", "fmri")
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


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_scale(name: str, value: Any) -> tuple[float, float]:
    ok = (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
        and 0.0 <= value[0] <= value[1] <= 1.0
    )
    if not ok:
        raise ConfigError(f"mask.{name} must be two numbers with 0 <= low <= high <= 1, got {value!r}")
    return float(value[0]), float(value[1])


def _check_int(label: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{label} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class MaskCollator:
    """DataLoader `collate_fn` for Brain-JEPA pretraining: one context and one target mask per sample.

    The keyword arguments are the reference yaml `mask:` keys with the reference defaults
    (configs/ukb_vitb_ep300.yaml); see docs/masks.md for the algorithm.

    Args:
        input_size: (R, T): ROIs and frames of every sample.
        seed: base seed; use a different one per distributed rank.
        patch_size: frames per token; must divide T. The grid has P = T // patch_size time patches.
        enc_mask_scale, pred_mask_R_scale, pred_mask_T_scale, pred_mask_T_roi_scale, pred_mask_R_roi_scale:
            (low, high) block fractions, see `MaskScales`.
        min_keep: fewest tokens a context or target may have; such samples are redrawn.
        allow_overlap: accepted for config compatibility and ignored (as in the reference): context and
            targets never overlap.
        max_tries: draws per sample before `min_keep` failure raises.

    Raises:
        ConfigError: a value is out of range, or patch_size does not divide T.
    """

    def __init__(
        self,
        input_size: Sequence[int] = (450, 160),
        *,
        seed: int = 0,
        patch_size: int = 16,
        enc_mask_scale: Sequence[float] = (0.84, 1.0),
        pred_mask_R_scale: Sequence[float] = (0.45, 0.6),
        pred_mask_T_scale: Sequence[float] = (0.0, 0.4),
        pred_mask_T_roi_scale: Sequence[float] = (0.2, 0.6),
        pred_mask_R_roi_scale: Sequence[float] = (0.15, 0.3),
        min_keep: int = 4,
        allow_overlap: bool = False,
        max_tries: int = 20,
    ) -> None:
        sizes_ok = isinstance(input_size, Sequence) and len(input_size) == 2
        if not (sizes_ok and all(_is_int(v) and v >= 1 for v in input_size)):
            raise ConfigError(f"mask collator input_size must be two positive integers (R, T), got {input_size!r}")
        if not _is_int(seed):
            raise ConfigError(f"mask collator seed must be an integer, got {seed!r}")
        self.num_rois, self.num_frames = int(input_size[0]), int(input_size[1])
        self.patch_size = _check_int("mask.patch_size", patch_size, 1)
        if self.num_frames % self.patch_size:
            raise ConfigError(
                f"mask.patch_size={self.patch_size} does not divide the {self.num_frames} frames of "
                f"input_size {tuple(input_size)}"
            )
        self.num_time_patches = self.num_frames // self.patch_size
        if self.num_time_patches < 2:
            raise ConfigError(
                f"mask collator needs at least 2 time patches (the last is never in context), got "
                f"{self.num_frames} frames / patch_size {self.patch_size}"
            )
        self.scales = MaskScales(
            enc_mask_scale=_check_scale("enc_mask_scale", enc_mask_scale),
            pred_mask_R_scale=_check_scale("pred_mask_R_scale", pred_mask_R_scale),
            pred_mask_T_roi_scale=_check_scale("pred_mask_T_roi_scale", pred_mask_T_roi_scale),
            pred_mask_R_roi_scale=_check_scale("pred_mask_R_roi_scale", pred_mask_R_roi_scale),
            pred_mask_T_scale=_check_scale("pred_mask_T_scale", pred_mask_T_scale),
        )
        self.min_keep = _check_int("mask.min_keep", min_keep, 1)
        if self.min_keep > self.num_tokens:
            raise ConfigError(f"mask.min_keep={self.min_keep} exceeds the {self.num_tokens} tokens of the grid")
        self.max_tries = _check_int("mask collator max_tries", max_tries, 1)
        if not isinstance(allow_overlap, bool):
            raise ConfigError(f"mask.allow_overlap must be true or false, got {allow_overlap!r}")
        if allow_overlap:
            logger.warning("mask.allow_overlap=true is ignored: context and targets never overlap")
        self.seed = int(seed)
        self._epoch = 0
        self._next_batch = 0  # index of the next batch collated in the main process
        self._worker_calls = 0  # batches collated by this copy inside a DataLoader worker

    @property
    def num_tokens(self) -> int:
        return self.num_rois * self.num_time_patches

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Start numbering batches of `epoch` at `start_batch` (call before iterating each epoch).

        With num_workers > 0 this reaches the workers only if they are (re)created after the call, as with
        the default `persistent_workers=False`.
        """
        self._epoch = _check_int("mask collator epoch", epoch, 0)
        self._next_batch = _check_int("mask collator start_batch", start_batch, 0)
        self._worker_calls = 0

    def state_dict(self) -> dict[str, int]:
        """{seed, epoch, batch}: batch is the next index this process would collate (num_workers=0)."""
        return {"seed": self.seed, "epoch": self._epoch, "batch": self._next_batch}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Resume the mask sequence saved by `state_dict` (or written by a trainer that counts batches)."""
        if set(state) != {"seed", "epoch", "batch"}:
            raise ConfigError(f"mask collator state must have keys seed, epoch, batch; got {sorted(state)}")
        if state["seed"] != self.seed:
            raise ConfigError(f"mask collator state was saved with seed {state['seed']}, this one has {self.seed}")
        self.set_epoch(state["epoch"], state["batch"])

    def masks_for(self, batch_size: int, *, epoch: int, batch: int) -> tuple[Tensor, Tensor]:
        """(context_idx [B, K_enc], target_idx [B, K_pred]) that batch `batch` of `epoch` gets."""
        _check_int("mask collator batch_size", batch_size, 1)
        generator = torch.Generator().manual_seed(batch_seed(self.seed, epoch, batch))
        return sample_masks(
            generator,
            batch_size,
            self.num_rois,
            self.num_time_patches,
            self.scales,
            min_keep=self.min_keep,
            max_tries=self.max_tries,
        )

    def _batch_index(self) -> int:
        # DataLoader hands batch i to worker i % num_workers, in order, so worker w's k-th batch is k*n + w.
        info = get_worker_info()
        if info is None:
            index = self._next_batch
            self._next_batch += 1
        else:
            index = self._next_batch + self._worker_calls * info.num_workers + info.id
            self._worker_calls += 1
        return index

    def __call__(self, batch: Sequence[Any]) -> tuple[Tensor | dict[str, Any], Tensor, Tensor]:
        """Collate B samples ([R, T] / [1, R, T] tensors, or dicts holding one under 'x' or 'fmri').

        Returns:
            (x, context_idx, target_idx): x stacked [B, R, T] (or the collated dict with it under the same
            key), context_idx LongTensor [B, K_enc], target_idx LongTensor [B, K_pred].

        Raises:
            DataError: empty batch, wrong sample type or shape, missing data key.
        """
        data = collate_samples(batch, (self.num_rois, self.num_frames))
        context_idx, target_idx = self.masks_for(len(batch), epoch=self._epoch, batch=self._batch_index())
        return data, context_idx, target_idx


def _stack(samples: Sequence[Any], size: tuple[int, int], where: str) -> Tensor:
    rows = []
    for i, sample in enumerate(samples):
        if not isinstance(sample, Tensor):
            raise DataError(f"sample {i}{where} is a {type(sample).__name__}; expected a tensor [R, T]")
        if sample.dim() == 3 and sample.shape[0] == 1:
            sample = sample[0]
        if tuple(sample.shape) != size:
            raise DataError(
                f"sample {i}{where} has shape {list(sample.shape)}; expected [{size[0]}, {size[1]}] or "
                f"[1, {size[0]}, {size[1]}] (mask collator input_size)"
            )
        rows.append(sample)
    x = torch.stack(rows)
    return x if x.is_floating_point() else x.float()


def collate_samples(batch: Sequence[Any], size: tuple[int, int]) -> Tensor | dict[str, Any]:
    """Stack [R, T] / [1, R, T] tensors into [B, R, T]; for dict samples, collate every key likewise.

    Raises:
        DataError: empty batch, mixed or wrong sample types, missing 'x'/'fmri' key, wrong shape.
    """
    if len(batch) == 0:
        raise DataError("mask collator got an empty batch")
    if not isinstance(batch[0], Mapping):
        return _stack(batch, size, "")
    keys = set(batch[0])
    key = next((k for k in DATA_KEYS if k in keys), None)
    if key is None:
        raise DataError(f"sample 0 has no 'x' or 'fmri' key (keys: {sorted(keys)})")
    for i, sample in enumerate(batch):
        if not isinstance(sample, Mapping) or set(sample) != keys:
            got = sorted(sample) if isinstance(sample, Mapping) else type(sample).__name__
            raise DataError(f"sample {i} does not match sample 0: expected a dict with keys {sorted(keys)}, got {got}")
    x = _stack([sample[key] for sample in batch], size, f" ['{key}']")
    return {k: x if k == key else default_collate([sample[k] for sample in batch]) for k in batch[0]}
