"""Pretraining configuration: the reference's YAML sections and keys, typed, with our additions.

`load_config(path, overrides)` reads a YAML file (the reference's `configs/ukb_vitb_ep300.yaml` loads unchanged and
means the same thing), applies dotted `section.key=value` overrides, and checks every key and type: an unknown or
ill-typed key raises ConfigError naming it. Keys left out take the reference defaults.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from brainjepa.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    path: str | None = None  # a store written by `brainjepa prepare` or `brainjepa simulate`
    batch_size: int = 16  # per process
    crop_size: list[int] = field(default_factory=lambda: [450, 160])  # [ROIs, frames]
    num_workers: int = 8
    pin_mem: bool = True
    gradient_csv_path: str | None = None  # None: computed from the store's group FC and saved in the run folder
    gradient_components: int = 30  # components of a computed gradient (the reference's file has 30)
    gradient_sparsity: float = 0.9  # BrainSpace sparsity of a computed gradient (lower it for few ROIs)
    normalization: Literal["robust", "sample_zscore", "roi_zscore", "none"] = "robust"
    sampling_rate: int = 3  # frame stride of the random clip (meta.downsample switches it on)
    target_tr: float | None = None  # resample to this TR (seconds) instead of a fixed stride
    short_runs: Literal["error", "pad"] = "error"


@dataclass(frozen=True)
class MaskConfig:
    allow_overlap: bool = False  # read but unused, as in the reference (context and targets never overlap)
    patch_size: int = 16
    min_keep: int = 4
    enc_mask_scale: list[float] = field(default_factory=lambda: [0.84, 1.0])
    pred_mask_R_scale: list[float] = field(default_factory=lambda: [0.45, 0.6])
    pred_mask_T_roi_scale: list[float] = field(default_factory=lambda: [0.2, 0.6])
    pred_mask_R_roi_scale: list[float] = field(default_factory=lambda: [0.15, 0.3])
    pred_mask_T_scale: list[float] = field(default_factory=lambda: [0.0, 0.4])


@dataclass(frozen=True)
class MetaConfig:
    load_checkpoint: bool = False  # reference key; use --resume instead (kept so reference configs load)
    model_name: str = "vit_base"
    pred_depth: int = 6
    pred_emb_dim: int = 384
    read_checkpoint: str | None = None
    use_bfloat16: bool = True
    accumulation_steps: int = 8
    attn_mode: Literal["flash_attn", "normal"] = "flash_attn"  # flash_attn -> fused SDPA, normal -> manual
    add_w: Literal["mapping", "origin"] = "mapping"  # origin -> fixed 2-D sin-cos positions
    downsample: bool = True
    mask_mode: Literal["roi_mask"] = "roi_mask"
    use_standatdization: bool = False  # (sic) reference key: True -> per-sample z-score instead of robust scaling
    # --- brainjepa additions ---
    embed_dim: int | None = None  # explicit model dims override the preset
    depth: int | None = None
    num_heads: int | None = None
    pred_num_heads: int | None = None
    drop_path: float = 0.0
    grad_checkpointing: bool = False
    compile: bool = False
    seed: int = 0
    device: str = "auto"  # auto -> cuda if available, else cpu
    legacy_ema: bool = False  # True: the reference's EMA schedule that stalls at ~0.9965 with accumulation


@dataclass(frozen=True)
class OptimizationConfig:
    ema: list[float] = field(default_factory=lambda: [0.996, 1.0])
    epochs: int = 300
    final_lr: float = 1e-6
    final_weight_decay: float = 0.4
    ipe_scale: float = 1.0
    lr: float = 1e-3
    start_lr: float = 5e-5
    warmup: float = 40  # epochs
    weight_decay: float = 0.04
    # --- brainjepa additions ---
    clip_grad: float | None = None
    max_steps: int | None = None  # stop after this many optimizer steps (schedules still span all epochs)


@dataclass(frozen=True)
class LoggingConfig:
    folder: str = "logs/ukb_vitb_ep300"
    write_tag: str = "jepa"
    # --- brainjepa additions ---
    log_every: int = 10  # optimizer steps between log lines
    checkpoint_every: int = 500  # optimizer steps between checkpoints (and one at the end)
    keep_last: int = 3
    tensorboard: bool = False
    collapse_every: int = 10  # optimizer steps between collapse checks (std / effective rank of targets)


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def mask_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self.mask)


SECTIONS: dict[str, type] = {f.name: f.type for f in dataclasses.fields(TrainConfig)}


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config (or start from defaults), apply `section.key=value` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config ({err})") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections")
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        raw.setdefault(section, {})[name] = yaml.safe_load(value)
    return from_dict(raw)


def from_dict(raw: dict[str, Any]) -> TrainConfig:
    sections = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section {section!r}; expected one of {', '.join(SECTIONS)}")
        values = {} if values is None else values
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} must be a mapping")
        sections[section] = _build(_section_class(section), values, section)
    return TrainConfig(**sections)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _section_class(section: str) -> type:
    hints = typing.get_type_hints(TrainConfig)
    return hints[section]


def _build(cls: type, values: dict[str, Any], section: str):
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown config key {section}.{key}")
        out[key] = _coerce(value, hints[key], f"{section}.{key}")
    return cls(**out)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a type hint, allowing int where float is expected; name the key on failure."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key} has value {value!r}; expected {_describe(hint)}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key {key} has value {value!r}; expected one of {list(args)}")
        return value
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key} has value {value!r}; expected a list")
        return [_coerce(v, args[0], key) for v in value]
    if hint is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads '1e-3' as a string
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    raise ConfigError(f"config key {key} has value {value!r}; expected {_describe(hint)}")


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
