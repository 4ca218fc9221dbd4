"""meta.compile: one compiled graph for every mask size, counted and reported at the end of the run.

The backend is `aot_eager` (meta.compile_backend): dynamo traces and guards exactly as with inductor, and autograd is
traced too, but no kernels are generated, so the test takes seconds where inductor takes minutes on a small CPU.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import torch

from brainjepa.config import load_config
from brainjepa.training import pretrain
from conftest import ONE_COMPILED_GRAPH, tiny_model

R, T = 20, 64


def _tiny(store: Path, **extra) -> list[str]:
    base = {"data.path": str(store), "data.crop_size": f"[{R},{T}]", "data.batch_size": 4, "data.num_workers": 0,
            "data.sampling_rate": 1, "data.pin_mem": "false", "data.gradient_components": 8,
            "data.gradient_sparsity": 0.5, "mask.patch_size": 16, "meta.model_name": "vit_tiny",
            "meta.embed_dim": 32, "meta.depth": 1, "meta.num_heads": 2, "meta.pred_emb_dim": 16,
            "meta.pred_depth": 1, "meta.precision": "fp32", "meta.accumulation_steps": 1, "optimization.epochs": 2,
            "optimization.warmup": 1, "logging.checkpoint_every": 100, "data.holdout": 0, **extra}
    return [f"{k}={v}" for k, v in base.items()]


def test_compiled_run_builds_one_graph_for_all_mask_sizes(store, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="brainjepa.training.loop")
    run = pretrain(load_config(None, _tiny(store, **{"meta.compile": "true", "meta.compile_backend": "aot_eager"})),
                   tmp_path / "run")
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    sizes = {(int(r["k_context"]), int(r["k_target"])) for r in rows}
    # context and target counts both vary: without the dynamic marks dynamo compiles again for new sizes (>= 3 graphs)
    assert len({k for k, _ in sizes}) >= 2 and len({k for _, k in sizes}) >= 3, sizes
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == len(rows) == 8 and summary["compiled_graphs"] >= 1
    if ONE_COMPILED_GRAPH:
        assert summary["compiled_graphs"] <= 2
    assert f"{summary['compiled_graphs']} compiled graph(s)" in caplog.records[-1].getMessage()


def test_uncompiled_run_reports_no_graphs(store, tmp_path):
    run = pretrain(load_config(None, _tiny(store, **{"optimization.max_steps": 1})), tmp_path / "run")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["compiled_graphs"] is None and summary["precision"] == "fp32"
    assert summary["precision_reason"] == "fp32 as requested" and summary["num_workers"] == 0


def test_compile_forward_uses_its_backend_and_one_graph_for_new_index_counts():
    """`compile_forward` compiles with the backend it is given, and marks the token dimension of both index tensors
    dynamic before each call: new context and new target counts reuse the first graph."""
    from brainjepa.training.compiled import compile_forward

    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    model = tiny_model(R, T)
    forward = compile_forward(model, backend)
    N, g = model.config.num_patches, torch.Generator().manual_seed(0)
    x = torch.randn(2, R, T, generator=g)
    for k_context, k_target in ((30, 10), (30, 14), (36, 12)):
        ctx = torch.stack([torch.randperm(N, generator=g)[:k_context] for _ in range(2)])
        tgt = torch.stack([torch.randperm(N, generator=g)[:k_target] for _ in range(2)])
        out = forward(x, ctx, tgt)
        assert out.prediction.shape == (2, k_target, model.config.embed_dim)
    assert graphs  # the given backend compiled it
    if ONE_COMPILED_GRAPH:
        assert len(graphs) == 1
