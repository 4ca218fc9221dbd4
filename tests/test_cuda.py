"""The GPU path: CUDA-marked tests (skipped without CUDA; `bash benchmarks/gpu_check.sh` runs them on a GPU) and the
CPU dry run of that check, so the script cannot rot where no GPU is lent.

Tolerances: a bf16-autocast loss agrees with the fp32 loss within BF16_LOSS_RTOL (bf16 keeps 8 mantissa bits, a
relative step of 0.4% per rounding; the loss averages thousands of such errors); fp32 embeddings on the GPU agree
with the CPU's within EMBED_FP32_TOL (different kernels sum in different orders).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, model_config
from brainjepa.masks import MaskConfig, draw_masks
from brainjepa.models.flops import step_flops
from conftest import ONE_COMPILED_GRAPH

# read by cuBLAS when it first starts in this process: deterministic GEMMs for the bit-exact resume test
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

ROOT = Path(__file__).resolve().parents[1]
BF16_LOSS_RTOL = 2e-2
EMBED_FP32_TOL = 1e-4
R, T = 20, 64

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _model(**overrides) -> BrainJEPA:
    """A small model whose attention heads are 64 wide, as in ViT-B (what the flash kernels are built for)."""
    cfg = model_config("vit_small", **{"num_rois": R, "num_frames": T, "embed_dim": 128, "depth": 2,
                                       "num_heads": 2, "pred_embed_dim": 64, "pred_depth": 2, "gradient_dim": 8,
                                       **overrides})
    torch.manual_seed(0)
    return BrainJEPA(cfg, torch.randn(R, cfg.gradient_dim))


def _batch(cfg, batch_size: int = 4):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, cfg.num_rois, cfg.num_frames, generator=gen)
    ctx, tgt = draw_masks(MaskConfig(), cfg.num_rois, cfg.num_time_patches, seed=0, epoch=0, batch=0,
                          batch_size=batch_size)
    return x, ctx, tgt


# ------------------------------------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@requires_cuda
def test_bf16_autocast_loss_agrees_with_fp32():
    model = _model().cuda()
    x, ctx, tgt = (t.cuda() for t in _batch(model.config))
    with torch.no_grad():
        fp32 = model(x, ctx, tgt).loss.item()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x, ctx, tgt)
    assert out.prediction.dtype == torch.bfloat16  # autocast really ran the layers in bf16
    assert out.loss.item() == pytest.approx(fp32, rel=BF16_LOSS_RTOL)


@pytest.mark.cuda
@requires_cuda
def test_fused_attention_kernels_run_in_bf16(monkeypatch):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = _model().cuda()
    x, ctx, tgt = (t.cuda() for t in _batch(model.config))
    seen: list[torch.dtype] = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append(q.dtype)
        return sdpa(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    # only the fused kernels are allowed: without one for these inputs SDPA raises instead of falling back
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x, ctx, tgt)
        out.loss.backward()
    assert seen and set(seen) == {torch.bfloat16}
    grads = [p.grad for p in model.encoder.parameters()] + [p.grad for p in model.predictor.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), torch.autocast("cuda", dtype=torch.bfloat16):
        reference = model(x, ctx, tgt).loss.item()
    assert out.loss.item() == pytest.approx(reference, rel=BF16_LOSS_RTOL)


@pytest.fixture
def deterministic():
    """Deterministic kernels (flash attention's backward, scatter-adds), restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield
    torch.use_deterministic_algorithms(before)


@pytest.mark.cuda
@requires_cuda
def test_pretrain_resume_is_bit_exact_on_gpu(tmp_path, deterministic):
    from brainjepa.config import load_config
    from brainjepa.data.simulate import SimulationConfig, simulate_store
    from brainjepa.training import checkpoint as ckpt
    from brainjepa.training import pretrain

    store, gradient = tmp_path / "store", tmp_path / "gradient.csv"
    simulate_store(store, SimulationConfig(subjects=16, rois=R, frames=80, seed=0), progress=False)
    # a given gradient file: a GPU image need not have BrainSpace, which computing one from the store takes
    # 8 columns: 30 random columns over 20 ROIs would be linearly dependent, which load_gradient refuses
    np.savetxt(gradient, np.random.default_rng(0).normal(size=(R, 8)), delimiter=",")

    def overrides(max_steps: int) -> list[str]:
        values = {
            "data.path": store, "data.crop_size": f"[{R},{T}]", "data.batch_size": 4, "data.num_workers": 0,
            "data.sampling_rate": 1, "data.pin_mem": "true", "data.gradient_csv_path": gradient,
            "model.gradient_dim": 8, "mask.patch_size": 16, "meta.model_name": "vit_small",
            "meta.embed_dim": 128, "meta.depth": 2, "meta.num_heads": 2, "meta.pred_emb_dim": 64,
            "meta.pred_depth": 2, "meta.use_bfloat16": "true", "meta.accumulation_steps": 1,
            "meta.device": "cuda", "optimization.epochs": 8, "optimization.warmup": 1,
            "logging.checkpoint_every": 5, "optimization.max_steps": max_steps,
        }
        return [f"{k}={v}" for k, v in values.items()]

    full = pretrain(load_config(None, overrides(20)), tmp_path / "a")
    pretrain(load_config(None, overrides(10)), tmp_path / "b")
    resumed = pretrain(load_config(None, overrides(20)), tmp_path / "b", resume=True)
    a, b = BrainJEPA.from_pretrained(full).state_dict(), BrainJEPA.from_pretrained(resumed).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    opt_a = torch.load(ckpt.list_checkpoints(full)[-1] / "training.pt", weights_only=True)["optimizer"]
    opt_b = torch.load(ckpt.list_checkpoints(resumed)[-1] / "training.pt", weights_only=True)["optimizer"]
    for key, state in opt_a["state"].items():
        assert torch.equal(state["exp_avg_sq"], opt_b["state"][key]["exp_avg_sq"])
    steps = [int(line.split(",")[0]) for line in (resumed / "metrics.csv").read_text().split()[1:]]
    assert steps == list(range(1, 21))


@pytest.mark.cuda
@requires_cuda
def test_embed_on_gpu_equals_cpu():
    from brainjepa.evaluation.embed import EmbedOptions, embed

    model = _model()
    x = np.random.default_rng(0).normal(size=(5, R, T)).astype(np.float32)
    cpu = embed(model, x, options=EmbedOptions(device="cpu", precision="fp32"))
    gpu = embed(model, x, options=EmbedOptions(device="cuda", precision="fp32"))
    assert gpu.device.type == "cpu" and gpu.dtype == torch.float32
    torch.testing.assert_close(gpu, cpu, rtol=EMBED_FP32_TOL, atol=EMBED_FP32_TOL)
    bf16 = embed(model, x, options=EmbedOptions(device="cuda", precision="bf16"))
    assert torch.linalg.norm(bf16 - cpu) <= BF16_LOSS_RTOL * torch.linalg.norm(cpu)


# ------------------------------------------------------------------------------------------------ CPU dry run
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """The whole check on a tiny model: environment, CUDA tests (skipped), sweep, JSON, summary line last."""
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu"], env=env,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("gpu_check: ")
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {"environment", "tests", "bench", "json"} <= set(result)
    assert result["environment"]["torch"] == torch.__version__
    # on a GPU machine the nested `pytest -m cuda` runs the CUDA tests; elsewhere they skip
    assert result["tests"]["rc"] == 0
    assert ("passed" if torch.cuda.is_available() else "skipped") in result["tests"]["summary"]
    bench = result["bench"]
    assert bench["matmul_peak_tflops"] > 0
    rows = {(r["mode"], r["batch"]): r for r in bench["sweep"]}
    assert set(rows) == {(m, b) for m in ("eager", "eager_ckpt", "compile") for b in (2, 4)}
    m = bench["model"]
    cfg = model_config("vit_tiny", num_rois=m["num_rois"], num_frames=m["num_frames"], embed_dim=m["embed_dim"],
                       depth=m["depth"], num_heads=m["num_heads"], pred_embed_dim=m["pred_embed_dim"],
                       pred_depth=m["pred_depth"])
    for row in rows.values():
        assert row["status"] == "ok", row
        assert row["samples_per_s"] > 0 and 0 < row["mfu"] and row["tokens_per_s"] > 0
        # the step's FLOPs lie between those of the smallest and largest masks the configuration can draw
        lo = step_flops(cfg, 1, 1).total
        assert lo < row["flops_per_sample"] < step_flops(cfg, cfg.num_patches, cfg.num_patches).total
    # marked-dynamic compilation: a new batch size with new mask lengths builds no new graph
    assert rows[("compile", 2)]["graphs_compiled"] >= 1
    if ONE_COMPILED_GRAPH:
        assert rows[("compile", 4)]["graphs_compiled"] == 0
    probe = bench["recompiles"]
    assert probe["distinct_shapes"] > 1
    assert probe["static"] == probe["distinct_shapes"]
    if ONE_COMPILED_GRAPH:
        assert probe["marked"] == 1 and probe["automatic"] < probe["static"]
