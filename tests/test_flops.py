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


def test_step_flops_refuse_empty_masks_and_batches():
    """A mask of 0 tokens or a batch of 0 samples is no training step: refused, not counted as a cheap one."""
    cfg = _tiny()
    with pytest.raises(ValueError, match="k_context=0 must be between 1"):
        step_flops(cfg, 0, 5)
    with pytest.raises(ValueError, match="k_target=0 must be between 1"):
        step_flops(cfg, 5, 0)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        step_flops(cfg, 5, 5, batch_size=0)
    assert step_flops(cfg, 1, cfg.num_patches).total > 0


def test_memory_state_counts_the_bf16_weight_copies():
    """Model state (the part that does not grow with the batch) holds, with bf16 autocast, a bf16 copy of the
    weights of all three networks: 2 bytes per parameter of encoder, target encoder and predictor."""
    cfg = _tiny()
    enc, pred = parameter_count(cfg)

    def state(bf16: bool) -> int:  # memory is state + batch * activations: extrapolate to batch 0
        return 2 * step_memory_bytes(cfg, 10, 10, 1, bf16=bf16) - step_memory_bytes(cfg, 10, 10, 2, bf16=bf16)

    assert state(True) - state(False) == pytest.approx(2 * (2 * enc + pred), abs=4)


def test_memory_peak_of_small_masks_is_the_target_pass():
    """The target encoder runs over every token, whatever the masks: with tiny masks its pass sets the peak, so
    the estimate must not shrink with the masks below it."""
    cfg = model_config("vit_base")
    assert step_memory_bytes(cfg, 1, 1, 32) == step_memory_bytes(cfg, 4, 4, 32)
    assert step_memory_bytes(cfg, 1, 1, 64) > step_memory_bytes(cfg, 1, 1, 32)


def test_checkpointing_one_block_costs_more_than_it_saves():
    """Checkpointing keeps each block's fp32 input and recomputes one block at a time: with a single block per
    network that is more than keeping the block's activations, so the estimate must go up, not down."""
    cfg = model_config("vit_base", depth=1, pred_depth=1)
    half = cfg.num_patches // 2
    assert step_memory_bytes(cfg, half, half, 8, grad_checkpointing=True) > step_memory_bytes(cfg, half, half, 8)


def test_parameter_count_without_qkv_bias_matches_the_model():
    """qkv_bias=False drops the q, k and v biases of every block; the analytic count must follow the model."""
    cfg = model_config("vit_tiny", num_rois=12, num_frames=48, embed_dim=32, depth=2, num_heads=2,
                       pred_embed_dim=16, pred_depth=2, gradient_dim=4, qkv_bias=False)
    model = BrainJEPA(cfg, torch.randn(cfg.num_rois, cfg.gradient_dim))
    assert parameter_count(cfg) == (sum(p.numel() for p in model.encoder.parameters()),
                                    sum(p.numel() for p in model.predictor.parameters()))


def test_mapping_positions_are_counted_as_the_gradient_projection():
    """The 'mapping' positions cost one Linear(gradient [R, G] -> D/2) per forward: the target pass of a mapping
    model exceeds a sincos one by exactly what torch counts for the encoder's position table."""
    mapping, sincos = _tiny("mapping"), _tiny("sincos")
    model = BrainJEPA(mapping, torch.randn(mapping.num_rois, mapping.gradient_dim))
    counted = _counted(lambda: model.encoder.pos_embed())
    assert counted > 0
    assert step_flops(mapping, 5, 7).target - step_flops(sincos, 5, 7).target == counted
