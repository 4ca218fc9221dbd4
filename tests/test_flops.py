"""Analytic step FLOPs against torch's own count, and the memory estimate's direction."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from brainjepa import BrainJEPA, model_config
from brainjepa.models.flops import parameter_count, step_flops, step_memory_bytes


def _tiny(pos_embed: str = "mapping"):
    return model_config("vit_tiny", num_rois=12, num_frames=48, embed_dim=32, depth=2, num_heads=2,
                        pred_embed_dim=16, pred_depth=2, gradient_dim=4, pos_embed=pos_embed)


def _counted(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("pos_embed", ["mapping", "sincos"])
def test_step_flops_match_torch_flop_counter(pos_embed):
    cfg = _tiny(pos_embed)
    torch.manual_seed(0)
    model = BrainJEPA(cfg, torch.randn(cfg.num_rois, cfg.gradient_dim))
    model.set_fused_attn(False)  # the explicit attention products, which the counter sees on every device
    B, kc, kt = 3, 11, 7
    perm = torch.stack([torch.randperm(cfg.num_patches) for _ in range(B)])
    ctx, tgt = perm[:, :kc], perm[:, kc:kc + kt]
    x = torch.randn(B, cfg.num_rois, cfg.num_frames)

    ours = step_flops(cfg, kc, kt, batch_size=B)
    assert _counted(lambda: model.target_features(x, tgt)) == pytest.approx(ours.target, rel=1e-3)
    assert _counted(lambda: model(x, ctx, tgt).loss.backward()) == pytest.approx(ours.total, rel=1e-3)


def test_step_flops_grow_with_the_masks_and_refuse_impossible_lengths():
    cfg = _tiny()
    small, large = step_flops(cfg, 5, 5), step_flops(cfg, 20, 20)
    assert small.target < large.target and small.context < large.context and small.predictor < large.predictor
    assert step_flops(cfg, 5, 5, batch_size=4).context > 3.9 * small.context
    with pytest.raises(ValueError, match="k_context"):
        step_flops(cfg, cfg.num_patches + 1, 5)


def test_parameter_count_matches_the_model():
    cfg = _tiny()
    model = BrainJEPA(cfg, torch.randn(cfg.num_rois, cfg.gradient_dim))
    assert parameter_count(cfg) == (sum(p.numel() for p in model.encoder.parameters()),
                                    sum(p.numel() for p in model.predictor.parameters()))


def test_memory_estimate_follows_batch_precision_and_checkpointing():
    cfg = model_config("vit_base")
    base = step_memory_bytes(cfg, 800, 900, 32)
    assert step_memory_bytes(cfg, 800, 900, 64) > base
    assert step_memory_bytes(cfg, 800, 900, 32, bf16=False) > base
    assert step_memory_bytes(cfg, 800, 900, 32, grad_checkpointing=True) < base
