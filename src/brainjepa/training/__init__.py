"""Pretraining: config-driven loop, schedules, checkpoints, distributed helpers and run monitoring."""

from brainjepa.training.loop import Trainer, build_model, pretrain
from brainjepa.training.schedules import Schedule

__all__ = ["Schedule", "Trainer", "build_model", "pretrain"]
