"""oneDNN's fused attention (brainjepa.models.onednn_attention): the same attention as SDPA within bf16's error,
really fused, and taken only where it applies (bf16 on a CPU, no gradient, self-attention); issue 22."""

from __future__ import annotations

import json
import logging

import pytest
import torch
import torch.nn.functional as F

from brainjepa import tuning
from brainjepa.config import load_config
from brainjepa.models import onednn_attention
from brainjepa.models.layers import Attention, inference_attention, set_fused_attn, set_inference_attention
from brainjepa.training import pretrain
from test_compile import _tiny
from test_cuda import BF16_LOSS_RTOL, _batch, _model

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not onednn_attention.available(), reason="torch built without oneDNN")]
R = 20  # ROIs of the conftest `store` fixture (test_compile's tiny run)


def _qkv(*shape: int, n_kv: int | None = None) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    kv_shape = (*shape[:2], n_kv or shape[2], shape[3])
    return (torch.randn(shape, generator=g).bfloat16(), torch.randn(kv_shape, generator=g).bfloat16(),
            torch.randn(kv_shape, generator=g).bfloat16())


@pytest.mark.parametrize(("shape", "n_kv"), [((2, 3, 40, 16), None), ((1, 2, 24, 32), 70)])
def test_it_computes_attention_within_bf16_error_and_is_fused(shape, n_kv):
    q, k, v = _qkv(*shape, n_kv=n_kv)
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    sdpa_err = (F.scaled_dot_product_attention(q, k, v).float() - exact).abs().max()
    with torch.inference_mode():
        outs = [onednn_attention.attention(q, k.transpose(-2, -1).contiguous().transpose(-2, -1), v)
                for _ in range(3)]  # a strided k is the same attention
    for out in outs:
        assert out.dtype == torch.bfloat16 and out.shape == q.shape
        err = (out.float() - exact).abs().max()
        assert err < max(8 * sdpa_err, 2e-2)  # scores rounded to bf16: a few times SDPA's error, not more
    flat = [t.contiguous().view(1, -1, *t.shape[2:]) for t in (q, k, v)]  # the pairs in one axis, as called
    graph = onednn_attention._GRAPHS[(tuple(flat[0].shape), tuple(flat[1].shape), q.dtype)]
    assert "oneDNNFusionGroup" in str(graph.graph_for(*flat))  # the fused kernel, not three ops
    assert not torch.jit.onednn_fusion_enabled()  # switched on only around the call


def test_large_batches_run_in_calls_whose_unfused_first_pass_fits_the_budget(monkeypatch):
    """A budget of 5 pairs' scores: 12 pairs run as 3 calls of 4 (one shape profiled), the same attention."""
    q, k, v = _qkv(3, 4, 30, 16)
    with torch.inference_mode():
        whole = onednn_attention.attention(q, k, v)
        monkeypatch.setattr(onednn_attention, "MAX_FIRST_CALL_BYTES", 5 * 2 * 2 * 30 * 30)
        assert onednn_attention.pairs_per_call(30, 30) == 5
        onednn_attention._GRAPHS.clear()
        split = [onednn_attention.attention(q, k, v) for _ in range(3)]
    assert [key[0] for key in onednn_attention._GRAPHS] == [(1, 4, 30, 16)]
    for out in split:
        assert out.shape == q.shape
        torch.testing.assert_close(out, whole, atol=1e-2, rtol=0)  # each pair is computed alone either way
    monkeypatch.setattr(onednn_attention, "MAX_FIRST_CALL_BYTES", 1)
    assert onednn_attention.pairs_per_call(30, 30) == 1  # never fewer than one pair


def test_queries_run_in_blocks_of_at_most_query_rows_against_all_keys(monkeypatch):
    """QUERY_ROWS 7 over 30 queries: 5 equal blocks of 6 rows (one shape profiled), each against all 30 keys, the
    same attention as one call over all queries (a softmax row does not depend on the other rows)."""
    q, k, v = _qkv(2, 3, 30, 16)
    with torch.inference_mode():
        whole = onednn_attention.attention(q, k, v)
        monkeypatch.setattr(onednn_attention, "QUERY_ROWS", 7)
        onednn_attention._GRAPHS.clear()
        blocks = onednn_attention.attention(q, k, v)
    assert list(onednn_attention._GRAPHS) == [((1, 6, 6, 16), (1, 6, 30, 16), torch.bfloat16)]
    assert blocks.shape == q.shape
    torch.testing.assert_close(blocks, whole, atol=1e-2, rtol=0)
    exact = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
    assert (blocks.float() - exact).abs().max() < 2e-2


def test_it_applies_to_bf16_cpu_calls_that_need_no_gradient():
    q, k, v = _qkv(1, 2, 8, 16)
    assert onednn_attention.applies(q, k, v)
    assert not onednn_attention.applies(q.float(), k.float(), v.float())
    assert not onednn_attention.applies(q.requires_grad_(), k, v)
    with torch.no_grad():
        assert onednn_attention.applies(q, k, v)


def test_it_does_not_apply_inside_torch_compile(monkeypatch):
    """A call being traced by torch.compile keeps SDPA: dynamo cannot trace the TorchScript graph."""
    q, k, v = (t.detach() for t in _qkv(1, 2, 8, 16))
    assert onednn_attention.applies(q, k, v)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not onednn_attention.applies(q, k, v)


@pytest.fixture
def calls(monkeypatch):
    """Count the calls that reach the oneDNN kernel."""
    seen: list[tuple[int, ...]] = []
    real = onednn_attention.attention

    def counted(q, k, v):
        seen.append(tuple(q.shape))
        return real(q, k, v)

    monkeypatch.setattr(onednn_attention, "attention", counted)
    return seen


def test_the_layer_takes_it_only_where_it_applies(calls):
    torch.manual_seed(0)
    layer = Attention(32, 2)
    x, context = torch.randn(2, 12, 32), torch.randn(2, 20, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            sdpa = layer(x)
        set_inference_attention(layer, "onednn")
        with torch.no_grad():
            fused = layer(x)
            layer(x[:, :5], context)  # attends to a context: the shape changes with the mask, so SDPA
    assert calls == [(2, 2, 12, 16)]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # a new region: torch 2.4 reuses weights cast under no_grad
        assert layer(x).requires_grad  # with a gradient: SDPA (the oneDNN graph has no backward)
    with torch.no_grad():
        layer(x)  # fp32: SDPA
    assert calls == [(2, 2, 12, 16)]
    torch.testing.assert_close(fused.float(), sdpa.float(), rtol=0, atol=3e-2)


def test_the_explicit_attention_path_is_kept_whatever_the_inference_kernel(calls):
    """A layer switched to the explicit softmax path (`set_fused_attn` False: the reference's, the one FLOP counters
    see) stays on it in a bf16 no-gradient call even with the oneDNN kernel chosen: that kernel replaces SDPA only."""
    torch.manual_seed(0)
    layer = Attention(32, 2)
    set_fused_attn(layer, False)
    set_inference_attention(layer, "onednn")
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        layer(torch.randn(2, 12, 32))
    assert calls == []


def test_the_switch_refuses_what_it_cannot_do_and_the_context_restores(monkeypatch):
    model = _model()
    with pytest.raises(ValueError, match="must be one of sdpa, onednn, got 'flash'"):
        set_inference_attention(model, "flash")
    with inference_attention(model.target_encoder, "onednn"):
        assert {m.inference_kernel for m in model.target_encoder.modules() if isinstance(m, Attention)} == {"onednn"}
        assert {m.inference_kernel for m in model.encoder.modules() if isinstance(m, Attention)} == {"sdpa"}
    assert {m.inference_kernel for m in model.modules() if isinstance(m, Attention)} == {"sdpa"}
    monkeypatch.setattr(onednn_attention, "available", lambda: False)
    with pytest.raises(ValueError, match="no oneDNN fuser; use 'sdpa'"):
        set_inference_attention(model, "onednn")


def test_a_bf16_step_with_the_oneDNN_target_pass_keeps_fp32_numbers(calls):
    """The target encoder's pass (no gradient) on oneDNN: loss and gradients still agree with fp32 as the CUDA
    test asks of bf16."""
    model = _model().train()
    x, ctx, tgt = _batch(model.config)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        set_inference_attention(model.target_encoder, "onednn")
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = model(x, ctx, tgt)
        out.loss.backward()
        results[dtype] = (out.loss.item(), torch.cat([p.grad.flatten() for p in model.encoder.parameters()]))
    assert len(calls) == model.config.depth - 1  # every target block but the last (only the targets attend)
    (fp32, g32), (bf16, g16) = results[torch.float32], results[torch.bfloat16]
    assert bf16 == pytest.approx(fp32, rel=BF16_LOSS_RTOL)
    assert F.cosine_similarity(g16, g32, dim=0) > 0.99


def test_a_long_bf16_run_times_its_target_pass_kernel_uses_it_and_reports_it(store, tmp_path, monkeypatch, caplog,
                                                                             calls):
    monkeypatch.setattr(tuning, "MIN_STEPS", 2)
    monkeypatch.setattr(tuning, "_seconds_per_window",
                        lambda net, x, dtype, kernel="sdpa": 0.5 if kernel == "onednn" else 1.0)
    caplog.set_level(logging.INFO, logger="brainjepa.training.loop")
    cfg = load_config(None, _tiny(store, **{"meta.precision": "bf16", "meta.depth": 2, "optimization.max_steps": 2}))
    run = pretrain(cfg, tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["target_attention"] == "onednn" and summary["precision"] == "bf16"
    assert "target pass attention: onednn (timed on this encoder's first block in bf16" in caplog.text
    assert calls  # the target passes ran it
