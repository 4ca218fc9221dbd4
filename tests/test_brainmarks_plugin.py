"""The brainmarks plugin (src/brainmarks/models/brainjepa_wrapper.py): brainmarks' own smoke test in a
subprocess, then the transform and wrapper checked against hand-computed expectations.

Needs brainmarks (``pip install --no-deps brainmarks==0.1.1 templateflow==25.1.2 acres platformdirs``); pycortex
(``cortex``), which brainmarks imports at module level but never calls for parcellated data, is replaced by an
empty stub module when it is not installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, ModelConfig
from brainjepa.data.normalize import SampleZScore

if importlib.util.find_spec("brainmarks.models.registry") is None:  # our namespace portion alone is not brainmarks
    pytest.skip("brainmarks is not installed: pip install --no-deps brainmarks==0.1.1 templateflow==25.1.2 acres "
                "platformdirs", allow_module_level=True)

ROIS, FRAMES, DIM = 450, 32, 64
CFG = ModelConfig(num_rois=ROIS, num_frames=FRAMES, patch_size=16, embed_dim=DIM, depth=1, num_heads=1,
                  pred_embed_dim=32, pred_depth=1, gradient_dim=4)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny random 450-ROI model written by save_pretrained (D = 64: brainmarks' attention pool needs D >= 64)."""
    torch.manual_seed(0)
    model = BrainJEPA(CFG, np.random.default_rng(0).standard_normal((ROIS, 4)).astype(np.float32))
    return model.save_pretrained(tmp_path_factory.mktemp("bm") / "model")


def test_brainmarks_smoke_test_passes_offline(weights, tmp_path):
    env = {**os.environ, "BRAINJEPA_WEIGHTS": str(weights), "TEMPLATEFLOW_HOME": str(tmp_path / "templateflow"),
           "HF_HUB_OFFLINE": "1"}
    if importlib.util.find_spec("cortex") is None:
        (tmp_path / "stub").mkdir()
        (tmp_path / "stub" / "cortex.py").write_text('"""Stand-in for pycortex: brainmarks.nisc imports it."""\n')
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "stub"), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "brainmarks.models.test_models", "brainjepa"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "2 passed" in output, output[-3000:]  # the 16- and 160-frame dummy batches


def _plugin():
    from brainmarks.models import brainjepa_wrapper

    return brainjepa_wrapper


def _sample(raw: np.ndarray, tr: float) -> dict:
    """What brainmarks hands a transform: bold [T, D] z-scored per ROI, mean / std [1, D], tr."""
    mean, std = raw.mean(1, keepdims=True), raw.std(1, keepdims=True)
    return {"bold": torch.from_numpy(((raw - mean) / std).T.astype(np.float32)),
            "mean": torch.from_numpy(mean.T.astype(np.float32)), "std": torch.from_numpy(std.T.astype(np.float32)),
            "tr": tr, "target": 3}


def test_transform_undoes_zscore_resamples_and_normalises(weights):
    transform, wrapper = _plugin().brainjepa(weights=str(weights))
    rng = np.random.default_rng(1)
    raw = rng.standard_normal((ROIS, 200)) * rng.uniform(1, 5, (ROIS, 1)) + rng.uniform(-100, 100, (ROIS, 1))
    out = transform(_sample(raw, tr=1.0))
    # TR 1 s -> 2 s: every second frame; the 63-frame span is centred: start (200 - 63) // 2 = 68.
    expected = SampleZScore()(raw[:, 68:68 + 63:2])
    assert out["bold"].shape == (ROIS, FRAMES) and out["target"] == 3
    np.testing.assert_allclose(out["bold"].numpy(), expected, atol=2e-4)

    short = transform(_sample(raw[:, :16], tr=1.0))["bold"]  # frames 0, 2, ..., 14, then frame 15 repeated
    assert short.shape == (ROIS, FRAMES) and torch.equal(short[:, 8], short[:, -1])
    np.testing.assert_allclose(short.numpy(), SampleZScore()(raw[:, [*range(0, 16, 2), *[15] * 24]]), atol=2e-4)

    batch = torch.stack([out["bold"], short])
    emb = wrapper({"bold": batch})
    assert emb.cls_embeds is None and emb.reg_embeds is None
    assert emb.patch_embeds.shape == (2, ROIS * FRAMES // 16, DIM)
    reference = BrainJEPA.from_pretrained(weights).target_encoder
    with torch.no_grad():
        torch.testing.assert_close(emb.patch_embeds, reference(batch))
    assert wrapper.__space__ == "schaefer400_tians3"
    assert not any(p.requires_grad for p in wrapper.parameters()) and not wrapper.training


def test_official_checkpoint_through_the_environment(golden_dir, golden, monkeypatch):
    """The reference-format checkpoint + gradient CSV, named by environment variables, give the reference's
    encoder output (golden tensors made with the reference code)."""
    plugin = _plugin()
    monkeypatch.setenv(plugin.WEIGHTS_ENV, str(golden_dir / "jepa-ep1.pth.tar"))
    monkeypatch.setenv(plugin.GRADIENT_ENV, str(golden_dir / "gradient_mapping_450.csv"))
    monkeypatch.setenv(plugin.HEADS_ENV, "4")  # the golden model (width 128, depth 2) matches no preset
    _, wrapper = plugin.brainjepa(encoder="context")
    with torch.no_grad():
        tokens = wrapper({"bold": golden["input"]}).patch_embeds
    torch.testing.assert_close(tokens, golden["encoder_full"], rtol=1e-3, atol=1e-4)


def test_runs_are_resampled_to_the_models_own_frame_spacing(golden_dir, weights, monkeypatch):
    plugin = _plugin()
    monkeypatch.setenv(plugin.GRADIENT_ENV, str(golden_dir / "gradient_mapping_450.csv"))
    monkeypatch.setenv(plugin.HEADS_ENV, "4")
    official, _ = plugin.brainjepa(weights=str(golden_dir / "jepa-ep1.pth.tar"))
    assert official.window.target_tr == pytest.approx(2.2)  # the official model's UKB frame spacing
    assert plugin.brainjepa(weights=str(golden_dir / "jepa-ep1.pth.tar"), target_tr=2.0)[0].window.target_tr == 2.0
    with pytest.raises(ValueError, match="BRAINJEPA_GRADIENT and BRAINJEPA_NUM_HEADS .* apply to an official "
                       "jepa-ep.*pth.tar only, and .* is a model folder: unset them"):
        plugin.brainjepa(weights=str(weights))  # a folder carries its own: the settings would be ignored
    monkeypatch.delenv(plugin.GRADIENT_ENV)
    monkeypatch.delenv(plugin.HEADS_ENV)
    assert plugin.brainjepa(weights=str(weights))[0].window.target_tr == plugin.BRAINMARKS_TR  # no record


def test_plugin_errors(tmp_path, monkeypatch):
    plugin = _plugin()
    monkeypatch.delenv(plugin.WEIGHTS_ENV, raising=False)
    with pytest.raises(ValueError, match="set BRAINJEPA_WEIGHTS to a brainjepa model folder"):
        plugin.brainjepa()
    small = BrainJEPA(CFG.replace(num_rois=8), np.arange(32, dtype=np.float32).reshape(8, 4))
    small.save_pretrained(tmp_path / "small")
    monkeypatch.setenv(plugin.WEIGHTS_ENV, str(tmp_path / "small"))
    with pytest.raises(ValueError, match="has 8 ROIs but brainmarks' schaefer400_tians3 space has 450"):
        plugin.brainjepa()


def test_layer_option_returns_that_blocks_normed_tokens(golden_dir, golden, monkeypatch):
    plugin = _plugin()
    monkeypatch.setenv(plugin.WEIGHTS_ENV, str(golden_dir / "jepa-ep1.pth.tar"))
    monkeypatch.setenv(plugin.GRADIENT_ENV, str(golden_dir / "gradient_mapping_450.csv"))
    monkeypatch.setenv(plugin.HEADS_ENV, "4")
    _, wrapper = plugin.brainjepa(encoder="context", layer=0)  # the golden encoder has 2 blocks
    enc, x = wrapper.encoder, golden["input"]
    with torch.no_grad():
        tokens = wrapper({"bold": x}).patch_embeds
        by_hand = enc.norm(enc.blocks[0](enc.patch_embed(x[:, 0] if x.ndim == 4 else x) + enc.pos_embed()))
    torch.testing.assert_close(tokens, by_hand)
    assert not torch.allclose(tokens, golden["encoder_full"], atol=1e-3)
    with pytest.raises(ValueError, match=r"layer must be a block index in \[-2, 2\), got 2"):
        plugin.brainjepa(encoder="context", layer=2)
