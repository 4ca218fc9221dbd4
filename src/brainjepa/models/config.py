"""Architecture configuration of a Brain-JEPA model (encoder + predictor)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from brainjepa.errors import ConfigError

PosEmbedKind = Literal["mapping", "sincos"]

# Named encoder sizes (width / depth / heads), as in the reference's vision_transformer.py; `registry` looks them up.
PRESETS: dict[str, dict[str, int]] = {
    "vit_tiny": {"embed_dim": 192, "depth": 12, "num_heads": 3},
    "vit_small": {"embed_dim": 384, "depth": 12, "num_heads": 6},
    "vit_base": {"embed_dim": 768, "depth": 12, "num_heads": 12},
    "vit_large": {"embed_dim": 1024, "depth": 24, "num_heads": 16},
}
DEFAULT_PRESET = "vit_base"  # the paper's main model, and ModelConfig's default encoder
_DEFAULT = PRESETS[DEFAULT_PRESET]


@dataclass(frozen=True)
class ModelConfig:
    """Every shape of the model; nothing else in the model code is hard-coded.

    Defaults are the paper's main model (ViT-B encoder, 384-d depth-6 predictor) on 450 ROIs x 160 frames.
    """

    num_rois: int = 450
    num_frames: int = 160
    patch_size: int = 16
    embed_dim: int = _DEFAULT["embed_dim"]
    depth: int = _DEFAULT["depth"]
    num_heads: int = _DEFAULT["num_heads"]
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    pred_embed_dim: int = 384
    pred_depth: int = 6
    pred_num_heads: int | None = None  # None: the encoder's head count, as in the reference
    gradient_dim: int = 30
    pos_embed: PosEmbedKind = "mapping"
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-6

    def __post_init__(self) -> None:
        for name in ("num_rois", "num_frames", "patch_size", "embed_dim", "depth", "num_heads",
                     "pred_embed_dim", "pred_depth", "gradient_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if self.num_frames % self.patch_size:
            raise ConfigError(
                f"model.num_frames ({self.num_frames}) must be a multiple of model.patch_size ({self.patch_size})"
            )
        for name, dim, heads in (("embed_dim", self.embed_dim, self.num_heads),
                                 ("pred_embed_dim", self.pred_embed_dim, self.predictor_heads)):
            if dim % 4:
                raise ConfigError(f"model.{name} ({dim}) must be divisible by 4 (sin-cos halves)")
            if dim % heads:
                raise ConfigError(f"model.{name} ({dim}) must be divisible by its number of heads ({heads})")
        if self.pos_embed not in typing.get_args(PosEmbedKind):
            raise ConfigError(f"model.pos_embed must be one of {list(typing.get_args(PosEmbedKind))}, got "
                              f"{self.pos_embed!r}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"model.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")

    @property
    def num_time_patches(self) -> int:
        return self.num_frames // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.num_rois * self.num_time_patches

    @property
    def predictor_heads(self) -> int:
        return self.num_heads if self.pred_num_heads is None else self.pred_num_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a dict, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown model config key(s): {', '.join('model.' + k for k in unknown)}")
        return cls(**values)

    def replace(self, **changes: Any) -> ModelConfig:
        return self.from_dict({**self.to_dict(), **changes})
