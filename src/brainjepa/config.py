"""Pretraining configuration: one schema, and one adapter that reads the reference's YAML into it.

`TrainConfig` is composed of the model's own `ModelConfig` (what `BrainJEPA` is built from), the `MaskConfig` that
`draw_masks` takes, and the data, optimization, logging and meta (the run: seed, device, precision, accumulation,
warm start) sections. Every default is declared once, in these dataclasses.

`load_config(path, overrides)` reads a YAML file and dotted `section.key=value` overrides. Each of the two goes
through `adapt_reference`, which maps the reference's keys (`meta.model_name`, `data.crop_size`, `mask.patch_size`,
`meta.use_standatdization`, ...) onto the schema and passes schema keys through; then the overrides replace what
the file set, field by field. So the reference's `configs/ukb_vitb_ep300.yaml` loads unchanged and means the same,
and a saved `config.yaml` (schema form) loads back to the same config. Every key and type is checked: an unknown,
ill-typed, unsupported or conflicting key raises ConfigError naming it. A config that names its store (`data.path`)
and leaves out `model.num_rois` (and `data.crop_size`) takes the store's ROI count. See docs/pretraining.md.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from brainjepa.bounds import SCANNER_TR, bounded, check_bounds, coerce, field_default
from brainjepa.data.normalize import NormalizationKind
from brainjepa.data.store import RunStore
from brainjepa.errors import ConfigError
from brainjepa.io import atomic_write_text, no_such
from brainjepa.masks.config import MaskConfig
from brainjepa.models.config import PRESETS, ModelConfig
from brainjepa.precision import Precision

DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")  # meta.device; availability is checked when a run starts


@dataclass(frozen=True)
class DataConfig:
    """Where the samples come from and how they are windowed and scaled (the window's shape is `model`'s)."""

    path: str | None = None  # a store written by `brainjepa prepare` or `brainjepa simulate`
    batch_size: int = bounded(16, ge=1)  # per process
    num_workers: int | None = bounded(None, ge=0)  # None: what the machine has (runtime.default_num_workers)
    pin_mem: bool = True
    gradient_csv_path: str | None = None  # None: computed from the store's group FC and saved in the run folder
    gradient_sparsity: float = bounded(0.9, ge=0, lt=1)  # BrainSpace sparsity of a computed gradient
    normalization: NormalizationKind = "roi_zscore"  # the reference's is robust (its yaml loads as robust, gain 1)
    input_gain: float | Literal["auto"] = bounded("auto", gt=0)  # x after normalising; auto: patch norm = position norm
    holdout: float = bounded(0.05, ge=0, lt=1)  # share of subjects held out of training for the held-out loss
    sampling_rate: int = bounded(3, ge=1)  # frame stride of the random clip (the reference's stride-3 clip)
    # resample to this TR (seconds) instead of a fixed stride; a TR scanners use (bounds.SCANNER_TR)
    target_tr: float | None = bounded(None, ge=SCANNER_TR[0], le=SCANNER_TR[1])
    short_runs: Literal["error", "pad"] = "error"

    def __post_init__(self) -> None:
        check_bounds(self, "data")
        if isinstance(self.input_gain, str) and self.input_gain != "auto":
            raise ConfigError(f"data.input_gain must be auto or a number > 0, got {self.input_gain!r}")


@dataclass(frozen=True)
class MetaConfig:
    """The run: precision, accumulation, attention path, seed, device, warm start."""

    load_checkpoint: bool = False  # true: start from meta.read_checkpoint's weights (a warm start)
    read_checkpoint: str | None = None  # a model folder, a run folder or the official .pth.tar
    precision: Precision = "auto"  # auto: bf16 where it is faster (brainjepa.precision)
    accumulation_steps: int = bounded(8, ge=1)
    attn_mode: Literal["flash_attn", "normal"] = "flash_attn"  # flash_attn -> fused SDPA, normal -> explicit softmax
    grad_checkpointing: bool = False
    compile: bool = False  # torch.compile of the step's forward, token counts marked dynamic
    compile_backend: Literal["inductor", "aot_eager", "eager"] = "inductor"  # torch.compile's backend
    seed: int = bounded(0, ge=0, le=2**32 - 1)  # numpy / scikit-learn seeds are 32-bit
    device: str = "auto"  # auto -> cuda if available, else cpu; or cpu, cuda, cuda:N
    legacy_ema: bool = False  # True: the reference's EMA schedule that stalls at ~0.9965 with accumulation

    def __post_init__(self) -> None:
        check_bounds(self, "meta")
        if not (isinstance(self.device, str) and DEVICE.fullmatch(self.device)):
            raise ConfigError(f"config key meta.device has value {self.device!r}; expected auto, cpu, cuda or cuda:N")
        if self.read_checkpoint is not None and not self.load_checkpoint:
            raise ConfigError("meta.read_checkpoint is set but meta.load_checkpoint is false: set "
                              "meta.load_checkpoint=true to warm-start from it, or remove meta.read_checkpoint")
        if self.load_checkpoint and not self.read_checkpoint:
            raise ConfigError("meta.load_checkpoint is true but meta.read_checkpoint is not set: give the model "
                              "folder, run folder or .pth.tar to warm-start from")
        if not self.compile and self.compile_backend != field_default(self, "compile_backend"):
            raise ConfigError(f"meta.compile_backend is {self.compile_backend} but meta.compile is false: set "
                              "meta.compile=true to compile the step, or remove meta.compile_backend")


@dataclass(frozen=True)
class OptimizationConfig:
    """The reference's schedules (brainjepa.training.schedules): LR warmup start_lr -> lr over `warmup` epochs,
    cosine to final_lr; weight decay cosine weight_decay -> final_weight_decay; EMA momentum ema[0] -> ema[1]."""

    ema: list[float] = bounded(factory=lambda: [0.996, 1.0], ge=0, le=1, pair=True)
    epochs: int = bounded(300, ge=1)
    final_lr: float = bounded(1e-6, ge=0)
    final_weight_decay: float = bounded(0.4, ge=0)
    ipe_scale: float = bounded(1.0, gt=0)
    lr: float = bounded(1e-3, gt=0)
    start_lr: float = bounded(5e-5, ge=0)
    warmup: float = bounded(40, ge=0)  # epochs
    weight_decay: float = bounded(0.04, ge=0)
    # --- brainjepa additions ---
    clip_grad: float | None = bounded(None, gt=0)
    max_steps: int | None = bounded(None, ge=1)  # stop after this many optimizer steps (schedules span all epochs)

    def __post_init__(self) -> None:
        check_bounds(self, "optimization")

    def check_schedule(self) -> None:
        """Pretraining's own rules (fine-tuning reuses the schedules with its own limits): every LR key is reached."""
        if self.warmup > self.epochs:
            raise ConfigError(f"optimization.warmup ({self.warmup:g} epochs) exceeds optimization.epochs "
                              f"({self.epochs}): the learning rate would never reach optimization.lr; lower "
                              "optimization.warmup")
        if self.final_lr > self.lr:
            raise ConfigError(f"optimization.final_lr ({self.final_lr:g}) exceeds optimization.lr ({self.lr:g}): "
                              "the cosine decay from lr to final_lr would never run")


@dataclass(frozen=True)
class LoggingConfig:
    folder: str = "logs/ukb_vitb_ep300"
    write_tag: str = "jepa"  # names the run: its default folder is folder/write_tag, and the model carries it
    # --- brainjepa additions ---
    log_every: int = bounded(10, ge=1)  # optimizer steps between log lines
    checkpoint_every: int = bounded(500, ge=1)  # optimizer steps between checkpoints (and one at the end)
    keep_last: int = bounded(3, ge=1)
    tensorboard: bool = False
    collapse_every: int = bounded(10, ge=1)  # optimizer steps between collapse checks (std / rank of targets)
    eval_every: int = bounded(50, ge=1)  # optimizer steps between held-out loss and encoder-health checks

    def __post_init__(self) -> None:
        check_bounds(self, "logging")
        if not self.write_tag or Path(self.write_tag).name != self.write_tag or self.write_tag in (".", ".."):
            raise ConfigError(f"logging.write_tag must be a plain folder name, got {self.write_tag!r}")

    @property
    def run_dir(self) -> Path:
        """The run folder when none is given: logging.folder/logging.write_tag."""
        return Path(self.folder) / self.write_tag


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)

    def __post_init__(self) -> None:
        self.mask.check_grid(self.model.num_rois, self.model.num_time_patches)
        self.optimization.check_schedule()
        given = "data.gradient_csv_path" if self.data.gradient_csv_path else \
            "meta.read_checkpoint" if self.meta.load_checkpoint else None
        if given and self.data.gradient_sparsity != field_default(self.data, "gradient_sparsity"):
            raise ConfigError(f"data.gradient_sparsity applies to a gradient computed from the store, and this run "
                              f"takes its gradient from {given}: remove data.gradient_sparsity")

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-safe dict in schema form (tuples as lists)."""
        return _plain(dataclasses.asdict(self))


SECTIONS: dict[str, type] = typing.get_type_hints(TrainConfig)


# ----------------------------------------------------------------------------------------------- the adapter
# Reference keys (and keys of our own earlier config form) that set one schema field under another name.
RENAMED = {
    "meta.pred_emb_dim": "model.pred_embed_dim",
    "meta.pred_depth": "model.pred_depth",
    "meta.embed_dim": "model.embed_dim",
    "meta.depth": "model.depth",
    "meta.num_heads": "model.num_heads",
    "meta.pred_num_heads": "model.pred_num_heads",
    "meta.drop_path": "model.drop_path_rate",
    "mask.patch_size": "model.patch_size",
    "data.gradient_components": "model.gradient_dim",
}
ADD_W = {"mapping": "mapping", "origin": "sincos"}  # meta.add_w -> model.pos_embed


def adapt_reference(raw: dict[str, Any], where: str = "config") -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Map one source's reference-form keys onto the schema; schema keys pass through unchanged.

    Returns `(values, sources)`: `values[section][key]` in schema form, and `sources["section.key"]`, the key
    that set it (for error messages). Two keys of one source that set one field differently is an error.

    The mapping: `data.crop_size` [R, T] -> model.num_rois, model.num_frames; `mask.patch_size` -> model.patch_size;
    `meta.model_name` -> the preset's model.embed_dim / depth / num_heads (explicit dims of the same source win);
    `meta.pred_emb_dim`, `pred_depth` -> model.pred_embed_dim, pred_depth; `meta.add_w` mapping / origin ->
    model.pos_embed mapping / sincos; `meta.use_standatdization` true / false -> data.normalization sample_zscore /
    robust; `meta.downsample` true / false -> data.sampling_rate 3 / 1 (an explicit data.sampling_rate of the same
    source is kept with true); `meta.use_bfloat16` true / false -> meta.precision auto / fp32 (bf16 only where it
    is faster; an explicit meta.precision of the same source is kept with true); `mask.allow_overlap` must be
    false and `meta.mask_mode` roi_mask (the only behaviours); plus the names in RENAMED.
    """
    values: dict[str, dict[str, Any]] = {}
    for section, items in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{where}: unknown config section {section!r}; expected one of {', '.join(SECTIONS)}")
        if items is not None and not isinstance(items, dict):
            raise ConfigError(f"{where}: config section {section!r} must be a mapping")
        values[section] = dict(items or {})
    sources = {f"{s}.{k}": f"{s}.{k}" for s, items in values.items() for k in items}
    model, data, mask, meta = (values.setdefault(s, {}) for s in ("model", "data", "mask", "meta"))

    def put(target: str, value: Any, source: str) -> None:
        section, key = target.split(".")
        if key in values[section] and values[section][key] != value:
            raise ConfigError(f"{where}: {source} and {sources[target]} both set {target} ({value!r} vs "
                              f"{values[section][key]!r}); give one")
        values[section][key] = value
        sources[target] = source

    for old, new in RENAMED.items():
        section, key = old.split(".")
        if key in values[section]:
            value = values[section].pop(key)
            if value is not None or new == "model.pred_num_heads":  # None dims: "from the preset" (earlier form)
                put(new, value, old)
    if "crop_size" in data:
        crop = data.pop("crop_size")
        if not (isinstance(crop, list | tuple) and len(crop) == 2):
            raise ConfigError(f"{where}: config key data.crop_size has value {crop!r}; expected [ROIs, frames]")
        put("model.num_rois", crop[0], "data.crop_size")
        put("model.num_frames", crop[1], "data.crop_size")
    if "model_name" in meta:
        name = meta.pop("model_name")
        if name not in PRESETS:
            raise ConfigError(f"{where}: config key meta.model_name has value {name!r}; expected one of "
                              f"{sorted(PRESETS)}")
        for key, value in PRESETS[name].items():
            if key not in model:
                put(f"model.{key}", value, "meta.model_name")
    if "add_w" in meta:
        add_w = meta.pop("add_w")
        if add_w not in ADD_W:
            raise ConfigError(f"{where}: config key meta.add_w has value {add_w!r}; expected one of {list(ADD_W)}")
        put("model.pos_embed", ADD_W[add_w], "meta.add_w")
    if "use_standatdization" in meta:
        standardize = _flag(meta.pop("use_standatdization"), "meta.use_standatdization", where)
        if standardize or "normalization" not in data:
            put("data.normalization", "sample_zscore" if standardize else "robust", "meta.use_standatdization")
            if "input_gain" not in data:  # the reference's own pipeline: its scaling, no gain
                put("data.input_gain", 1.0, "meta.use_standatdization")
    if "downsample" in meta:
        downsample = _flag(meta.pop("downsample"), "meta.downsample", where)
        if not downsample or "sampling_rate" not in data:
            put("data.sampling_rate", DataConfig.sampling_rate if downsample else 1, "meta.downsample")
    if "use_bfloat16" in meta:
        bf16 = _flag(meta.pop("use_bfloat16"), "meta.use_bfloat16", where)
        if not bf16 or "precision" not in meta:
            put("meta.precision", "auto" if bf16 else "fp32", "meta.use_bfloat16")
    if "allow_overlap" in mask and _flag(mask.pop("allow_overlap"), "mask.allow_overlap", where):
        raise ConfigError(f"{where}: mask.allow_overlap=true is not supported: context and targets never overlap "
                          "(set it false or leave it out)")
    if "mask_mode" in meta and meta.pop("mask_mode") != "roi_mask":
        raise ConfigError(f"{where}: meta.mask_mode supports only 'roi_mask' (the reference's only mode)")
    return values, sources


def _flag(value: Any, key: str, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: config key {key} has value {value!r}; expected true or false")
    return value


# ----------------------------------------------------------------------------------------------- loading
def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML config (or start from defaults), apply `section.key=value` overrides, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        if not Path(path).exists():
            raise ConfigError(f"{no_such(path, 'config file')}; cannot read config")
        try:
            text = Path(path).read_text()
            _refuse_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader), str(path))
            raw = yaml.safe_load(text) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read config ({err})") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections")
    given: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or not name or "." in name:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        given.setdefault(section, {})[name] = yaml.safe_load(value)
    values, sources = adapt_reference(raw, str(path) if path is not None else "config")
    over_values, over_sources = adapt_reference(given, "overrides")
    data = over_values.get("data", {})
    if "normalization" in data and "input_gain" not in data and \
            sources.get("data.input_gain") == "meta.use_standatdization":
        # the file's gain of 1 came with the reference's own scaling, which the override replaces: an override
        # then means what the same setting in the file would (its own gain)
        del values["data"]["input_gain"], sources["data.input_gain"]
    for section, items in over_values.items():
        values.setdefault(section, {}).update(items)
    return build_config(values, {**sources, **over_sources})


def _refuse_duplicate_keys(node: yaml.Node | None, where: str, prefix: str = "") -> None:
    """YAML lets a key appear twice in one mapping and keeps the last value without a word; refuse it, naming the
    dotted key and both lines (merge keys ``<<`` may be overridden, as YAML intends)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(f"{where}: line {line}: key {prefix}{key} is given twice (also on line {seen[key]}); "
                                  "YAML would keep the last one without a word: keep one")
            seen[key] = line
            _refuse_duplicate_keys(value_node, where, f"{prefix}{key}.")
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(item, where, prefix)


def build_config(values: dict[str, dict[str, Any]], sources: dict[str, str] | None = None) -> TrainConfig:
    """TrainConfig from schema-form sections, every key and type checked; `sources` names keys in errors."""
    sources = dict(sources or {})
    values = _rois_from_store(values, sources)
    sections = {}
    for section, items in values.items():
        sections[section] = _build(SECTIONS[section], items, section, sources)
    try:
        return TrainConfig(**sections)
    except ConfigError as err:
        raise ConfigError(_explain(str(err), sources)) from None


def _rois_from_store(values: dict[str, dict[str, Any]], sources: dict[str, str]) -> dict[str, dict[str, Any]]:
    """A config that names its store (data.path, an existing folder) but not model.num_rois takes the store's ROI
    count: the data gives its shape. A store not there yet keeps the default; opening it fails later, by name."""
    path = (values.get("data") or {}).get("path")
    model = values.get("model") or {}
    if "num_rois" in model or not isinstance(path, str) or not Path(path).is_dir():
        return values
    sources["model.num_rois"] = "data.path"
    return {**values, "model": {**model, "num_rois": RunStore(path).num_rois}}


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config (schema form) atomically: a crash never leaves half a config.yaml."""
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _build(cls: type, values: dict[str, Any], section: str, sources: dict[str, str]):
    hints = typing.get_type_hints(cls)
    out = {}
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"unknown config key {section}.{key}")
        out[key] = coerce(value, hints[key], sources.get(f"{section}.{key}", f"{section}.{key}"))
    try:
        return cls(**out)
    except ConfigError as err:
        raise ConfigError(_explain(str(err), sources)) from None


def _explain(message: str, sources: dict[str, str]) -> str:
    """Add the reference key behind a schema key a message names, e.g. `model.num_rois (from data.crop_size)`."""
    for target, source in sources.items():
        if source != target and target in message:
            message = message.replace(target, f"{target} (from {source})", 1)
    return message


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
