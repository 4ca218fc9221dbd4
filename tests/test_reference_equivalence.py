"""Our model, loaded with the reference's weights, reproduces the reference's outputs and one training step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, ModelConfig
from brainjepa.models.convert import MODULES, convert_reference_state_dict

FWD_TOL = 1e-4
STEP_TOL = 1e-5


def _small_config(golden_dir) -> ModelConfig:
    c = json.loads((golden_dir / "reference_small.json").read_text())["config"]
    return ModelConfig(
        num_rois=c["rois"], num_frames=c["frames"], patch_size=c["patch_size"], embed_dim=c["embed_dim"],
        depth=c["depth"], num_heads=c["num_heads"], pred_embed_dim=c["pred_embed_dim"], pred_depth=c["pred_depth"],
        mlp_ratio=c["mlp_ratio"], qkv_bias=c["qkv_bias"], norm_eps=c["ln_eps"], pos_embed=c["add_w"],
        gradient_dim=c["gradient_dims"],
    )


def _state_from(golden, prefix: str) -> dict[str, torch.Tensor]:
    state = {}
    for module in MODULES:
        sd = {k[len(f"{prefix}.{module}."):]: v for k, v in golden.items() if k.startswith(f"{prefix}.{module}.")}
        weights, _ = convert_reference_state_dict(module, sd)
        state.update({f"{module}.{k}": v for k, v in weights.items()})
    return state


def _from_before(golden, golden_dir) -> BrainJEPA:
    model = BrainJEPA(_small_config(golden_dir), golden["gradient"])
    state = _state_from(golden, "before")
    state.update({f"{m}.pos_embed.gradient": golden["gradient"] for m in MODULES})
    model.load_state_dict(state, strict=True)
    return model


def _from_checkpoint(golden, golden_dir) -> BrainJEPA:
    gradient = np.loadtxt(golden_dir / "gradient_mapping_450.csv", delimiter=",")
    return BrainJEPA.from_reference_checkpoint(golden_dir / "jepa-ep1.pth.tar", gradient, num_heads=4)


@pytest.fixture(params=["before", "checkpoint"])
def model(request, golden, golden_dir) -> BrainJEPA:
    build = _from_before if request.param == "before" else _from_checkpoint
    return build(golden, golden_dir)


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def test_checkpoint_config_is_inferred(golden, golden_dir):
    m = _from_checkpoint(golden, golden_dir)
    assert m.config == _small_config(golden_dir)


def test_positional_embeddings(model, golden):
    assert _max_err(model.encoder.pos_embed(), golden["pos_embed_encoder"]) < FWD_TOL
    assert _max_err(model.predictor.pos_embed(), golden["pos_embed_predictor"]) < FWD_TOL


@pytest.mark.parametrize("fused", [True, False])
def test_forward_outputs(model, golden, fused):
    model.set_fused_attn(fused)
    model.eval()
    x, ctx, tgt = golden["input"], golden["mask_enc"], golden["mask_pred"]
    with torch.no_grad():
        assert _max_err(model.encoder(x), golden["encoder_full"]) < FWD_TOL
        assert _max_err(model.encoder(x, ctx), golden["encoder_context"]) < FWD_TOL
        out = model(x, ctx, tgt)
    assert _max_err(out.prediction, golden["predictor_out"]) < FWD_TOL
    assert _max_err(out.target, golden["target"]) < FWD_TOL
    assert abs(out.loss.item() - golden["loss"].item()) < FWD_TOL


@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
def test_one_adamw_step_and_ema(model, golden, fused):
    """One AdamW step with the reference's groups plus one EMA update reproduces after_step.*
    (fused is what the training loop uses)."""
    model.train()
    opt = torch.optim.AdamW(model.param_groups(weight_decay=0.04), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                            fused=fused)
    out = model(golden["input"], golden["mask_enc"], golden["mask_pred"])
    assert abs(out.loss.item() - golden["train_step_loss"].item()) < FWD_TOL
    out.loss.backward()
    opt.step()
    model.update_target(0.996)
    expected = _state_from(golden, "after_step")
    ours = model.state_dict()
    assert set(expected) <= set(ours)
    errors = {k: _max_err(ours[k], v) for k, v in expected.items()}
    worst = max(errors, key=errors.get)
    assert errors[worst] < STEP_TOL, f"{worst}: {errors[worst]}"
    # the step must have changed the weights, or the comparison above would prove nothing
    before = _state_from(golden, "before")
    assert _max_err(before["encoder.blocks.0.attn.qkv.weight"], expected["encoder.blocks.0.attn.qkv.weight"]) > 1e-4
