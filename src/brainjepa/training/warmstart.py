"""Warm start: a new run whose encoder, predictor and target encoder start from `meta.read_checkpoint`.

Only weights are taken (and the gradient the source was trained with): the optimizer, schedules and position
start fresh at step 0. The source may be a `save_pretrained` folder, a training run folder or the official
`jepa-ep*.pth.tar` (which needs `data.gradient_csv_path`). Its architecture must be the config's `model`;
stochastic depth (`drop_path_rate`) may differ, since it is a training setting, not a shape.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from brainjepa.config import TrainConfig
from brainjepa.errors import ConfigError
from brainjepa.io import load_gradient
from brainjepa.models import BrainJEPA, ModelConfig

# Fields that do not change the weights' shapes or meaning.
_NOT_ARCHITECTURE = {"drop_path_rate", "pred_num_heads"}  # predictor heads are compared resolved (predictor_heads)


def warm_start(cfg: TrainConfig, metadata: dict[str, Any]) -> BrainJEPA:
    """A model of `cfg.model` holding the weights of `cfg.meta.read_checkpoint`.

    Raises:
        ConfigError: the source's architecture differs from `cfg.model` (naming every differing key), or
            data.gradient_csv_path is missing for / differs from the source's gradient.
    """
    path = Path(cfg.meta.read_checkpoint)
    source = _read(path, cfg)
    differ = [f"model.{name} {a!r} (checkpoint) vs {b!r} (config)"
              for name, a, b in _architecture(source.config, cfg.model) if a != b]
    if differ:
        raise ConfigError(f"meta.read_checkpoint {path} does not match the configured model: {', '.join(differ)}")
    if cfg.data.gradient_csv_path and path.is_dir():
        given = load_gradient(cfg.data.gradient_csv_path, num_rois=cfg.model.num_rois)
        if not np.allclose(given, source.gradient.numpy(), rtol=0, atol=1e-6):
            raise ConfigError(f"data.gradient_csv_path {cfg.data.gradient_csv_path} is not the gradient "
                              f"meta.read_checkpoint {path} was trained with; leave it out to use the stored one")
    model = BrainJEPA(cfg.model, source.gradient, metadata={**metadata, "warm_start": str(path)})
    model.load_state_dict(source.state_dict())
    return model


def _read(path: Path, cfg: TrainConfig) -> BrainJEPA:
    if path.is_dir():
        return BrainJEPA.load(path)
    if not path.exists():
        raise ConfigError(f"meta.read_checkpoint {path}: no such model folder, run folder or checkpoint file")
    if not cfg.data.gradient_csv_path:
        raise ConfigError(f"meta.read_checkpoint {path} is a reference checkpoint: set data.gradient_csv_path to "
                          "the gradient CSV it was trained with")
    # heads are not visible in the weights: the config's are used (and other dims are checked against it)
    return BrainJEPA.from_reference_checkpoint(path, cfg.data.gradient_csv_path, num_heads=cfg.model.num_heads,
                                               pred_num_heads=cfg.model.predictor_heads)


def _architecture(a: ModelConfig, b: ModelConfig) -> list[tuple[str, Any, Any]]:
    pairs = [(f.name, getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(ModelConfig)
             if f.name not in _NOT_ARCHITECTURE]
    return [*pairs, ("pred_num_heads", a.predictor_heads, b.predictor_heads)]
