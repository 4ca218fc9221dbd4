"""Embedding throughput of `brainjepa embed` over a store: windows/s, fp32 against bf16, a batch-size sweep.

Makes a store with `brainjepa simulate` (450 ROIs x 160 frames), builds a randomly initialised model of the chosen
shape and times `embed_store` (what `brainjepa embed --data` runs; its forward passes run under
`torch.inference_mode`), one window per run, after a warm-up call. Steady-state windows/s is (runs - batch) over
the time of embedding all runs minus the time of embedding the first batch alone. The encoder health check of
every call is included: it is fed from the embedding's own passes (a patch embedding and a few reductions per
window for the first 16 runs). ``call_s`` is the whole call over every run, fixed costs included: what a user
waits. Each (dtype, batch size) runs in its own process, so its peak RSS is its own. The share of peak is the
encoder's forward matmul FLOPs per second over the best-dtype matmul peak (4096^2, the larger of fp32 and bf16),
each measured in that process before and after the timing (the better of the two).

``auto`` as a dtype or batch size is embed's own choice (`brainjepa.tuning`: the encoder's first block
timed on the data, in calls of `MIN_WINDOWS` = 32 windows or more, so give ``--runs 33`` or more); the row names
what it chose, and its time includes that timing (the first-batch call it is compared with has too few windows to
be timed), spread over the runs. Set ``BRAINJEPA_CACHE`` to an empty folder: a decision stored by an earlier run
is reused instead of timed. ``--kernels`` sets the attention kernel of bf16 rows (torch's SDPA or oneDNN's fused
attention, `brainjepa.models.onednn_attention`); ``auto`` is embed's own choice (timed in calls of 32 windows or
more, or alone where that costs at most `KERNEL_SHARE` of the call's block passes: from 5 ViT-B windows; else
SDPA).

    BRAINJEPA_CACHE=$(mktemp -d) python benchmarks/bench_embed.py --shape small --batches auto --dtypes auto --runs 33
    python benchmarks/bench_embed.py --shape small --batches 1,2,4 --runs 8
    python benchmarks/bench_embed.py --shape vit_base --batches 1,2 --runs 4 --dtypes bf16 --kernels sdpa,onednn
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_model import matmul_peak

from brainjepa import BrainJEPA, ModelConfig
from brainjepa.evaluation import embed as embed_module
from brainjepa.evaluation.embed import EmbedOptions, embed_store
from brainjepa.models.flops import block_flops

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
SHAPES = {  # (embed_dim, depth, heads): the paper-shaped small config and the official ViT-B
    "small": (384, 6, 6),
    "vit_base": (768, 12, 12),
}


def forward_flops(cfg: ModelConfig) -> float:
    """Matmul FLOPs of one window through the encoder (patch embedding and every block over all tokens)."""
    n = cfg.num_patches
    return 2 * n * cfg.patch_size * cfg.embed_dim + cfg.depth * block_flops(n, n, cfg.embed_dim,
                                                                            int(cfg.embed_dim * cfg.mlp_ratio))


def one(store: Path, shape: str, dtype: str, batch: str, kernel: str) -> dict:
    """Time embed_store over the store in this process; one JSON-able row."""
    dim, depth, heads = SHAPES[shape]
    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=dim, depth=depth, num_heads=heads, pred_depth=1)
    model = BrainJEPA(cfg, torch.randn(cfg.num_rois, cfg.gradient_dim)).eval()
    options = EmbedOptions(precision=dtype, batch_size=None if batch == "auto" else int(batch),
                           check_roi_labels=False)
    if kernel != "auto":
        plan = embed_module.plan_embedding
        embed_module.plan_embedding = lambda *a, **k: dataclasses.replace(plan(*a, **k), attention=kernel,
                                                                           why_attention="--kernels")
    chosen = []  # the precision and batch lines embed logs
    embed_module.logger.setLevel(logging.INFO)
    embed_module.logger.addFilter(lambda record: chosen.append(record.getMessage()) or True)
    peaks = {name: matmul_peak(dt, "cpu", 4096) for name, dt in DTYPES.items()}
    first = 1 if batch == "auto" else int(batch)
    # warm-up on the first batch's shape: oneDNN builds its kernels, the fused attention profiles that shape
    embed_store(model, store, indices=list(range(first)), options=options, progress=False)
    times = []
    for indices in (list(range(first)), None):
        chosen.clear()
        t0 = time.perf_counter()
        out = embed_store(model, store, indices=indices, options=options, progress=False)
        times.append(time.perf_counter() - t0)
    windows = len(out.embeddings) - first
    if windows < first:
        raise SystemExit(f"--runs {len(out.embeddings)} must be at least twice the largest batch size ({batch})")
    seconds = times[1] - times[0]
    peaks = {name: max(peak, matmul_peak(DTYPES[name], "cpu", 4096))
             for name, peak in peaks.items()}  # the better of before and after: a slow moment does not flatter it
    best = max(peaks.values())
    return {
        "shape": f"D{dim}/L{depth}/H{heads}", "dtype": dtype, "batch": batch, "kernel": kernel, "windows": windows,
        "plan": " | ".join(m for m in chosen if m.startswith(("precision:", "attention:", "batch:"))),
        "threads": torch.get_num_threads(), "load": round(os.getloadavg()[0], 2),
        "windows_per_s": round(windows / seconds, 3), "s_per_window": round(seconds / windows, 3),
        "call_s": round(times[1], 2),  # the whole call over every run: what a user waits, fixed costs included
        "share_of_best_peak": round(windows * forward_flops(cfg) / seconds / best, 3),
        "peak_gflops_fp32": round(peaks["fp32"] / 1e9), "peak_gflops_bf16": round(peaks["bf16"] / 1e9),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small", help="encoder shape (450 x 160 input)")
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16,auto (embed's --precision)")
    ap.add_argument("--batches", default="1,2,4,8",
                    help="comma list of batch sizes or auto (embed's --batch-size; auto: none given)")
    ap.add_argument("--kernels", default="auto",
                    help="comma list of sdpa,onednn,auto: the attention kernel of bf16 rows (auto: embed's choice)")
    ap.add_argument("--runs", type=int, default=16,
                    help="runs (windows) in the simulated store; at least twice the largest batch")
    ap.add_argument("--store", type=Path, default=None, help="embed this store instead of simulating one")
    ap.add_argument("--one", nargs=3, metavar=("DTYPE", "BATCH", "KERNEL"), help=argparse.SUPPRESS)  # a child
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.store, args.shape, *args.one)), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            store = Path(tmp) / "store"
            subprocess.run([sys.executable, "-m", "brainjepa", "simulate", "--out", str(store), "--rois", "450",
                            "--frames", "160", "--subjects", str(args.runs), "--no-progress"], check=True,
                           capture_output=True)
        for dtype in args.dtypes.split(","):
            for batch in args.batches.split(","):
                for kernel in args.kernels.split(",") if dtype != "fp32" else ["auto"]:
                    subprocess.run([sys.executable, __file__, "--shape", args.shape, "--store", str(store),
                                    "--one", dtype, batch, kernel], check=True)


if __name__ == "__main__":
    main()
