"""One attention call on a CPU: torch's SDPA in fp32 and bf16 against oneDNN's fused attention in bf16.

Times `F.scaled_dot_product_attention` and `brainjepa.models.onednn_attention.attention` under
`torch.inference_mode` on random [B, H, N, d] inputs (default: the paper-shaped target pass, [2, 6, 4500, 64]),
best of `--reps` after warm-up calls, beside the 4096^2 matmul peaks of fp32 and bf16 measured in the same run.
Prints one JSON line per kernel: seconds, GFLOP/s (4 B H N^2 d) and the share of that dtype's peak, and the largest
difference from fp32 attention; and the first call's seconds (oneDNN's is unfused while TorchScript profiles it) and
the process's peak RSS above the inputs so far. ``--backward`` adds SDPA's forward + backward in fp32 and bf16 (the
pass a training step runs; 12 B H N^2 d FLOPs, the backward counted as twice the forward's products, without its
recomputation), which oneDNN's kernel does not have. ``--first-call-budget-gb`` sets
`onednn_attention.MAX_FIRST_CALL_BYTES` (a large value runs the B x H pairs in one call, as before the split), and
``--query-rows`` its `QUERY_ROWS` (N or more runs all queries in one call, as before the query blocks).

    python benchmarks/bench_attention.py [--shape 2,6,4500,64] [--reps 3] [--backward] [--first-call-budget-gb 2]
        [--query-rows 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch
import torch.nn.functional as F
from bench_model import matmul_peak

from brainjepa.models import onednn_attention
from brainjepa.precision import cpu_name


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def first_and_best_time(fn, reps: int) -> tuple[float, float]:
    """The first call's seconds, and the best of `reps` after two warm-up calls (the first included): oneDNN builds
    its kernels; the fused graph is profiled on its first call."""
    times = []
    for _ in range(reps + 2):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0], min(times[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="2,6,4500,64", help="B,H,N,d of q, k and v")
    ap.add_argument("--reps", type=int, default=3, help="timed calls per kernel (best of)")
    ap.add_argument("--backward", action="store_true", help="also time SDPA forward + backward in fp32 and bf16")
    ap.add_argument("--first-call-budget-gb", type=float, default=None,
                    help="oneDNN's budget for a shape's unfused first call (default: the module's, 2 GiB)")
    ap.add_argument("--query-rows", type=int, default=None,
                    help="oneDNN's query rows per call (default: the module's QUERY_ROWS; N or more: one block)")
    args = ap.parse_args()
    if args.query_rows is not None:
        onednn_attention.QUERY_ROWS = args.query_rows
    if args.first_call_budget_gb is not None:
        onednn_attention.MAX_FIRST_CALL_BYTES = int(args.first_call_budget_gb * 2**30)
    b, h, n, d = (int(v) for v in args.shape.split(","))
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, generator=g) for _ in range(3))
    peaks = {"fp32": matmul_peak(torch.float32, "cpu", 4096), "bf16": matmul_peak(torch.bfloat16, "cpu", 4096)}
    flops = 4 * b * h * n * n * d
    exact = F.scaled_dot_product_attention(q, k, v)
    base = rss_gb()
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    kernels = {"sdpa fp32": ("fp32", lambda: F.scaled_dot_product_attention(q, k, v)),
               "sdpa bf16": ("bf16", lambda: F.scaled_dot_product_attention(qb, kb, vb))}
    if onednn_attention.available():
        kernels["onednn bf16"] = ("bf16", lambda: onednn_attention.attention(qb, kb, vb))
    timed = [(name, dtype, fn, flops, True) for name, (dtype, fn) in kernels.items()]
    if args.backward:
        for name, (x, y, z) in {"fp32": (q, k, v), "bf16": (qb, kb, vb)}.items():
            timed.append((f"sdpa {name} fwd+bwd", name, forward_backward(x, y, z), 3 * flops, False))
    for name, dtype, fn, work, inference in timed:
        with torch.inference_mode(inference):
            first, seconds = first_and_best_time(fn, args.reps)
            err = float(f"{(fn().float() - exact).abs().max():.3g}") if inference else None
        print(json.dumps({
            "cpu": cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "shape": [b, h, n, d], "kernel": name,
            "seconds": round(seconds, 4), "gflops": round(work / seconds / 1e9),
            "share_of_peak": round(work / seconds / peaks[dtype], 3),
            "max_abs_err_vs_fp32": err,
            "first_call_s": round(first, 3), "peak_rss_gb_above_inputs": round(rss_gb() - base, 2),
            "peak_gflops_fp32": round(peaks["fp32"] / 1e9), "peak_gflops_bf16": round(peaks["bf16"] / 1e9),
        }), flush=True)


def forward_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """A training step's attention: SDPA forward and backward into fresh leaves of q, k and v."""
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]

    def run() -> torch.Tensor:
        for leaf in leaves:
            leaf.grad = None
        out = F.scaled_dot_product_attention(*leaves)
        out.backward(torch.ones_like(out))
        return out
    return run


if __name__ == "__main__":
    main()
