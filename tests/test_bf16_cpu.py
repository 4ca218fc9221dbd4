"""bf16 autocast on the CPU keeps the numbers of fp32 (the tolerance the CUDA test uses) and runs attention in the
fused SDPA kernel, not the math fallback (which materialises every attention matrix); issue 22."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from test_cuda import BF16_LOSS_RTOL, _batch, _model


def test_bf16_autocast_loss_and_gradients_agree_with_fp32_on_cpu():
    model = _model().train()
    x, ctx, tgt = _batch(model.config)
    grads = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = model(x, ctx, tgt)
        out.loss.backward()
        assert out.prediction.dtype == dtype  # autocast really ran the layers in bf16
        grads[dtype] = (out.loss.item(), torch.cat([p.grad.flatten() for p in model.encoder.parameters()]))
    (fp32, g32), (bf16, g16) = grads[torch.float32], grads[torch.bfloat16]
    assert bf16 == pytest.approx(fp32, rel=BF16_LOSS_RTOL)
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.99


def test_bf16_attention_runs_the_fused_cpu_kernel():
    model = _model().train()
    x, ctx, tgt = _batch(model.config)
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.autocast("cpu", dtype=torch.bfloat16):
        model(x, ctx, tgt).loss.backward()
    ops = {e.key for e in prof.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in ops
    assert "aten::_scaled_dot_product_flash_attention_for_cpu_backward" in ops
    assert "aten::_scaled_dot_product_attention_math" not in ops
