"""Where one full pretraining step spends its time, fp32 against bf16 autocast: a torch.profiler table.

One optimizer step through the real `Trainer.train_step` (target pass, context encoder, predictor, backward,
gradient clipping, fused AdamW, EMA) on random 450 x 160 input with the paper's masks, after one warm-up step.
Ops are ranked by self CPU time and grouped into matmul / attention / norms, GELU and element-wise / dtype casts /
optimizer and EMA. Self-time *shares* are what to compare between runs: on a loaded machine absolute times move,
shares much less. The fp32 and bf16 matmul peaks (4096^2) are measured in the same run, before and after, and the
step's model FLOPs (`brainjepa.models.flops.step_flops`) are given as a share of its dtype's peak.

    python benchmarks/profile_step.py [--dtypes fp32,bf16] [--top 12] [--threads N] [--target-attention onednn] [--json]
        [--attention-shapes]

``--json`` prints one line per dtype instead of the tables (the step, its model-FLOP share and the seconds by group),
for scripts such as `bf16_goals.py`. ``--attention-shapes`` adds a table of the attention ops by input shape (which
pass they belong to: the target pass sees all tokens, the context encoder the context, the predictor context +
targets at its own head width), with the rate of torch's flash kernels from their shapes (oneDNN's fused kernel
records no shapes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from bench_model import matmul_peak
from bench_pretrain import add_shape_args, build_trainer
from torch.profiler import ProfilerActivity, profile

from brainjepa.models.flops import step_flops

GROUPS = (  # first match wins
    ("dtype casts", r"^aten::(to|_to_copy|copy_)$"),
    ("optimizer + EMA", r"adam|_foreach_|clip_grad|Optimizer"),
    ("attention", r"scaled_dot_product|softmax|LlgaPartition"),  # LlgaPartition: oneDNN's fused attention
    ("matmul", r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear)$"),
    ("layernorm + gelu + element-wise", r"^aten::"),
)


def group_of(name: str) -> str:
    return next((group for group, pattern in GROUPS if re.search(pattern, name)), "other")


def load() -> str:
    return "load average " + " / ".join(f"{v:.2f}" for v in os.getloadavg())


def profile_step(args: argparse.Namespace, dtype: str) -> tuple[dict[str, float], float, float, list]:
    """Self CPU seconds by op of one profiled step, the step's wall seconds, its model FLOPs and the attention events
    by input shape (with ``--attention-shapes``; else empty)."""
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(args, Path(tmp), dtype, 6 * args.batch)  # some are held out
        batches = list(trainer.micro_batches())
        trainer.train_step([batches[0]])["loss"].item()  # warm-up: oneDNN builds its kernels
        with profile(activities=[ProfilerActivity.CPU], record_shapes=args.attention_shapes) as prof:
            t0 = time.perf_counter()
            row = trainer.train_step([batches[1]])
            row["loss"].item()
            wall = time.perf_counter() - t0
        flops = step_flops(trainer.model.config, row["k_context"], row["k_target"], args.batch).total
    ops = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    shaped = [e for e in prof.key_averages(group_by_input_shape=True)
              if args.attention_shapes and group_of(e.key) == "attention" and e.self_cpu_time_total >= 1000]
    return ops, wall, flops, shaped


def attention_table(events: list, peak: float) -> None:
    """Each attention op and input shape: calls, self seconds and, for torch's flash kernels, GFLOP/s from the shapes
    (4 B H Nq Nk d for a forward, twice that for a backward, as `bench_attention.py` counts)."""
    print("\n| attention op | q, k shapes | calls | self s | GFLOP/s | share of peak |\n|---|---|---|---|---|---|")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total):
        seconds, shapes = e.self_cpu_time_total / 1e6, e.input_shapes
        rate = share = "-"
        if "flash_attention" in e.key and len(shapes) >= 2 and len(shapes[0]) == 4:
            (b, h, nq, d), nk = shapes[0], shapes[1][2]
            gflops = (8 if "backward" in e.key else 4) * b * h * nq * nk * d * e.count / 1e9
            rate, share = f"{gflops / seconds:.0f}", f"{gflops * 1e9 / seconds / peak:.2f}"
        print(f"| `{e.key}` | {shapes[:2] if shapes else 'not recorded'} | {e.count} | {seconds:.3f} | {rate} | "
              f"{share} |")


def by_group(ops: dict[str, float]) -> dict[str, float]:
    groups: dict[str, float] = defaultdict(float)
    for name, t in ops.items():
        groups[group_of(name)] += t
    return dict(sorted(groups.items(), key=lambda kv: -kv[1]))


def report(dtype: str, ops: dict[str, float], wall: float, flops: float, peak: float, top: int) -> None:
    total = sum(ops.values())
    print(f"\n### {dtype}: step {wall:.2f} s, model FLOPs {flops / 1e9:.0f} G = {flops / wall / peak:.2f} of the "
          f"{dtype} matmul peak ({peak / 1e9:.0f} GFLOP/s); profiled self CPU time {total:.2f} s\n")
    print("| group | self CPU s | share |\n|---|---|---|")
    for group, t in by_group(ops).items():
        print(f"| {group} | {t:.2f} | {t / total:.1%} |")
    print(f"\n| op (top {top} by self CPU time) | group | self CPU s | share |\n|---|---|---|---|")
    for name, t in sorted(ops.items(), key=lambda kv: -kv[1])[:top]:
        print(f"| `{name}` | {group_of(name)} | {t:.3f} | {t / total:.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_shape_args(ap)
    ap.add_argument("--dtypes", default="fp32,bf16", help="comma list of fp32,bf16 (each profiled in turn)")
    ap.add_argument("--top", type=int, default=12, help="ops listed per dtype")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads (default: torch's); 1 keeps a loaded machine's scheduling out of the shares")
    ap.add_argument("--json", action="store_true", help="one JSON line per dtype instead of the tables")
    ap.add_argument("--attention-shapes", action="store_true",
                    help="also list the attention ops by input shape, with their rates (records shapes)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = "cpu" if args.device == "auto" else args.device
    names = args.dtypes.split(",")
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    peaks = {n: matmul_peak(dtypes[n], "cpu", 4096) for n in names}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {load()}; matmul peak "
          + ", ".join(f"{n} {p / 1e9:.0f} GFLOP/s" for n, p in peaks.items()))
    runs = {n: profile_step(args, n) for n in names}
    peaks = {n: max(p, matmul_peak(dtypes[n], "cpu", 4096)) for n, p in peaks.items()}  # the better of two
    print(f"after: {load()}; best matmul peak " + ", ".join(f"{n} {p / 1e9:.0f} GFLOP/s" for n, p in peaks.items()))
    for n, (ops, wall, flops, shaped) in runs.items():
        if args.json:
            print(json.dumps({"dtype": n, "step_s": round(wall, 3), "model_gflops": round(flops / 1e9),
                              "share_of_peak": round(flops / wall / peaks[n], 3),
                              "peak_gflops": round(peaks[n] / 1e9),
                              "self_s_by_group": {g: round(t, 3) for g, t in by_group(ops).items()}}))
        else:
            report(n, ops, wall, flops, peaks[n], args.top)
        if shaped:
            attention_table(shaped, peaks[n])


if __name__ == "__main__":
    main()
