"""Saving and loading models: our safetensors format (bit-exact) and the reference's checkpoint."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, ModelConfig
from brainjepa.errors import CheckpointError

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
