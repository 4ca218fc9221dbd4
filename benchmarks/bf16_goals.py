"""bf16 on this CPU against its goals, measured in one run and judged from the figures of that run.

Runs the benchmarks that define the goals, each in its own process, one after the other (so they share the machine's
state of the moment, and each reports the matmul peaks of its own process):

- `bench_model.py`: forward + backward share of the dtype's matmul peak, encoder over all tokens and context encoder +
  predictor. Goals: bf16 >= 0.65, fp32 >= 0.70.
- `bench_pretrain.py`: the full step in bf16 (the target pass with SDPA and, where the build has it, oneDNN's fused
  attention; the faster counts) against the reference-like fp32 step. Goal: >= 5x.
- `bench_embed.py`: embed's own choice of precision, kernel and batch on the official ViT-B shape: a first call in
  a fresh tuning cache (it times the choice, and its time includes that), then a later call that reuses the stored
  choice (the throughput every later call gets). Goal: >= 0.60 of the best-dtype matmul peak.
- `auto` precision on this CPU: it must pick fp32 where the CPU has no native bf16.
- `profile_step.py --json`: where the faster bf16 step spends its time. Where the step misses 5x, the attention's
  own seconds are set against the 5x budget (the reference-like step / 5): attention that alone exceeds the budget
  means no other op can close the gap with these kernels.

Prints a markdown table (goal, measured, met) naming the CPU; `--out` writes it to a file too. About 10 minutes on
a 2-core Zen 4.

    python benchmarks/bf16_goals.py [--parts model,pretrain,embed,profile] [--out bf16_goals.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from brainjepa.models import onednn_attention
from brainjepa.precision import choose_precision, cpu_flags, cpu_name

HERE = Path(__file__).resolve().parent
PARTS = ("model", "pretrain", "embed", "profile")
BF16_SHARE, FP32_SHARE, STEP_RATIO, EMBED_SHARE = 0.65, 0.70, 5.0, 0.60


def run(script: str, *args: str, env: dict[str, str] | None = None) -> list[dict]:
    """The JSON lines a benchmark prints (its other output is left out)."""
    print(f"running {script} {' '.join(args)}", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    if done.returncode:
        raise SystemExit(f"{script} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def verdict(value: float, goal: float) -> str:
    return "yes" if value >= goal else "**no**"


def model_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    for r in run("bench_model.py", "--steps", "3"):
        goal = BF16_SHARE if r["dtype"] == "bf16" else FP32_SHARE
        for part, key in (("encoder, all tokens", "encoder_full"),
                          ("context encoder + predictor", "context_predictor")):
            share = r[f"{key}_share_of_peak"]
            rows.append((f"bench_model {r['dtype']} fwd+bwd, {part}: share of the {r['dtype']} peak "
                         f"({r['matmul_peak_tflops'] * 1e3:.0f} GFLOP/s)", f">= {goal}", f"{share:.3f}",
                         verdict(share, goal)))
    return rows


def pretrain_steps() -> tuple[dict[str, float], float]:
    """Median seconds per bf16 step by target-pass kernel, and the reference-like fp32 step's."""
    common = ("--batch", "2", "--steps", "5")
    kernels = ["sdpa", "onednn"] if onednn_attention.available() else ["sdpa"]
    bf16 = {k: run("bench_pretrain.py", *common, "--dtype", "bf16", "--target-attention", k)[0]["median_s_per_step"]
            for k in kernels}
    reference = run("bench_pretrain.py", *common, "--dtype", "fp32", "--reference-like")[0]["median_s_per_step"]
    return bf16, reference


def embed_rows() -> list[tuple[str, str, str, str]]:
    """embed's own choice on ViT-B: the first call, which times the choice in a fresh cache (its time includes the
    timing), then the same call again, which reuses the stored choice: the throughput every later call gets."""
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        for call in ("first call, timing included", "later call, stored choice"):
            r = run("bench_embed.py", "--shape", "vit_base", "--dtypes", "auto", "--batches", "auto", "--runs", "33",
                    env={"BRAINJEPA_CACHE": cache})[0]
            share = r["share_of_best_peak"]
            rows.append((f"embed, ViT-B, its own choice, {call} ({r['plan'].replace(' | ', '; ')}): share of the best"
                         f" peak ({max(r['peak_gflops_fp32'], r['peak_gflops_bf16'])} GFLOP/s)", f">= {EMBED_SHARE}",
                         f"{share:.3f} ({r['s_per_window']} s/window)", verdict(share, EMBED_SHARE)))
    return rows


def auto_row() -> tuple[str, str, str, str]:
    flags = cpu_flags()  # None: no flags to read, so `auto` times (brainjepa.precision.bf16_needs_timing)
    native = flags is None or bool(flags & {"amx_bf16", "avx512_bf16"})
    choice = choose_precision("cpu", "auto")
    expected = "bf16 or fp32, by timing" if native else "fp32"
    met = native or choice.name == "fp32"
    return ("`auto` precision on this CPU", expected, f"{choice.name} ({choice.reason})", "yes" if met else "**no**")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {','.join(PARTS)} (default: all)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    args = ap.parse_args()
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown parts {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    flags = cpu_flags()
    bf16_flags = "unknown" if flags is None else ", ".join(sorted(flags & {"amx_bf16", "avx512_bf16"})) or "none"
    lines = [f"CPU: {cpu_name()}; bf16 flags: {bf16_flags}; "
             f"{torch.get_num_threads()} threads; torch {torch.__version__}", "",
             "| goal | target | measured | met |", "|---|---|---|---|"]
    rows = [auto_row()]
    if "model" in parts:
        rows += model_rows()
    budget = best_kernel = None
    if "pretrain" in parts:
        bf16, reference = pretrain_steps()
        best_kernel = min(bf16, key=bf16.get)
        ratio = reference / bf16[best_kernel]
        budget = reference / STEP_RATIO
        steps = ", ".join(f"{k} target pass {s} s" for k, s in bf16.items())
        rows.append((f"full step, bf16 ({steps}) against reference-like fp32 ({reference} s)", f">= {STEP_RATIO}x",
                     f"{ratio:.2f}x", verdict(ratio, STEP_RATIO)))
    if "embed" in parts:
        rows += embed_rows()
    lines += [f"| {' | '.join(row)} |" for row in rows]
    if "profile" in parts:
        kernel = ["--target-attention", best_kernel] if best_kernel else []
        prof = run("profile_step.py", "--dtypes", "bf16", "--json", *kernel)[0]
        groups = prof["self_s_by_group"]
        attention = groups.get("attention", 0.0)
        which = f" ({best_kernel} target pass)" if best_kernel else ""
        lines += ["", f"Profiled bf16 step{which}: {prof['step_s']} s, "
                  f"{prof['share_of_peak']} of the bf16 peak ({prof['peak_gflops']} GFLOP/s); self seconds by group: "
                  + ", ".join(f"{g} {t}" for g, t in groups.items()) + "."]
        if budget is not None:
            alone = "exceeds" if attention > budget else "is within"
            lines.append(f"Attention alone ({attention} s) {alone} the 5x budget ({budget:.2f} s = reference-like step"
                         " / 5).")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
