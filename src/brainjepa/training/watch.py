"""What a pretraining run is checked on besides its training loss: held-out subjects and encoder health.

`data.holdout` of the subjects are kept out of training; their centre windows, with masks fixed once, give the
held-out JEPA loss, so learning can be told from memorising the training runs. A fixed set of training windows
gives the encoder-health diagnostics (`brainjepa.models.health`): whether the blocks change the residual stream
and how much of the feature variance is content rather than position. Both are measured before the first step
and every `logging.eval_every` steps, into metrics.csv; `data.input_gain: auto` is calibrated on the same windows.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import torch
from torch import Tensor

from brainjepa.config import TrainConfig
from brainjepa.data.dataset import StoreDataset, split_by_subject
from brainjepa.data.normalize import Normalizer
from brainjepa.data.store import RunStore
from brainjepa.errors import ConfigError
from brainjepa.masks import draw_masks
from brainjepa.models import BrainJEPA
from brainjepa.models.health import Health, calibrate_gain, encoder_health
from brainjepa.training.batch import derive_seed

logger = logging.getLogger(__name__)

HOLDOUT_STREAM = 3  # derive_seed tag of the held-out masks (the loader and drop path use 1 and 2)
HEALTH_WINDOWS = 16  # training windows the health diagnostics and the gain calibration read
HOLDOUT_WINDOWS = 64  # at most this many held-out windows (evenly spaced over the held-out runs)


def holdout_split(store: RunStore, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) run indices: round(fraction x subjects) subjects held out, at least one when
    fraction > 0; a function of the seed, so a resumed run holds out the same subjects."""
    runs = np.arange(len(store), dtype=np.int64)
    if fraction == 0:
        return runs, runs[:0]
    subjects = store.manifest["subject"].astype(str).to_numpy()
    n = np.unique(subjects).size
    if n < 2:
        raise ConfigError(f"data.holdout={fraction:g} needs at least 2 subjects, but the store {store.path} has {n}; "
                          "set data.holdout=0 to train on every run without a held-out loss")
    held = min(n - 1, max(1, round(fraction * n)))
    train, test = split_by_subject(store, ((n - held) / n, held / n), seed=seed)
    return train, test


def _evenly(indices: np.ndarray, k: int) -> np.ndarray:
    if indices.size <= k:
        return indices
    return indices[np.linspace(0, indices.size - 1, k).round().astype(np.int64)]


def centre_windows(dataset: StoreDataset, runs: np.ndarray, normalizer: Normalizer) -> Tensor:
    """The centre window of each store run in `runs`, normalised: float32 [len(runs), R, T]."""
    window = dataclasses.replace(dataset.window, mode="center")
    view = StoreDataset(dataset.store, indices=runs, normalizer=normalizer, window=window, seed=dataset.seed)
    return torch.stack([view.sample(i, 0) for i in range(len(view))])


def input_gain(cfg: TrainConfig, dataset: StoreDataset, model: BrainJEPA) -> float:
    """data.input_gain as a number: `auto` matches the patch embedding's token norm to the position code's on
    the health windows at the model's initial weights (`calibrate_gain`)."""
    if cfg.data.input_gain != "auto":
        return float(cfg.data.input_gain)
    x = centre_windows(dataset, _evenly(dataset.indices, HEALTH_WINDOWS), dataset.normalizer)
    gain = calibrate_gain(model.target_encoder, x)
    logger.info("data.input_gain auto: %.4g (patch embedding and position code of equal norm on %d windows)",
                gain, len(x))
    return gain


class Watch:
    """Fixed held-out windows and masks (JEPA loss) and training windows (health), measured by `measure`.

    Args:
        dataset: the training dataset, its normaliser final (gain included).
        held: store run indices of the held-out subjects (may be empty: no held-out loss).
        cfg: the run's config (masks, batch size, seed).
    """

    def __init__(self, dataset: StoreDataset, held: np.ndarray, cfg: TrainConfig) -> None:
        self.health_x = centre_windows(dataset, _evenly(dataset.indices, HEALTH_WINDOWS), dataset.normalizer)
        held = _evenly(np.asarray(held, dtype=np.int64), HOLDOUT_WINDOWS)
        self.held_x = centre_windows(dataset, held, dataset.normalizer) if held.size else None
        self.held_subjects = int(np.unique(dataset.store.manifest["subject"].astype(str).to_numpy()[held]).size)
        self.batch_size = cfg.data.batch_size
        grid = (cfg.model.num_rois, cfg.model.num_time_patches)
        self.masks = [draw_masks(cfg.mask, *grid, seed=derive_seed(cfg.meta.seed, HOLDOUT_STREAM), epoch=0,
                                 batch=b, batch_size=min(self.batch_size, len(held) - start))
                      for b, start in enumerate(range(0, len(held), self.batch_size))]

    @torch.no_grad()
    def heldout_loss(self, model: BrainJEPA, autocast: Callable[[], AbstractContextManager]) -> float | None:
        """Mean JEPA loss over the held-out windows (eval mode: no drop path), None without held-out subjects."""
        if self.held_x is None:
            return None
        device, was_training = next(model.parameters()).device, model.training
        model.eval()
        try:
            total = 0.0
            for (ctx, tgt), start in zip(self.masks, range(0, len(self.held_x), self.batch_size), strict=True):
                x = self.held_x[start:start + self.batch_size].to(device)
                with autocast():
                    total += float(model(x, ctx.to(device), tgt.to(device)).loss) * len(x)
            return total / len(self.held_x)
        finally:
            model.train(was_training)

    def health(self, model: BrainJEPA) -> Health:
        """Encoder health of the target encoder on the training windows."""
        device = next(model.parameters()).device
        return encoder_health(model.target_encoder, self.health_x.to(device))

    def measure(self, model: BrainJEPA, autocast: Callable[[], AbstractContextManager]) -> dict[str, float | None]:
        """One metrics.csv row's worth: held-out loss and the health fields."""
        return {"heldout_loss": self.heldout_loss(model, autocast), **self.health(model).to_dict()}
