"""Named encoder presets (width / depth / heads), as in the reference's vision_transformer.py."""

from __future__ import annotations

from typing import Any

from brainjepa.errors import ConfigError
from brainjepa.models.config import ModelConfig

PRESETS: dict[str, dict[str, int]] = {
    "vit_tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}


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
