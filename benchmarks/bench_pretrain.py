"""Full pretraining steps (target pass, context pass, predictor, backward, AdamW, EMA) through the real Trainer.

Random 450 x 160 input with the paper's masks; prints one JSON line with the median seconds per optimizer step
(accumulation 1) and the peak RSS of the process. Data loading is excluded from the step time (it is prefetched).

    python benchmarks/bench_pretrain.py --embed-dim 384 --depth 6 --heads 6 --pred-dim 192 --pred-depth 3 \\
        --batch 2 --steps 5 --dtype fp32 [--target-attention onednn]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from brainjepa.config import load_config
from brainjepa.data.store import StoreWriter
from brainjepa.models.layers import set_inference_attention
from brainjepa.training.distributed import DistEnv
from brainjepa.training.loop import Trainer


def reference_like(trainer: Trainer) -> None:
    """Undo our speed-ups on this trainer (attention was already set to the explicit path by the config)."""
    model = trainer.model

    def full_target(x, target_idx):
        with torch.no_grad():
            h = torch.nn.functional.layer_norm(model.target_encoder(x), (model.config.embed_dim,))
            return torch.gather(h, 1, target_idx.unsqueeze(-1).expand(-1, -1, h.shape[-1]))

    model.target_features = full_target
    trainer.optimizer = torch.optim.AdamW(model.param_groups(0.04), lr=1e-4, foreach=True)


def add_shape_args(ap: argparse.ArgumentParser) -> None:
    """The model and input shape options shared with `profile_step.py` (defaults: the paper-shaped small config)."""
    ap.add_argument("--embed-dim", type=int, default=384, help="encoder width")
    ap.add_argument("--depth", type=int, default=6, help="encoder depth")
    ap.add_argument("--heads", type=int, default=6, help="attention heads (encoder and predictor)")
    ap.add_argument("--pred-dim", type=int, default=192, help="predictor width")
    ap.add_argument("--pred-depth", type=int, default=3, help="predictor depth")
    ap.add_argument("--batch", type=int, default=2, help="samples per step")
    ap.add_argument("--rois", type=int, default=450, help="ROIs")
    ap.add_argument("--frames", type=int, default=160, help="frames per sample")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--target-attention", choices=["sdpa", "onednn"], default=None,
                    help="the target pass's attention kernel in bf16 on a CPU (default: the trainer's own choice, "
                    "SDPA for a run this short)")


def build_trainer(args: argparse.Namespace, tmp: Path, dtype: str, windows: int) -> Trainer:
    """A real `Trainer` on a store of `windows` random windows in `tmp`, autocast to `dtype` (fp32 or bf16)."""
    reference = getattr(args, "reference_like", False)
    rng = np.random.default_rng(0)
    with StoreWriter(tmp / "store", args.rois) as w:
        for s in range(windows):
            w.add(rng.normal(size=(args.rois, args.frames)).astype(np.float32), subject=f"s{s}")
    np.savetxt(tmp / "g.csv", rng.normal(size=(args.rois, 30)), delimiter=",")
    cfg = load_config(None, [
        f"data.path={tmp / 'store'}", f"data.crop_size=[{args.rois},{args.frames}]",
        f"data.batch_size={args.batch}", "data.num_workers=0", "data.normalization=none", "data.sampling_rate=1",
        f"data.gradient_csv_path={tmp / 'g.csv'}", "meta.model_name=vit_small", f"meta.embed_dim={args.embed_dim}",
        f"meta.depth={args.depth}", f"meta.num_heads={args.heads}", f"meta.pred_emb_dim={args.pred_dim}",
        f"meta.pred_depth={args.pred_depth}", f"meta.precision={dtype}",
        "meta.accumulation_steps=1", f"meta.compile={getattr(args, 'compile', False)}", f"meta.device={args.device}",
        f"meta.attn_mode={'normal' if reference else 'flash_attn'}",
        "optimization.epochs=1", "optimization.warmup=0",
    ])
    (tmp / "run").mkdir()
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    trainer = Trainer(cfg, tmp / "run", DistEnv(device=torch.device("cuda" if use_cuda else "cpu")), False)
    if reference:
        reference_like(trainer)
    if args.target_attention:
        set_inference_attention(trainer.model.target_encoder, args.target_attention)
        trainer.target_attention = args.target_attention
    return trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_args(ap)
    ap.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="fp32, or bf16 autocast")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    ap.add_argument("--reference-like", action="store_true",
                    help="emulate the reference's CPU path in the same run: materialised softmax attention, the "
                    "target encoder's last block over all tokens, multi-tensor (non-fused) AdamW")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(args, Path(tmp), args.dtype, args.batch * (args.steps + 1))
        batches = list(trainer.micro_batches())
        times, sizes = [], []
        for i, batch in enumerate(batches):
            if trainer.env.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            row = trainer.train_step([batch])
            row["loss"].item()
            if trainer.env.device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
                sizes.append((row["k_context"], row["k_target"]))
    print(json.dumps({
        "config": f"D{args.embed_dim}/L{args.depth}/H{args.heads} pred D{args.pred_dim}/L{args.pred_depth}",
        "batch": args.batch, "dtype": args.dtype, "reference_like": args.reference_like,
        "target_attention": trainer.target_attention,
        "device": str(trainer.env.device), "compile": args.compile,
        "threads": torch.get_num_threads(), "steps": len(times),
        "median_s_per_step": round(statistics.median(times), 3), "min_s_per_step": round(min(times), 3),
        "mean_k_context": round(float(np.mean([s[0] for s in sizes]))),
        "mean_k_target": round(float(np.mean([s[1] for s in sizes]))),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "peak_cuda_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_available() else None,
    }))


if __name__ == "__main__":
    main()
