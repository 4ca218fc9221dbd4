"""The model at shapes other than the golden one: agreement with a naive re-statement, gradients, switches."""

from __future__ import annotations

import pytest
import torch

import naive_reference as naive
from brainjepa import BrainJEPA, ModelConfig, model_config
from brainjepa.errors import ConfigError
from brainjepa.models.layers import Attention, DropPath, set_fused_attn

SHAPES = [
    dict(num_rois=37, num_frames=48, patch_size=8, embed_dim=48, depth=2, num_heads=3, pred_embed_dim=24,
         pred_depth=1, gradient_dim=5),
    dict(num_rois=20, num_frames=64, patch_size=16, embed_dim=64, depth=3, num_heads=8, pred_embed_dim=32,
         pred_depth=2, pred_num_heads=2, gradient_dim=30, mlp_ratio=2.0),
]


def _model(seed=0, **kw) -> BrainJEPA:
    torch.manual_seed(seed)
    cfg = ModelConfig(**kw)
    model = BrainJEPA(cfg, torch.randn(cfg.num_rois, cfg.gradient_dim))
    # random biases and LayerNorm affine so the comparison exercises every term
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name or "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _indices(B, N, K, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(N, generator=g)[:K] for _ in range(B)])


@pytest.mark.parametrize("shape", SHAPES, ids=["R37-T48-p8", "R20-T64-p16"])
def test_matches_naive_reference(shape):
    model = _model(**shape).eval()
    cfg = model.config
    x = torch.randn(2, cfg.num_rois, cfg.num_frames)
    ctx = _indices(2, cfg.num_patches, 30, 1)
    tgt = _indices(2, cfg.num_patches, 17, 2)
    grad = model.gradient
    enc_sd = {k: v for k, v in model.encoder.state_dict().items()}
    pred_sd = {k: v for k, v in model.predictor.state_dict().items()}
    with torch.no_grad():
        full = model.encoder(x)
        assert full.shape == (2, cfg.num_patches, cfg.embed_dim)
        torch.testing.assert_close(full, naive.encoder(enc_sd, cfg, x, grad), atol=1e-5, rtol=1e-4)
        z = model.encoder(x[:, None], ctx)  # [B, 1, R, T] accepted too
        torch.testing.assert_close(z, naive.encoder(enc_sd, cfg, x, grad, ctx), atol=1e-5, rtol=1e-4)
        p = model.predictor(z, ctx, tgt)
        assert p.shape == (2, 17, cfg.embed_dim)
        torch.testing.assert_close(p, naive.predictor(pred_sd, cfg, z, ctx, tgt, grad), atol=1e-5, rtol=1e-4)


def test_fused_and_manual_attention_agree():
    model = _model(**SHAPES[1]).eval()
    x = torch.randn(2, 20, 64)
    with torch.no_grad():
        fused = model.encoder(x)
        model.set_fused_attn(False)
        torch.testing.assert_close(model.encoder(x), fused, atol=1e-5, rtol=1e-5)


def test_fused_switch_env(monkeypatch):
    monkeypatch.setenv("BRAINJEPA_FUSED_ATTN", "0")
    assert not _model(**SHAPES[0]).encoder.blocks[0].attn.fused


def test_one_attention_switch_reaches_any_module():
    """`set_fused_attn` flips every attention layer of the module it is given (an encoder alone too), nothing
    outside it; `BrainJEPA.set_fused_attn` is the same switch."""
    model = _model(**SHAPES[1])
    set_fused_attn(model.encoder, False)
    assert _paths(model.encoder) == {False} and _paths(model.predictor) == {True}
    model.set_fused_attn(False)
    assert _paths(model) == {False}
    model.set_fused_attn()
    assert _paths(model) == {True}


def _paths(net: torch.nn.Module) -> set[bool]:
    return {m.fused for m in net.modules() if isinstance(m, Attention)}


def test_every_trainable_parameter_gets_a_gradient_and_target_none():
    model = _model(**SHAPES[0]).train()
    cfg = model.config
    out = model(torch.randn(2, cfg.num_rois, cfg.num_frames), _indices(2, cfg.num_patches, 30, 1),
                _indices(2, cfg.num_patches, 17, 2))
    out.loss.backward()
    for name, p in model.named_parameters():
        if name.startswith("target_encoder"):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_grad_checkpointing_switch_reaches_encoder_and_predictor():
    """`BrainJEPA.set_grad_checkpointing` turns checkpointing on and off in both trained networks."""
    model = _model(**SHAPES[0])
    model.set_grad_checkpointing()
    assert model.encoder.grad_checkpointing and model.predictor.grad_checkpointing
    model.set_grad_checkpointing(False)
    assert not model.encoder.grad_checkpointing and not model.predictor.grad_checkpointing


def test_grad_checkpointing_changes_nothing():
    model = _model(**SHAPES[1]).train()
    x = torch.randn(2, 20, 64)
    ctx, tgt = _indices(2, 80, 30, 1), _indices(2, 80, 17, 2)
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(enable)
        model(x, ctx, tgt).loss.backward()
        grads.append(model.encoder.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_drop_path_only_in_training():
    model = _model(drop_path_rate=0.5, **SHAPES[1])
    x = torch.randn(4, 20, 64)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encoder(x), model.encoder(x))
        model.train()
        assert not torch.allclose(model.encoder(x), model.encoder(x))


def test_drop_path_keeps_the_expected_output():
    """A kept residual branch is scaled by 1 / (1 - p), so in training E[DropPath(x)] = x: with p = 0.5 every
    sample is 0 or 2x, about half of each."""
    torch.manual_seed(0)
    x = torch.rand(4000, 3, 5) + 0.5
    out = DropPath(0.5).train()(x)
    kept = (out != 0).flatten(1).all(1)
    assert torch.equal(out[~kept], torch.zeros_like(out[~kept])) and torch.allclose(out[kept], 2 * x[kept])
    assert abs(kept.float().mean().item() - 0.5) < 0.04  # sd 0.008
    assert out.mean().item() == pytest.approx(x.mean().item(), rel=0.05)
    assert torch.equal(DropPath(0.5).eval()(x), x)


def test_sincos_position_mode_is_fixed():
    model = _model(pos_embed="sincos", **SHAPES[0])
    pe = model.encoder.pos_embed()
    assert not pe.requires_grad
    half = model.config.embed_dim // 2
    # ROI r, time t: temporal half depends on t only, spatial half on r only
    P = model.config.num_time_patches
    torch.testing.assert_close(pe[0 * P + 2, :half], pe[5 * P + 2, :half])
    torch.testing.assert_close(pe[3 * P + 0, half:], pe[3 * P + 4, half:])
    assert not torch.allclose(pe[0, half:], pe[P, half:])


def test_bf16_autocast_on_cpu():
    model = _model(**SHAPES[1]).train()
    x = torch.randn(2, 20, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, _indices(2, 80, 30, 1), _indices(2, 80, 17, 2))
    assert out.prediction.dtype == torch.bfloat16 and out.loss.dtype == torch.float32
    out.loss.backward()
    assert torch.isfinite(out.loss)


def test_input_and_config_errors():
    model = _model(**SHAPES[0])
    with pytest.raises(ValueError, match=r"takes a torch.Tensor \[B, 37, 48\]"):
        model.encoder(torch.randn(2, 36, 48))
    with pytest.raises(ValueError, match=r"got shape \[2, 2, 37, 48\]"):  # [B, 1, R, T] only: no channel dropped
        model.encoder(torch.randn(2, 2, 37, 48))
    with pytest.raises(ConfigError, match="multiple of model.patch_size"):
        ModelConfig(num_frames=50, patch_size=16)
    with pytest.raises(ConfigError, match="divisible by its number of heads"):
        ModelConfig(embed_dim=100, num_heads=3)
    with pytest.raises(ConfigError, match=r"model.embed_dim \(18\) must be divisible by 4"):
        ModelConfig(embed_dim=18, num_heads=2)
    with pytest.raises(ConfigError, match=r"model.pred_embed_dim \(18\) must be divisible by 4"):
        ModelConfig(pred_embed_dim=18, pred_num_heads=2)
    with pytest.raises(ConfigError, match=r"model.pred_embed_dim \(20\) must be divisible by its number of heads"):
        ModelConfig(pred_embed_dim=20, pred_num_heads=3)
    with pytest.raises(ConfigError, match=r"model.pos_embed must be one of \['mapping', 'sincos'\], got 'learned'"):
        ModelConfig(pos_embed="learned")
    with pytest.raises(ConfigError, match="unknown model config key.*model.embed_dims"):
        ModelConfig.from_dict({"embed_dims": 3})
    with pytest.raises(ConfigError, match="unknown model 'vit_huge'"):
        model_config("vit_huge")
    with pytest.raises(ValueError, match=r"gradient must have shape \[37, 5\]"):
        BrainJEPA(model.config, torch.randn(36, 5))
    with pytest.raises(ValueError, match="gradient contains NaN or Inf"):
        BrainJEPA(model.config, torch.randn(37, 5).index_fill_(0, torch.tensor([3]), float("nan")))


def test_indices_of_another_batch_size_are_refused():
    """Token indices [B', K] with B' other than the input's batch are refused by name, not broadcast or gathered
    for the wrong samples."""
    model = _model(**SHAPES[0])
    cfg = model.config
    x = torch.randn(2, cfg.num_rois, cfg.num_frames)
    ctx, tgt = _indices(3, cfg.num_patches, 30, 1), _indices(2, cfg.num_patches, 17, 2)
    with pytest.raises(ValueError, match=r"with B = 2 \(the input's batch\), got shape \[3, 30\]"):
        model(x, ctx, tgt)


def test_predictor_refuses_context_features_it_cannot_take():
    """The predictor takes encoder features z [B, K, D] whose K matches context_idx: features of another width
    or count are a ValueError naming what it takes, not a matmul or concatenation error."""
    model = _model(**SHAPES[0])
    ctx, tgt = _indices(2, model.config.num_patches, 30, 1), _indices(2, model.config.num_patches, 17, 2)
    with pytest.raises(ValueError, match=r"context features z \[B, K, 48\], got \[2, 30, 24\]"):
        model.predictor(torch.randn(2, 30, 24), ctx, tgt)
    with pytest.raises(ValueError, match=r"context_idx \[2, 30\] does not match z \[2, 29\]"):
        model.predictor(torch.randn(2, 29, 48), ctx, tgt)
    model.predictor.train()  # on a CPU the values are checked in training too (the check costs no sync there)
    with pytest.raises(ValueError, match=r"target_idx must be .* got values from 0 to 999"):
        model.predictor(torch.randn(2, 30, 48), ctx, torch.tensor([[0, 999]] * 2))


def test_presets():
    assert model_config("vit_tiny").embed_dim == 192
    cfg = model_config("vit_small", num_rois=100, pred_depth=2)
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.num_rois, cfg.pred_depth) == (384, 12, 6, 100, 2)
    assert model_config("vit_large").depth == 24 and model_config("vit_base").num_heads == 12
    # the reference's vision_transformer.py sizes (width, depth, heads)
    assert {name: tuple(model_config(name).to_dict()[k] for k in ("embed_dim", "depth", "num_heads"))
            for name in ("vit_tiny", "vit_small", "vit_base", "vit_large")} == {
        "vit_tiny": (192, 12, 3), "vit_small": (384, 12, 6), "vit_base": (768, 12, 12), "vit_large": (1024, 24, 16)}
    model = BrainJEPA(model_config("vit_tiny", num_rois=10, num_frames=32, depth=1, pred_depth=1), torch.randn(10, 30))
    # the frozen sin-cos table is a (derived, unsaved) buffer, not a parameter
    assert any(k.endswith("pos_embed.temporal") for k, _ in model.named_buffers())
    assert not any("temporal" in k for k, _ in model.named_parameters())
    assert not any("temporal" in k for k in model.state_dict())


@pytest.mark.parametrize("fused", [True, False])
def test_forward_at_equals_full_forward_gathered(fused):
    """The target path updates only the selected tokens in the last block; results must not change."""
    model = _model(**SHAPES[1]).eval()
    model.set_fused_attn(fused)
    x = torch.randn(3, 20, 64)
    idx = _indices(3, 80, 23, 5)
    with torch.no_grad():
        full = model.encoder(x)
        expected = torch.stack([full[b, idx[b]] for b in range(3)])
        torch.testing.assert_close(model.encoder.forward_at(x, idx), expected, atol=1e-5, rtol=1e-5)


def test_heads_for_matches_width_and_depth():
    """Head counts are not visible in weights: a checkpoint is given a preset's heads only when both its width and
    its depth are the preset's; a 6-block 768-wide encoder is no ViT-B."""
    from brainjepa.models.registry import heads_for

    assert heads_for(768, 12) == 12 and heads_for(1024, 24) == 16
    assert heads_for(768, 6) is None
    assert heads_for(1024, 12) is None
    assert heads_for(100, 12) is None
