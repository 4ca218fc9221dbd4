"""The configuration schema and the reference adapter: every reference key takes effect or is refused by name;
warm start; the run's write_tag."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from brainjepa import BrainJEPA
from brainjepa.config import SECTIONS, DataConfig, TrainConfig, load_config, save_config
from brainjepa.errors import ConfigError
from brainjepa.masks import MaskConfig, draw_masks
from brainjepa.models import ModelConfig
from brainjepa.models.config import PRESETS
from brainjepa.models.layers import Attention
from brainjepa.training import Schedule, pretrain
from brainjepa.training.distributed import DistEnv
from brainjepa.training.loop import Trainer, resolve_gradient
from brainjepa.training.warmstart import warm_start

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "configs" / "ukb_vitb_ep300.yaml"
R, T = 20, 64
TINY = {"model.num_rois": R, "model.num_frames": T, "model.embed_dim": 32, "model.depth": 1, "model.num_heads": 2,
        "model.pred_embed_dim": 16, "model.pred_depth": 1, "model.gradient_dim": 8}


def _reference_keys() -> list[str]:
    raw = yaml.safe_load(REFERENCE.read_text())
    return [f"{section}.{key}" for section, items in raw.items() for key in items]


def _get(cfg: TrainConfig, path: str):
    value = cfg
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _schedule(cfg: TrainConfig) -> list[tuple[float, float, float]]:
    s = Schedule(cfg.optimization, iters_per_epoch=16, accumulation_steps=cfg.meta.accumulation_steps)
    return [(s.lr(i), s.weight_decay(i), s.momentum(i)) for i in range(s.total_steps)]


def _masks(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    return draw_masks(cfg.mask, cfg.model.num_rois, cfg.model.num_time_patches, seed=cfg.meta.seed, epoch=0,
                      batch=0, batch_size=4)


# For every key of the reference yaml: a changed value and either what it sets in the schema, or the ConfigError
# (naming the key) that refuses it.
EFFECTS: dict[str, tuple[object, dict[str, object] | str]] = {
    "data.batch_size": (4, {"data.batch_size": 4}),
    "data.crop_size": ([100, 64], {"model.num_rois": 100, "model.num_frames": 64, "model.num_patches": 400}),
    "data.num_workers": (0, {"data.num_workers": 0}),
    "data.pin_mem": (False, {"data.pin_mem": False}),
    "data.gradient_csv_path": ("g.csv", {"data.gradient_csv_path": "g.csv"}),
    "data.path": ("stores/x", {"data.path": "stores/x"}),
    "logging.folder": ("logs/x", {"logging.folder": "logs/x", "logging.run_dir": Path("logs/x/jepa")}),
    "logging.write_tag": ("t2", {"logging.write_tag": "t2", "logging.run_dir": Path("logs/ukb_vitb_ep300/t2")}),
    "mask.allow_overlap": (True, "mask.allow_overlap=true is not supported"),
    "mask.patch_size": (8, {"model.patch_size": 8, "model.num_time_patches": 20}),
    "mask.min_keep": (10, {"mask.min_keep": 10}),
    "mask.enc_mask_scale": ([0.5, 0.9], {"mask.enc_mask_scale": (0.5, 0.9)}),
    "mask.pred_mask_R_scale": ([0.2, 0.3], {"mask.pred_mask_R_scale": (0.2, 0.3)}),
    "mask.pred_mask_T_roi_scale": ([0.1, 0.3], {"mask.pred_mask_T_roi_scale": (0.1, 0.3)}),
    "mask.pred_mask_R_roi_scale": ([0.4, 0.5], {"mask.pred_mask_R_roi_scale": (0.4, 0.5)}),
    "mask.pred_mask_T_scale": ([0.2, 0.5], {"mask.pred_mask_T_scale": (0.2, 0.5)}),
    "meta.load_checkpoint": (True, "meta.load_checkpoint is true but meta.read_checkpoint is not set"),
    "meta.model_name": ("vit_small", {"model.embed_dim": 384, "model.num_heads": 6}),
    "meta.pred_depth": (3, {"model.pred_depth": 3}),
    "meta.pred_emb_dim": (192, {"model.pred_embed_dim": 192}),
    "meta.read_checkpoint": ("runs/x", "meta.read_checkpoint is set but meta.load_checkpoint is false"),
    "meta.use_bfloat16": (False, {"meta.precision": "fp32"}),
    "meta.accumulation_steps": (2, {"meta.accumulation_steps": 2}),
    "meta.attn_mode": ("normal", {"meta.attn_mode": "normal"}),
    "meta.add_w": ("origin", {"model.pos_embed": "sincos"}),
    "meta.downsample": (False, {"data.sampling_rate": 1}),
    "meta.mask_mode": ("tube_mask", "meta.mask_mode supports only 'roi_mask'"),
    "meta.use_standatdization": (True, {"data.normalization": "sample_zscore"}),
    "optimization.ema": ([0.99, 1.0], {"optimization.ema": [0.99, 1.0]}),
    "optimization.epochs": (100, {"optimization.epochs": 100}),
    "optimization.final_lr": (1e-5, {"optimization.final_lr": 1e-5}),
    "optimization.final_weight_decay": (0.2, {"optimization.final_weight_decay": 0.2}),
    "optimization.ipe_scale": (0.5, {"optimization.ipe_scale": 0.5}),
    "optimization.lr": (5e-4, {"optimization.lr": 5e-4}),
    "optimization.start_lr": (1e-4, {"optimization.start_lr": 1e-4}),
    "optimization.warmup": (10, {"optimization.warmup": 10.0}),
    "optimization.weight_decay": (0.1, {"optimization.weight_decay": 0.1}),
}


@pytest.fixture(scope="module")
def reference() -> TrainConfig:
    return load_config(REFERENCE)


@pytest.mark.parametrize("key", _reference_keys())
def test_every_reference_key_takes_effect_or_is_refused(reference, key):
    assert key in EFFECTS, f"{key} is read from the reference yaml: add how it takes effect to EFFECTS"
    value, effect = EFFECTS[key]
    override = f"{key}={json.dumps(value)}"
    if isinstance(effect, str):
        with pytest.raises(ConfigError, match=re.escape(effect)):
            load_config(REFERENCE, [override])
        return
    cfg = load_config(REFERENCE, [override])
    for path, expected in effect.items():
        assert _get(reference, path) != expected, f"{key}: {path} already was {expected!r}"
        assert _get(cfg, path) == expected, f"{key}: {path} is {_get(cfg, path)!r}"
    changed = {p for p in ("model", "mask", "data", "optimization", "logging", "meta")
               if getattr(cfg, p) != getattr(reference, p)}
    assert changed == {path.split(".")[0] for path in effect}  # nothing else moved
    if key.startswith(("optimization.", "meta.accumulation_steps")):  # what the schedules make of it
        assert _schedule(cfg) != _schedule(reference)


@pytest.mark.parametrize("key", [k for k in EFFECTS if k.startswith("mask.") and k.endswith("scale")])
def test_every_mask_scale_changes_the_masks(reference, key):
    cfg = load_config(REFERENCE, [f"{key}={json.dumps(EFFECTS[key][0])}"])
    assert not all(torch.equal(a, b) for a, b in zip(_masks(cfg), _masks(reference), strict=True))


def test_reference_yaml_means_the_defaults(reference):
    expected = TrainConfig().to_dict()
    expected["data"]["gradient_csv_path"] = "path/to/gradient_mapping_450.csv"
    expected["data"]["num_workers"] = 8  # the reference sets 8; the schema's default (None) is what the machine has
    # the reference's input scale (robust scaling, no gain), where our default is a ROI z-score x auto gain (issue 16)
    expected["data"].update(normalization="robust", input_gain=1.0)
    assert reference.to_dict() == expected
    # the paper's model, masks, data pipeline and optimisation
    m = reference.model
    assert (m.num_rois, m.num_frames, m.patch_size, m.embed_dim, m.depth, m.num_heads) == (450, 160, 16, 768, 12, 12)
    assert (m.pred_embed_dim, m.pred_depth, m.predictor_heads, m.gradient_dim, m.pos_embed) == (384, 6, 12, 30,
                                                                                                "mapping")
    assert reference.mask == MaskConfig(enc_mask_scale=(0.84, 1.0), pred_mask_R_scale=(0.45, 0.6),
                                        pred_mask_T_roi_scale=(0.2, 0.6), pred_mask_R_roi_scale=(0.15, 0.3),
                                        pred_mask_T_scale=(0.0, 0.4), min_keep=4)
    assert (reference.data.normalization, reference.data.sampling_rate, reference.data.batch_size) == ("robust", 3, 16)
    assert reference.meta.accumulation_steps == 8 and reference.meta.attn_mode == "flash_attn"
    o = reference.optimization
    assert (o.epochs, o.warmup, o.start_lr, o.lr, o.final_lr, o.ema) == (300, 40, 5e-5, 1e-3, 1e-6, [0.996, 1.0])
    assert (o.weight_decay, o.final_weight_decay, o.ipe_scale) == (0.04, 0.4, 1.0)


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key optimization.lrr"):
        load_config(None, ["optimization.lrr=1"])
    with pytest.raises(ConfigError, match="data.batch_size has value 'many'"):
        load_config(None, ["data.batch_size=many"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta:\n  attn_mode: turbo\n")
    with pytest.raises(ConfigError, match=r"meta.attn_mode .*'flash_attn', 'normal'"):
        load_config(bad)
    assert load_config(None, ["optimization.lr=1e-3"]).optimization.lr == 1e-3
    # a reference key is named even when it lands on a schema key
    with pytest.raises(ConfigError, match="meta.pred_emb_dim has value 'wide'"):
        load_config(None, ["meta.pred_emb_dim=wide"])
    with pytest.raises(ConfigError, match=r"model.num_frames \(from data.crop_size\) \(150\) must be a multiple"):
        load_config(None, ["data.crop_size=[450,150]"])
    with pytest.raises(ConfigError, match="meta.model_name has value 'vit_huge'"):
        load_config(None, ["meta.model_name=vit_huge"])
    with pytest.raises(ConfigError, match="logging.write_tag must be a plain folder name"):
        load_config(None, ["logging.write_tag=a/b"])
    listed = tmp_path / "listed.yaml"
    listed.write_text("data:\n  - batch_size: 4\n")
    with pytest.raises(ConfigError, match=f"^{re.escape(str(listed))}: config section 'data' must be a mapping$"):
        load_config(listed)


@pytest.mark.parametrize("key", ["data.batch_size", "optimization.epochs", "optimization.lr"])
def test_a_boolean_is_not_a_number(key):
    """YAML's true is a bool, which Python counts as the int 1: a number key given true is refused by name,
    not silently read as 1 (a batch size of 1, one epoch, an LR of 1)."""
    with pytest.raises(ConfigError, match=f"{key} has value True"):
        load_config(None, [f"{key}=true"])


def test_an_override_means_what_the_same_key_in_the_file_means(tmp_path):
    """The reference file's use_standatdization: false brings its own scaling with a gain of 1; a normalisation
    given instead, in the file or as an override, brings the schema's gain (auto) either way."""
    reference = Path(__file__).resolve().parents[1] / "configs" / "ukb_vitb_ep300.yaml"
    assert load_config(reference).data.input_gain == 1.0
    edited = tmp_path / "edited.yaml"
    edited.write_text(reference.read_text().replace("data:\n", "data:\n  normalization: roi_zscore\n", 1))
    in_file = load_config(edited).data
    overridden = load_config(reference, ["data.normalization=roi_zscore"]).data
    assert in_file == overridden and overridden.input_gain == "auto"
    assert load_config(reference, ["data.normalization=roi_zscore", "data.input_gain=2"]).data.input_gain == 2


def test_a_setting_another_one_switches_off_is_refused():
    """A setting whose only effect depends on another one is refused when that one is off, not ignored."""
    with pytest.raises(ConfigError, match="^meta.compile_backend is eager but meta.compile is false"):
        load_config(None, ["meta.compile_backend=eager"])
    assert load_config(None, ["meta.compile=true", "meta.compile_backend=eager"]).meta.compile_backend == "eager"
    for given in (["data.gradient_csv_path=g.csv"], ["meta.load_checkpoint=true", "meta.read_checkpoint=runs/a"]):
        with pytest.raises(ConfigError, match="^data.gradient_sparsity applies to a gradient computed from the store, "
                           f"and this run takes its gradient from {given[-1].split('=')[0]}"):
            load_config(None, [*given, "data.gradient_sparsity=0.5"])
        load_config(None, given)  # left at its default: accepted
    assert load_config(None, ["data.gradient_sparsity=0.5"]).data.gradient_sparsity == 0.5
    from brainjepa.bounds import field_default
    from brainjepa.config import OptimizationConfig

    assert field_default(OptimizationConfig(ema=[0.9, 1.0]), "ema") == [0.996, 1.0]  # a factory default
    assert field_default(OptimizationConfig(epochs=5), "epochs") == 300


# Every numeric or list key out of its range: refused by load_config in one line naming the key (and the
# reference key it came from).
OUT_OF_RANGE = {
    "optimization.lr=-1": "optimization.lr must be a number > 0, got -1.0",
    "optimization.lr=.nan": "optimization.lr must be a number > 0, got nan",
    "optimization.start_lr=-1e-5": "optimization.start_lr must be a number >= 0",
    "optimization.final_lr=-1": "optimization.final_lr must be a number >= 0",
    "optimization.weight_decay=-0.1": "optimization.weight_decay must be a number >= 0",
    "optimization.final_weight_decay=.inf": "optimization.final_weight_decay must be a number >= 0, got inf",
    "optimization.ema=[1.5,1]": "optimization.ema must be two numbers with 0 <= low <= high <= 1, got [1.5, 1.0]",
    "optimization.ema=[1.0,0.99]": "optimization.ema must be two numbers with 0 <= low <= high <= 1",
    "optimization.ema=[0.99]": "optimization.ema must be two numbers",
    "optimization.epochs=0": "optimization.epochs must be an integer >= 1, got 0",
    "optimization.warmup=-1": "optimization.warmup must be a number >= 0",
    "optimization.warmup=400": "optimization.warmup (400 epochs) exceeds optimization.epochs (300)",
    "optimization.final_lr=0.01": "optimization.final_lr (0.01) exceeds optimization.lr (0.001)",
    "optimization.ipe_scale=0": "optimization.ipe_scale must be a number > 0, got 0.0",
    "optimization.clip_grad=0": "optimization.clip_grad must be a number > 0, got 0.0",
    "optimization.max_steps=0": "optimization.max_steps must be an integer >= 1, got 0",
    "data.batch_size=0": "data.batch_size must be an integer >= 1, got 0",
    "data.num_workers=-1": "data.num_workers must be an integer >= 0, got -1",
    "data.sampling_rate=0": "data.sampling_rate must be an integer >= 1, got 0",
    "data.target_tr=-2": "data.target_tr must be a number >= 0.05 and <= 30, got -2.0",
    "data.target_tr=720": "data.target_tr must be a number >= 0.05 and <= 30, got 720.0",
    "data.gradient_sparsity=1": "data.gradient_sparsity must be a number >= 0 and < 1, got 1.0",
    "data.crop_size=[0,160]": "model.num_rois (from data.crop_size) must be an integer >= 1, got 0",
    "data.crop_size=[450,-16]": "model.num_frames (from data.crop_size) must be an integer >= 1",
    "mask.patch_size=0": "model.patch_size (from mask.patch_size) must be an integer >= 1, got 0",
    "mask.min_keep=0": "mask.min_keep must be an integer >= 1, got 0",
    "mask.max_tries=0": "mask.max_tries must be an integer >= 1, got 0",
    "mask.enc_mask_scale=[0.9,0.5]": "mask.enc_mask_scale must be two numbers with 0 <= low <= high <= 1",
    "mask.pred_mask_T_scale=[-0.1,0.4]": "mask.pred_mask_T_scale must be two numbers with 0 <= low <= high <= 1",
    "meta.drop_path=1.0": "model.drop_path_rate (from meta.drop_path) must be a number >= 0 and < 1, got 1.0",
    "model.mlp_ratio=0": "model.mlp_ratio must be a number > 0",
    "model.norm_eps=0": "model.norm_eps must be a number > 0",
    "meta.pred_num_heads=0": "model.pred_num_heads (from meta.pred_num_heads) must be an integer >= 1, got 0",
    "meta.accumulation_steps=0": "meta.accumulation_steps must be an integer >= 1, got 0",
    "meta.seed=-1": "meta.seed must be an integer >= 0 and <= 4294967295, got -1",
    "meta.device=gpu": "config key meta.device has value 'gpu'; expected auto, cpu, cuda or cuda:N",
    "meta.device=cuda:x": "config key meta.device has value 'cuda:x'",
    "logging.checkpoint_every=0": "logging.checkpoint_every must be an integer >= 1, got 0",
    "logging.log_every=0": "logging.log_every must be an integer >= 1, got 0",
    "logging.keep_last=0": "logging.keep_last must be an integer >= 1, got 0",
    "logging.collapse_every=-5": "logging.collapse_every must be an integer >= 1, got -5",
    "logging.eval_every=0": "logging.eval_every must be an integer >= 1, got 0",
    "data.input_gain=0": "data.input_gain must be a number > 0, got 0.0",
    "data.input_gain=-3": "data.input_gain must be a number > 0, got -3.0",
    "data.input_gain=automatic": "config key data.input_gain has value 'automatic'; expected float or 'auto'",
    "data.holdout=1": "data.holdout must be a number >= 0 and < 1, got 1.0",
    "data.holdout=-0.1": "data.holdout must be a number >= 0 and < 1",
    "mask.enc_mask_scale=[0.5]": "config key mask.enc_mask_scale has value [0.5]; expected a list of 2",
    "mask.pred_mask_T_scale=[0.1,0.2,0.3]": "config key mask.pred_mask_T_scale has value [0.1, 0.2, 0.3]; expected a "
                                            "list of 2",
    "meta.add_w=sine": "config key meta.add_w has value 'sine'; expected one of ['mapping', 'origin']",
    "meta.downsample=1": "config key meta.downsample has value 1; expected true or false",
    "meta.use_bfloat16=bf16": "config key meta.use_bfloat16 has value 'bf16'; expected true or false",
    "logging.write_tag=..": "logging.write_tag must be a plain folder name, got '..'",
    "optimization.ema=5": "config key optimization.ema has value 5; expected a list",
    "data.input_gain=null": "config key data.input_gain has value None; expected float or 'auto'",
    "data.pin_mem=maybe": "config key data.pin_mem has value 'maybe'; expected bool",
    "logging.folder=5": "config key logging.folder has value 5; expected str",
}


@pytest.mark.parametrize("override", OUT_OF_RANGE)
def test_out_of_range_settings_are_refused_naming_the_key(override):
    with pytest.raises(ConfigError) as err:
        load_config(REFERENCE, [override])
    assert OUT_OF_RANGE[override] in str(err.value) and "\n" not in str(err.value)


def test_every_numeric_and_list_key_declares_its_range():
    """A new int / float / list key without a declared range fails here (bounds.py: `bounded`)."""
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kinds = set(typing.get_args(hints[f.name])) | {typing.get_origin(hints[f.name]), hints[f.name]}
            if kinds & {int, float, list, tuple}:
                assert "bounds" in f.metadata, f"{section}.{f.name} has no declared range"


def test_edges_of_the_ranges_are_accepted():
    cfg = load_config(REFERENCE, ["optimization.ema=[1,1]", "optimization.start_lr=0", "optimization.final_lr=0",
                                  "optimization.warmup=300", "data.num_workers=0", "mask.pred_mask_T_scale=[0,0]",
                                  "meta.seed=0", "meta.device=cuda:1", "model.drop_path_rate=0.0"])
    assert cfg.optimization.ema == [1.0, 1.0] and cfg.optimization.warmup == 300 and cfg.meta.device == "cuda:1"
    flat = load_config(REFERENCE, ["optimization.final_lr=1e-3", "optimization.lr=1e-3"]).optimization  # no decay
    assert flat.final_lr == flat.lr


def test_two_keys_of_one_source_for_one_field_are_refused():
    with pytest.raises(ConfigError, match=r"model.num_rois and data.crop_size both set model.num_rois|"
                                          r"data.crop_size and model.num_rois both set model.num_rois"):
        load_config(None, ["data.crop_size=[100,160]", "model.num_rois=50"])
    with pytest.raises(ConfigError, match="meta.use_standatdization and data.normalization both set"):
        load_config(None, ["data.normalization=roi_zscore", "meta.use_standatdization=true"])
    with pytest.raises(ConfigError, match="meta.downsample and data.sampling_rate both set"):
        load_config(None, ["data.sampling_rate=2", "meta.downsample=false"])


def test_a_reference_flag_keeps_the_explicit_key_of_its_source():
    """`meta.use_standatdization: false`, `meta.downsample: true` and `meta.use_bfloat16: true` set what the
    same source leaves out (input_gain, sampling_rate, precision), and keep what it gives."""
    cfg = load_config(None, ["meta.use_standatdization=false", "data.input_gain=2", "meta.downsample=true",
                             "data.sampling_rate=2", "meta.use_bfloat16=true", "meta.precision=fp32"])
    assert (cfg.data.normalization, cfg.data.input_gain, cfg.data.sampling_rate, cfg.meta.precision) == (
        "robust", 2.0, 2, "fp32")
    assert load_config(None, ["meta.use_standatdization=false"]).data.input_gain == 1.0


def test_an_empty_reference_dim_means_the_preset(tmp_path):
    """Our earlier config form wrote `meta.embed_dim: null` for "the preset's"; `meta.pred_num_heads: null` is a
    value (the encoder's heads), which an override may set over the file's."""
    cfg = load_config(None, ["meta.model_name=vit_small", "meta.embed_dim=null", "meta.depth=null"])
    assert (cfg.model.embed_dim, cfg.model.depth) == (PRESETS["vit_small"]["embed_dim"], PRESETS["vit_small"]["depth"])
    (tmp_path / "c.yaml").write_text("model:\n  pred_num_heads: 4\n")
    assert load_config(tmp_path / "c.yaml").model.predictor_heads == 4
    reset = load_config(tmp_path / "c.yaml", ["meta.pred_num_heads=null"]).model
    assert reset.pred_num_heads is None and reset.predictor_heads == reset.num_heads


def test_sections_check_their_values_when_built_directly():
    with pytest.raises(ConfigError, match="data.input_gain must be auto or a number > 0, got 'fast'"):
        DataConfig(input_gain="fast")


def test_schema_and_reference_forms_mean_the_same_and_overrides_win(tmp_path):
    reference_form = load_config(None, ["meta.model_name=vit_tiny", "meta.embed_dim=96", "meta.pred_emb_dim=48",
                                        "data.crop_size=[100,160]", "mask.patch_size=8", "meta.add_w=origin"])
    schema_form = load_config(None, ["model.embed_dim=96", "model.depth=12", "model.num_heads=3",
                                     "model.pred_embed_dim=48", "model.num_rois=100", "model.num_frames=160",
                                     "model.patch_size=8", "model.pos_embed=sincos"])
    assert reference_form == schema_form
    # overrides replace what the file says, whichever form either uses
    small = ROOT / "configs" / "small_cpu.yaml"
    cfg = load_config(small, ["data.crop_size=[450,160]", "meta.use_standatdization=true", "model.depth=2"])
    assert (cfg.model.num_rois, cfg.model.depth, cfg.model.embed_dim) == (450, 2, 96)
    assert cfg.data.normalization == "sample_zscore"
    assert load_config(REFERENCE, ["data.sampling_rate=2"]).data.sampling_rate == 2
    assert load_config(small, ["meta.downsample=true"]).data.sampling_rate == 3
    # a saved config (schema form) loads back to the same config
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


def test_the_store_gives_the_roi_count_a_config_leaves_out(store, tmp_path):
    frames = ["model.num_frames=32"]
    assert load_config(None, [f"data.path={store}", *frames]).model.num_rois == R  # R: the store's, not 450
    assert load_config(None, [f"data.path={store}", "model.num_rois=7", *frames]).model.num_rois == 7  # set: kept
    assert load_config(None, [f"data.path={store}", "data.crop_size=[9,32]"]).model.num_rois == 9
    assert load_config(None, [f"data.path={tmp_path / 'later'}", *frames]).model.num_rois == 450  # not written yet
    with pytest.raises(ConfigError, match=rf"tokens of the {R} x 2 grid"):  # checked on the store's grid
        load_config(None, [f"data.path={store}", "mask.min_keep=10000", *frames])


def test_gradient_width_is_declared(tmp_path):
    np.savetxt(tmp_path / "g.csv", np.random.default_rng(0).normal(size=(R, 5)), delimiter=",")
    cfg = load_config(None, [f"{k}={v}" for k, v in TINY.items()] + [f"data.gradient_csv_path={tmp_path / 'g.csv'}"])
    with pytest.raises(ConfigError, match="has 5 gradient components but model.gradient_dim is 8"):
        resolve_gradient(cfg, None, tmp_path, DistEnv())


# ------------------------------------------------------------------------------------------------- warm start
def _tiny(store: Path, **extra) -> list[str]:
    base = {**TINY, "data.path": str(store), "data.batch_size": 4, "data.num_workers": 0, "data.sampling_rate": 1,
            "data.pin_mem": "false", "data.gradient_sparsity": 0.5, "meta.use_bfloat16": "false",
            "meta.accumulation_steps": 1, "optimization.epochs": 2, "optimization.warmup": 1,
            "optimization.max_steps": 2, "logging.checkpoint_every": 100}
    return [f"{k}={v}" for k, v in {**base, **extra}.items()]


@pytest.fixture(scope="module")
def run(store, tmp_path_factory) -> Path:
    """A two-step run with no --out: it lands in logging.folder/logging.write_tag."""
    logs = tmp_path_factory.mktemp("logs")
    return pretrain(load_config(None, _tiny(store, **{"logging.folder": str(logs), "logging.write_tag": "tiny"})))


def test_write_tag_names_the_run(run):
    assert run.name == "tiny" and (run / "config.yaml").is_file()
    assert BrainJEPA.from_pretrained(run).metadata["write_tag"] == "tiny"


def _same_weights(a: BrainJEPA, b: BrainJEPA) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_warm_start_from_a_run_folder_takes_its_weights_and_starts_at_step_0(store, run, tmp_path):
    cfg = load_config(None, _tiny(store, **{"meta.load_checkpoint": "true", "meta.read_checkpoint": str(run),
                                            "meta.seed": 5, "data.gradient_sparsity": 0.9}))  # the run's gradient
    trainer = Trainer(cfg, tmp_path, DistEnv(), resume=False)
    assert _same_weights(trainer.model, BrainJEPA.from_pretrained(run))
    assert trainer.position.step == 0 and not trainer.optimizer.state  # fresh optimizer and schedule
    assert trainer.model.metadata["warm_start"] == str(run)
    # a cold start of the same config, with two reference keys whose effect is in the trainer
    cold_cfg = load_config(None, _tiny(store, **{"meta.seed": 5, "meta.attn_mode": "normal",
                                                 "meta.use_standatdization": "true"}))
    cold = Trainer(cold_cfg, tmp_path / "cold", DistEnv(), resume=False)
    assert not _same_weights(cold.model, trainer.model)
    fused = {m.fused for net in (cold.model, trainer.model) for m in net.modules() if isinstance(m, Attention)}
    assert {m.fused for m in cold.model.modules() if isinstance(m, Attention)} == {False} and fused == {False, True}
    assert cold.model.metadata["normalization"]["kind"] == "sample_zscore"
    assert "gain" not in cold.model.metadata["normalization"]  # the reference's pipeline: no input gain
    record = trainer.model.metadata["normalization"]  # the default: ROI z-score x a calibrated gain
    assert record["kind"] == "roi_zscore" and record["gain"] > 1


def _saved_model(path: Path, **changes) -> BrainJEPA:
    torch.manual_seed(1)
    cfg = ModelConfig(**{k.split(".")[1]: v for k, v in TINY.items()}).replace(**changes)
    model = BrainJEPA(cfg, torch.randn(R, cfg.gradient_dim))
    model.save_pretrained(path)
    return model


def _warm_cfg(source: Path, *extra: str) -> TrainConfig:
    return load_config(None, [f"{k}={v}" for k, v in TINY.items()]
                       + ["meta.load_checkpoint=true", f"meta.read_checkpoint={source}", *extra])


def test_warm_start_from_a_model_folder_gives_identical_weights(tmp_path):
    source = _saved_model(tmp_path / "m")
    model = warm_start(_warm_cfg(tmp_path / "m", "model.drop_path_rate=0.1"), {"normalization": {"kind": "none"}})
    assert _same_weights(model, source) and model.config.drop_path_rate == 0.1


def test_warm_start_refuses_another_architecture_or_gradient(tmp_path):
    _saved_model(tmp_path / "m", embed_dim=64, pos_embed="sincos")
    with pytest.raises(ConfigError, match=r"model.embed_dim 64 \(checkpoint\) vs 32 \(config\), model.pos_embed"):
        warm_start(_warm_cfg(tmp_path / "m"), {})
    _saved_model(tmp_path / "same")
    np.savetxt(tmp_path / "g.csv", np.random.default_rng(0).normal(size=(R, 8)), delimiter=",")
    with pytest.raises(ConfigError, match="is not the gradient meta.read_checkpoint"):
        warm_start(_warm_cfg(tmp_path / "same", f"data.gradient_csv_path={tmp_path / 'g.csv'}"), {})
    with pytest.raises(ConfigError, match="no such model folder"):
        warm_start(_warm_cfg(tmp_path / "missing"), {})


def test_warm_start_compares_the_predictor_heads_resolved(tmp_path):
    """The predictor's head count is part of the architecture although no weight shape shows it: a source with other
    predictor heads is refused, and an explicit count equal to the encoder's matches an unset one."""
    _saved_model(tmp_path / "one", pred_num_heads=1)
    with pytest.raises(ConfigError, match=r"model.pred_num_heads 1 \(checkpoint\) vs 2 \(config\)"):
        warm_start(_warm_cfg(tmp_path / "one"), {})
    source = _saved_model(tmp_path / "two", pred_num_heads=2)
    assert _same_weights(warm_start(_warm_cfg(tmp_path / "two"), {}), source)


def test_warm_start_refuses_a_gradient_that_differs_slightly(tmp_path):
    """data.gradient_csv_path must hold the source's own gradient: the same values are accepted, values 0.01 away are
    not."""
    source = _saved_model(tmp_path / "m")
    gradient = source.gradient.numpy().astype(np.float64)
    np.savetxt(tmp_path / "same.csv", gradient, delimiter=",", fmt="%.9f")
    np.savetxt(tmp_path / "near.csv", gradient + 0.01, delimiter=",", fmt="%.9f")
    assert _same_weights(warm_start(_warm_cfg(tmp_path / "m", f"data.gradient_csv_path={tmp_path / 'same.csv'}"),
                                    {}), source)
    with pytest.raises(ConfigError, match="is not the gradient meta.read_checkpoint"):
        warm_start(_warm_cfg(tmp_path / "m", f"data.gradient_csv_path={tmp_path / 'near.csv'}"), {})


def test_warm_start_from_the_official_checkpoint(golden_dir):
    dims = {"model.num_rois": 450, "model.num_frames": 160, "model.embed_dim": 128, "model.depth": 2,
            "model.num_heads": 4, "model.pred_embed_dim": 64, "model.pred_depth": 2, "model.gradient_dim": 30}
    ckpt, grad = golden_dir / "jepa-ep1.pth.tar", golden_dir / "gradient_mapping_450.csv"
    overrides = [f"{k}={v}" for k, v in dims.items()] + ["meta.load_checkpoint=true", f"meta.read_checkpoint={ckpt}"]
    with pytest.raises(ConfigError, match="is a reference checkpoint: set data.gradient_csv_path"):
        warm_start(load_config(None, overrides), {})
    model = warm_start(load_config(None, [*overrides, f"data.gradient_csv_path={grad}"]), {})
    assert _same_weights(model, BrainJEPA.from_reference_checkpoint(ckpt, grad, num_heads=4))


@pytest.mark.parametrize(("cls", "key", "value", "message"), [
    (ModelConfig, "embed_dim", "32", "model.embed_dim must be an integer >= 1, got '32'"),
    (ModelConfig, "mlp_ratio", "4", "model.mlp_ratio must be a number > 0, got '4'"),
    (MaskConfig, "min_keep", "4", "mask.min_keep must be an integer"),
    (DataConfig, "batch_size", "8", "data.batch_size must be an integer")])
def test_a_string_for_a_numeric_field_is_refused_when_built_in_python(cls, key, value, message):
    """Built directly (not from a file), a config with a string for a number fails by name, not as a TypeError
    later (`dim % 4`); a field whose type admits a word still takes it (data.input_gain 'auto')."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        cls(**{key: value})
    assert DataConfig(input_gain="auto").input_gain == "auto"


@pytest.mark.parametrize(("cls", "key", "section"), [(DataConfig, "pin_mem", "data"),
                                                     (ModelConfig, "qkv_bias", "model")])
def test_a_flag_built_in_python_takes_only_true_or_false(cls, key, section):
    """A bool field given "false" (or 0) would read as True (or be taken silently): refused by name instead."""
    for value in ("false", 0):
        with pytest.raises(ConfigError, match=re.escape(f"{section}.{key} must be true or false, got {value!r}")):
            cls(**{key: value})
    assert getattr(cls(**{key: False}), key) is False


@pytest.mark.parametrize(("cls", "key", "value", "message"), [
    (MaskConfig, "min_keep", True, "mask.min_keep must be an integer >= 1, got True"),
    (ModelConfig, "mlp_ratio", True, "model.mlp_ratio must be a number > 0, got True"),
    (MaskConfig, "enc_mask_scale", (False, True), "mask.enc_mask_scale must be two numbers"),
])
def test_a_boolean_for_a_numeric_field_is_refused_when_built_in_python(cls, key, value, message):
    """Built directly, a config with True for a number is refused by name, not taken as the number 1."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        cls(**{key: value})


@pytest.mark.parametrize("override", ["data.batch_size=1.5", "mask.min_keep=4.7"])
def test_a_fraction_for_an_integer_key_is_refused(override):
    """An integer key given 1.5 is refused by name, not truncated to another value (a batch of 1)."""
    key, value = override.split("=")
    with pytest.raises(ConfigError, match=f"{re.escape(key)} has value {re.escape(value)}"):
        load_config(None, [override])
