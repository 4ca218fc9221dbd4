"""Saving and loading models: our safetensors format (bit-exact) and the reference's checkpoint."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, ModelConfig
from brainjepa.errors import CheckpointError
from brainjepa.models.config import PRESETS
from brainjepa.models.convert import (
    convert_reference_state_dict,
    infer_config,
    read_reference_checkpoint,
    reference_rois,
)

CFG = ModelConfig(num_rois=12, num_frames=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                  pred_embed_dim=16, pred_depth=1, gradient_dim=4)


def _trained_like_model() -> BrainJEPA:
    torch.manual_seed(0)
    model = BrainJEPA(CFG, torch.randn(12, 4), metadata={"normalization": {"kind": "robust", "median": [1.0]}})
    with torch.no_grad():  # target differs from encoder, as after training
        for p in model.target_encoder.parameters():
            p.add_(torch.randn_like(p))
    return model


def test_save_pretrained_round_trip_is_bit_exact(tmp_path):
    model = _trained_like_model()
    out = model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    loaded = BrainJEPA.from_pretrained(out)
    assert loaded.config == model.config
    assert loaded.metadata == model.metadata
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    x = torch.randn(2, 12, 32)
    with torch.no_grad():
        assert torch.equal(model.eval().encoder(x), loaded.eval().encoder(x))
    assert torch.equal(loaded.gradient, model.gradient)


@pytest.mark.parametrize(("key", "value"), [("embed_dim", "32"), ("num_frames", "16"), ("qkv_bias", "false"),
                                          ("depth", 2.0), ("pred_num_heads", True), ("pos_embed", "fourier")])
def test_a_config_json_value_of_the_wrong_type_is_refused_naming_the_key(tmp_path, key, value):
    """A hand-edited config.json is untyped: a string for an int would reach `dim % 4` as a TypeError, and
    qkv_bias "false" would be taken as True. Each is refused in one line naming the key and the type expected."""
    folder = _trained_like_model().save_pretrained(tmp_path / "m")
    record = json.loads((folder / "config.json").read_text())
    record["model"][key] = value
    (folder / "config.json").write_text(json.dumps(record))
    expected = f"^{re.escape(str(folder / 'config.json'))}: config key model.{key} has value {re.escape(repr(value))}"
    with pytest.raises(CheckpointError, match=expected + "; expected"):
        BrainJEPA.from_pretrained(folder)


def test_a_numeric_string_for_a_float_key_of_config_json_is_read_as_the_number(tmp_path):
    """As in a YAML config ('1e-3' is a string in YAML 1.1), a float key takes a numeric string."""
    model = _trained_like_model()
    folder = model.save_pretrained(tmp_path / "m")
    record = json.loads((folder / "config.json").read_text())
    record["model"]["mlp_ratio"] = str(record["model"]["mlp_ratio"])
    (folder / "config.json").write_text(json.dumps(record))
    assert BrainJEPA.from_pretrained(folder).config == model.config


def test_from_pretrained_accepts_run_folder_with_model_subfolder(tmp_path):
    model = _trained_like_model()
    model.save_pretrained(tmp_path / "run" / "model")
    assert BrainJEPA.from_pretrained(tmp_path / "run").config == CFG


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a brainjepa model folder"):
        BrainJEPA.from_pretrained(tmp_path)
    _trained_like_model().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read brainjepa model"):
        BrainJEPA.from_pretrained(tmp_path)
    _trained_like_model().save_pretrained(tmp_path)
    meta = json.loads((tmp_path / "config.json").read_text())
    meta["model"]["embed_dim"] = 64
    (tmp_path / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        BrainJEPA.from_pretrained(tmp_path)


def test_an_unfinished_run_is_refused_naming_its_newest_checkpoint(tmp_path):
    """A run folder with checkpoints but no model/ is refused, naming the newest checkpoint that is a model folder
    (not the oldest, nor a step folder without a config.json)."""
    model = _trained_like_model()
    for step in (2, 10):
        model.save_pretrained(tmp_path / "run" / "checkpoints" / f"step-{step:08d}")
    (tmp_path / "run" / "checkpoints" / "step-00000011").mkdir()  # being written: no config.json yet
    with pytest.raises(CheckpointError, match=r"unfinished training run.*the newest is \S*step-00000010\b"):
        BrainJEPA.from_pretrained(tmp_path / "run")


def test_weights_with_an_extra_tensor_are_refused_naming_it(tmp_path):
    """A model.safetensors holding a tensor the model does not have is a CheckpointError that names the key, not
    torch's own load_state_dict error."""
    from safetensors.torch import load_file, save_file

    folder = _trained_like_model().save_pretrained(tmp_path / "m")
    state = load_file(folder / "model.safetensors")
    state["encoder.extra_scale"] = torch.ones(3)
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"unexpected \['encoder.extra_scale'\]"):
        BrainJEPA.from_pretrained(folder)


def test_reference_checkpoint_uses_all_three_networks(golden_dir, golden):
    grad = np.loadtxt(golden_dir / "gradient_mapping_450.csv", delimiter=",")
    model = BrainJEPA.from_reference_checkpoint(golden_dir / "jepa-ep1.pth.tar", grad, num_heads=4)
    ref = golden["before.target_encoder.blocks.1.mlp.fc2.weight"]
    assert torch.equal(model.target_encoder.blocks[1].mlp.fc2.weight, ref)
    assert torch.equal(model.predictor.mask_token, golden["before.predictor.mask_token"])
    torch.testing.assert_close(model.gradient, torch.as_tensor(grad, dtype=torch.float32))


def test_reference_checkpoint_errors(golden_dir, tmp_path):
    grad = np.loadtxt(golden_dir / "gradient_mapping_450.csv", delimiter=",")
    ckpt = golden_dir / "jepa-ep1.pth.tar"
    with pytest.raises(CheckpointError, match="cannot tell the number of attention heads"):
        BrainJEPA.from_reference_checkpoint(ckpt, grad)
    with pytest.raises(CheckpointError, match="the gradient has 449 rows .* was trained with 450 ROIs"):
        BrainJEPA.from_reference_checkpoint(ckpt, grad[:449], num_heads=4)
    with pytest.raises(CheckpointError, match="gradient has 29 components"):
        BrainJEPA.from_reference_checkpoint(ckpt, grad[:, :29], num_heads=4)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        BrainJEPA.from_reference_checkpoint(tmp_path / "missing.pth.tar", grad)
    bad = tmp_path / "bad.pth.tar"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        BrainJEPA.from_reference_checkpoint(bad, grad)


def test_load_dispatches_on_what_the_user_gives(golden_dir, tmp_path):
    model = _trained_like_model()
    model.save_pretrained(tmp_path / "run" / "model")
    assert BrainJEPA.load(tmp_path / "run").config == CFG
    grad_csv = golden_dir / "gradient_mapping_450.csv"
    ref = BrainJEPA.load(golden_dir / "jepa-ep1.pth.tar", gradient=grad_csv, num_heads=4)
    assert ref.config.embed_dim == 128 and ref.config.num_rois == 450
    with pytest.raises(CheckpointError, match="needs its gradient CSV"):
        BrainJEPA.load(golden_dir / "jepa-ep1.pth.tar")
    with pytest.raises(CheckpointError, match="no such model folder"):
        BrainJEPA.load(tmp_path / "nope")
    # a folder, a model object: they carry their own gradient and heads, so the reference options are refused
    for given in (tmp_path / "run", model):
        with pytest.raises(CheckpointError, match=r"^gradient= \(--gradient\) and num_heads=: for an official "):
            BrainJEPA.load(given, gradient=grad_csv, num_heads=4)
    with pytest.raises(CheckpointError, match=r"^num_heads=: .* the given model carries its own"):
        BrainJEPA.load(model, num_heads=4)


def test_load_gives_a_folders_model_in_eval_mode(tmp_path):
    """`BrainJEPA.load` returns a model ready for inference (eval mode: drop path off) from a model folder and
    from a run folder, while a BrainJEPA given to it is returned as it is."""
    model = _trained_like_model().train()
    model.save_pretrained(tmp_path / "run" / "model")
    for folder in (tmp_path / "run" / "model", tmp_path / "run"):
        loaded = BrainJEPA.load(folder)
        assert not any(m.training for m in loaded.modules()), folder
    assert BrainJEPA.load(model) is model and model.training


def test_reference_checkpoint_errors_name_the_cause(golden_dir, tmp_path, caplog):
    ckpt, csv = golden_dir / "jepa-ep1.pth.tar", golden_dir / "gradient_mapping_450.csv"
    grad = np.loadtxt(csv, delimiter=",")
    np.savetxt(tmp_path / "g300.csv", grad[:300], delimiter=",")  # 4,500 tokens divide by 300 ROIs too
    with pytest.raises(CheckpointError, match=r"^gradient .*g300\.csv has 300 rows \(one per ROI\), but "
                       r"jepa-ep1\.pth\.tar was trained with 450 ROIs"):
        BrainJEPA.load(ckpt, gradient=tmp_path / "g300.csv", num_heads=4)
    with pytest.raises(CheckpointError, match="num_heads must be a positive divisor of the encoder width 128, got 0"):
        BrainJEPA.load(ckpt, gradient=csv, num_heads=0)
    with pytest.raises(CheckpointError, match=r"matches no preset.*BrainJEPA.load\(path, gradient=..., num_heads=N\)"):
        BrainJEPA.load(ckpt, gradient=csv)
    raw = torch.load(ckpt, weights_only=True)
    del raw["target_encoder"]
    torch.save(raw, tmp_path / "no_target.pth.tar")
    model = BrainJEPA.load(tmp_path / "no_target.pth.tar", gradient=csv, num_heads=4)
    assert "holds no target_encoder: the target (EMA) encoder" in caplog.text
    assert all(torch.equal(a, b) for a, b in zip(model.encoder.state_dict().values(),
                                                 model.target_encoder.state_dict().values(), strict=True))


def test_a_reference_checkpoint_with_another_fixed_table_is_refused(golden_dir, tmp_path):
    """The reference stores its fixed temporal sin-cos table; one that differs from ours (another frame layout)
    is refused rather than loaded with our table in its place."""
    raw = torch.load(golden_dir / "jepa-ep1.pth.tar", weights_only=True)
    key = next(k for k in raw["encoder"] if k.endswith("emb_h"))
    raw["encoder"][key] = raw["encoder"][key] + 0.1  # still periodic over the ROIs: only the code differs
    torch.save(raw, tmp_path / "other_table.pth.tar")
    with pytest.raises(CheckpointError, match="fixed positional table .*emb_h differs"):
        BrainJEPA.from_reference_checkpoint(tmp_path / "other_table.pth.tar",
                                            golden_dir / "gradient_mapping_450.csv", num_heads=4)


def test_untrusted_pickle_is_refused(tmp_path):
    """A checkpoint that would run code when unpickled is rejected (weights_only loading)."""

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    bad = tmp_path / "evil.pth.tar"
    torch.save({"encoder": Evil()}, bad)
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        BrainJEPA.from_reference_checkpoint(bad, np.zeros((12, 4)))
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------------- reading the layout
def _reference_sds(*, embed_dim: int = 32, depth: int = 2, pred_dim: int = 16, pred_depth: int = 1, rois: int = 5,
                   patches: int = 4, patch_size: int = 8, gradient_dim: int | None = 7,
                   qkv_bias: bool = True) -> dict[str, dict[str, torch.Tensor]]:
    """The encoder / predictor state dicts of a reference checkpoint, as `read_reference_checkpoint` returns them
    (zeros of the reference's shapes; its fixed table holds the code of time patch t at every token roi * P + t).
    `gradient_dim=None`: the reference's sin-cos positions (no gradient mapping)."""
    torch.manual_seed(0)
    enc: dict[str, torch.Tensor] = {"patch_embed.proj.weight": torch.zeros(embed_dim, 1, 1, patch_size),
                                    "pos_embed_proj.emb_h": torch.randn(patches, embed_dim // 2).repeat(rois, 1)}
    if gradient_dim is not None:
        enc["pos_embed_proj.predictor_pos_embed_proj.weight"] = torch.zeros(embed_dim // 2, gradient_dim)
    for i in range(depth):
        enc[f"blocks.{i}.mlp.fc1.weight"] = torch.zeros(3 * embed_dim, embed_dim)
        if qkv_bias:
            enc[f"blocks.{i}.attn.qkv.bias"] = torch.zeros(3 * embed_dim)
    pred = {"predictor_embed.weight": torch.zeros(pred_dim, embed_dim)}
    pred.update({f"predictor_blocks.{i}.norm1.weight": torch.zeros(pred_dim) for i in range(pred_depth)})
    return {"encoder": enc, "predictor": pred}


def test_infer_config_reads_every_dimension_off_the_weights():
    cfg = infer_config(_reference_sds(), 5, num_heads=4, pred_num_heads=2)
    assert cfg == ModelConfig(num_rois=5, num_frames=32, patch_size=8, embed_dim=32, depth=2, num_heads=4,
                              mlp_ratio=3.0, qkv_bias=True, pred_embed_dim=16, pred_depth=1, pred_num_heads=2,
                              gradient_dim=7, pos_embed="mapping")
    sincos = infer_config(_reference_sds(gradient_dim=None, qkv_bias=False), 5, num_heads=4)
    assert (sincos.pos_embed, sincos.qkv_bias, sincos.gradient_dim) == ("sincos", False, ModelConfig().gradient_dim)
    assert sincos.pred_num_heads is None and sincos.predictor_heads == 4  # the encoder's, as in the reference


def test_infer_config_heads_and_token_count():
    """Heads are invisible in weights: an explicit count wins over a preset of the same width and depth, and must
    divide the width; the fixed table's tokens must divide by the gradient's ROIs; a missing tensor is named."""
    tiny = PRESETS["vit_tiny"]
    sds = _reference_sds(embed_dim=tiny["embed_dim"], depth=tiny["depth"], pred_dim=4 * tiny["embed_dim"])
    assert infer_config(sds, 5).num_heads == tiny["num_heads"]
    other = 2 * tiny["num_heads"]
    assert infer_config(sds, 5, num_heads=other).num_heads == other
    with pytest.raises(CheckpointError, match="num_heads must be a positive divisor of the encoder width 32, got 5"):
        infer_config(_reference_sds(), 5, num_heads=5)
    with pytest.raises(CheckpointError, match="checkpoint has 20 tokens, not a multiple of the gradient's 3 ROIs"):
        infer_config(_reference_sds(), 3, num_heads=4)
    for module, key in (("predictor", "predictor_embed.weight"), ("encoder", "blocks.0.mlp.fc1.weight")):
        sds = _reference_sds()
        del sds[module][key]
        with pytest.raises(CheckpointError, match=f"unexpected reference checkpoint layout: '{key}'"):
            infer_config(sds, 5, num_heads=4)


def test_reference_rois_reads_the_period_of_the_fixed_table():
    assert reference_rois(_reference_sds(rois=5, patches=4)) == 5
    distinct = torch.randn(8, 6)  # no row comes back: one ROI holding every patch
    assert reference_rois({"encoder": {"pos_embed_proj.emb_h": distinct}}) == 1
    uneven = distinct[:7].clone()
    uneven[3] = uneven[0]  # comes back after 3 rows, but 7 tokens are not whole periods
    assert reference_rois({"encoder": {"pos_embed_proj.emb_h": uneven}}) is None
    assert reference_rois({"encoder": {"pos_embed_proj.emb_h": torch.zeros(8)}}) is None  # not a table
    assert reference_rois({"encoder": {}}) is None


def test_both_fixed_tables_are_set_aside_not_loaded():
    sd = {"module.pos_embed_proj.emb_h": torch.zeros(4, 2), "pos_embed_proj.emb_w": torch.zeros(4, 2),
          "patch_embed.proj.weight": torch.zeros(8, 1, 1, 4)}
    weights, tables = convert_reference_state_dict("encoder", sd)
    assert set(tables) == {"module.pos_embed_proj.emb_h", "pos_embed_proj.emb_w"}
    assert set(weights) == {"patch_embed.proj.weight"} and weights["patch_embed.proj.weight"].shape == (8, 4)


def test_a_safetensors_conversion_reads_like_the_checkpoint(golden_dir, tmp_path):
    """`module.key` tensors under encoder. / predictor. / target_encoder. (other entries ignored) read as the same
    state dicts as the .pth.tar they were taken from."""
    from safetensors.torch import save_file

    ckpt = golden_dir / "jepa-ep1.pth.tar"
    raw = torch.load(ckpt, weights_only=True)
    flat = {f"{m}.{k}": v.contiguous() for m in ("encoder", "predictor", "target_encoder") for k, v in raw[m].items()}
    flat["epoch"] = torch.tensor(raw["epoch"])
    save_file(flat, str(tmp_path / "jepa.safetensors"))
    want, got = read_reference_checkpoint(ckpt), read_reference_checkpoint(tmp_path / "jepa.safetensors")
    assert got.keys() == want.keys() == {"encoder", "predictor", "target_encoder"}
    for module, sd in want.items():
        assert got[module].keys() == sd.keys() and all(torch.equal(got[module][k], v) for k, v in sd.items()), module
    no_ema = {k: v for k, v in flat.items() if not k.startswith("target_encoder.")}
    save_file(no_ema, str(tmp_path / "no_ema.safetensors"))
    assert read_reference_checkpoint(tmp_path / "no_ema.safetensors").keys() == {"encoder", "predictor"}


def _raising(err: Exception):
    def load(*args, **kwargs):
        raise err

    return load


def test_unreadable_checkpoints_are_one_line_naming_the_file(tmp_path, monkeypatch):
    (tmp_path / "empty.pth.tar").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth\.tar: cannot read checkpoint: empty file$"):
        read_reference_checkpoint(tmp_path / "empty.pth.tar")
    (tmp_path / "folder.pth.tar").mkdir()
    with pytest.raises(CheckpointError, match=r"folder\.pth\.tar: no such checkpoint file$"):
        read_reference_checkpoint(tmp_path / "folder.pth.tar")
    (tmp_path / "c.pth.tar").write_bytes(b"x")
    for raised, reason in ((RuntimeError("first line\nsecond line"), "RuntimeError: first line"),
                           (EOFError(), "EOFError: truncated file")):
        monkeypatch.setattr(torch, "load", _raising(raised))
        with pytest.raises(CheckpointError) as err:
            read_reference_checkpoint(tmp_path / "c.pth.tar")
        assert str(err.value) == f"{tmp_path / 'c.pth.tar'}: cannot read checkpoint ({reason})"
