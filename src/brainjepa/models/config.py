"""Architecture configuration of a Brain-JEPA model (encoder + predictor)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from brainjepa.bounds import bounded, build_typed, check_bounds
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

    num_rois: int = bounded(450, ge=1)
    num_frames: int = bounded(160, ge=1)
    patch_size: int = bounded(16, ge=1)
    embed_dim: int = bounded(_DEFAULT["embed_dim"], ge=1)
    depth: int = bounded(_DEFAULT["depth"], ge=1)
    num_heads: int = bounded(_DEFAULT["num_heads"], ge=1)
    mlp_ratio: float = bounded(4.0, gt=0)
    qkv_bias: bool = True
    pred_embed_dim: int = bounded(384, ge=1)
    pred_depth: int = bounded(6, ge=1)
    pred_num_heads: int | None = bounded(None, ge=1)  # None: the encoder's head count, as in the reference
    gradient_dim: int = bounded(30, ge=1)
    pos_embed: PosEmbedKind = "mapping"
    drop_path_rate: float = bounded(0.0, ge=0, lt=1)
    norm_eps: float = bounded(1e-6, gt=0)

    def __post_init__(self) -> None:
        check_bounds(self, "model")
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
        """Build from a dict (a config.json record), rejecting unknown keys and values of the wrong type by name."""
        return build_typed(cls, values, "model")

    def replace(self, **changes: Any) -> ModelConfig:
        return self.from_dict({**self.to_dict(), **changes})
