"""Forward+backward speed of the encoder and predictor on 450 x 160 input, fp32 and bf16 autocast (CPU or CUDA).

Reports tokens/s and the share of the machine's matmul peak, measured in the same run with a large matmul of the
same dtype before and after the timings (the better of the two, so a slow moment of a shared machine does not
flatter the share). FLOPs are counted analytically for the matmuls (linear layers and attention), backward = 2 x
forward.

    python benchmarks/bench_model.py [--batch 2] [--steps 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import torch

from brainjepa import BrainJEPA, ModelConfig


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(fn, steps: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(steps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, device: str, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / timed(lambda: a @ b, 5, device)


def vit_flops(tokens: int, dim: int, depth: int, mlp_ratio: float) -> float:
    """Forward matmul FLOPs of `depth` blocks on one sequence of `tokens` tokens."""
    linear = 2 * tokens * dim * dim * (3 + 1 + 2 * mlp_ratio)
    attention = 2 * 2 * tokens * tokens * dim
    return depth * (linear + attention)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=2, help="samples per step")
    ap.add_argument("--steps", type=int, default=5, help="timed repetitions (median reported)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    ap.add_argument("--embed-dim", type=int, default=384, help="encoder width")
    ap.add_argument("--depth", type=int, default=6, help="encoder depth")
    ap.add_argument("--heads", type=int, default=6, help="attention heads")
    ap.add_argument("--pred-dim", type=int, default=192, help="predictor width")
    ap.add_argument("--pred-depth", type=int, default=3, help="predictor depth")
    ap.add_argument("--context", type=int, default=1100, help="context tokens per sample (paper masks: ~1100 at B=2)")
    ap.add_argument("--targets", type=int, default=1000, help="target tokens per sample")
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16")
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = ModelConfig(embed_dim=args.embed_dim, depth=args.depth, num_heads=args.heads,
                      pred_embed_dim=args.pred_dim, pred_depth=args.pred_depth)
    model = BrainJEPA(cfg, torch.randn(cfg.num_rois, cfg.gradient_dim)).to(args.device).train()
    B, N = args.batch, cfg.num_patches
    x = torch.randn(B, cfg.num_rois, cfg.num_frames, device=args.device)
    perm = torch.stack([torch.randperm(N) for _ in range(B)]).to(args.device)
    ctx, tgt = perm[:, : args.context].sort(1).values, perm[:, args.context : args.context + args.targets]

    enc_flops = B * vit_flops(N, cfg.embed_dim, cfg.depth, cfg.mlp_ratio)
    ctx_flops = (B * vit_flops(args.context, cfg.embed_dim, cfg.depth, cfg.mlp_ratio)
                 + B * vit_flops(args.context + args.targets, cfg.pred_embed_dim, cfg.pred_depth, cfg.mlp_ratio))

    def encoder_full():
        model.zero_grad(set_to_none=True)
        model.encoder(x).float().square().mean().backward()

    def context_and_predictor():
        model.zero_grad(set_to_none=True)
        z = model.encoder(x, ctx)
        model.predictor(z, ctx, tgt).float().square().mean().backward()

    for name in args.dtypes.split(","):
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
        peak = matmul_peak(dtype, args.device, 4096 if args.device == "cpu" else 8192)
        amp = nullcontext() if dtype == torch.float32 else torch.autocast(args.device, dtype=dtype)
        with amp:
            t_enc = timed(encoder_full, args.steps, args.device)
            t_ctx = timed(context_and_predictor, args.steps, args.device)
        peak = max(peak, matmul_peak(dtype, args.device, 4096 if args.device == "cpu" else 8192))  # the better of two
        print(json.dumps({
            "dtype": name, "device": args.device, "threads": torch.get_num_threads(), "batch": B,
            "config": f"D{cfg.embed_dim}/L{cfg.depth}/H{cfg.num_heads} pred D{cfg.pred_embed_dim}/L{cfg.pred_depth}",
            "matmul_peak_tflops": round(peak / 1e12, 3),
            "encoder_full_fwd_bwd_s": round(t_enc, 3),
            "encoder_full_tokens_per_s": round(B * N / t_enc),
            "encoder_full_share_of_peak": round(3 * enc_flops / t_enc / peak, 3),
            "context_predictor_fwd_bwd_s": round(t_ctx, 3),
            "context_predictor_tokens_per_s": round(B * (args.context + args.targets) / t_ctx),
            "context_predictor_share_of_peak": round(3 * ctx_flops / t_ctx / peak, 3),
        }))


if __name__ == "__main__":
    main()
