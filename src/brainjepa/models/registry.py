"""Look-ups of the named encoder presets (`models.config.PRESETS`): a preset's config, the presets, heads of a size."""

from __future__ import annotations

from typing import Any

from brainjepa.errors import ConfigError
from brainjepa.models.config import PRESETS, ModelConfig


def list_models() -> list[str]:
    return sorted(PRESETS)


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """Config of preset `name` with explicit overrides (unknown keys raise ConfigError)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    return ModelConfig.from_dict({**PRESETS[name], **overrides})


def heads_for(embed_dim: int, depth: int) -> int | None:
    """Head count of the preset with this width and depth, or None (heads are not visible in weights)."""
    for preset in PRESETS.values():
        if preset["embed_dim"] == embed_dim and preset["depth"] == depth:
            return preset["num_heads"]
    return None
