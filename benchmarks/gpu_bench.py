"""Throughput of full Brain-JEPA pretraining steps on one device, with MFU and the count of recompilations.

One step = the EMA target pass, context encoder, predictor, backward, AdamW (fused) and the EMA update: the
operations of the training loop's step, with masks drawn by `draw_masks` at the reference's mask settings. Batch
tensors are pinned and copied with non_blocking, and nothing in the step waits for the device: steps are timed
with CUDA events (CPU: wall clock). Modes: `eager`, `eager_ckpt` (activation checkpointing) and `compile`
(torch.compile with the batch and token dimensions marked dynamic, so that mask lengths varying from step to step
do not recompile). Per configuration: samples/s, tokens/s (input tokens R*P per sample), peak memory
(torch.cuda.max_memory_allocated; estimate of `step_memory_bytes` beside it) and MFU = analytic FLOPs of the
steps (`brainjepa.models.flops.step_flops`) / their time / the dense matmul peak measured in the same run. An
out-of-memory configuration is recorded as "oom" and the sweep goes on. A separate probe counts the graphs
torch.compile builds over steps of varying mask lengths with static shapes, torch's automatic dynamic shapes, and
dimensions marked dynamic.

    python benchmarks/gpu_bench.py                       # vit_base on 450 x 160, batch 16/32/64 (a GPU)
    python benchmarks/gpu_bench.py --device cpu --tiny --compile-backend aot_eager    # dry run, < 1 minute
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from brainjepa import BrainJEPA, model_config
from brainjepa.masks import MaskConfig, draw_masks
from brainjepa.models import ModelConfig
from brainjepa.models.flops import step_flops, step_memory_bytes
from brainjepa.precision import choose_precision

MODES = ("eager", "eager_ckpt", "compile")
MOMENTUM = 0.996
GIB = 2**30


def _sig(value: float, digits: int = 4) -> float:
    """`value` to `digits` significant digits (fixed decimals would round a tiny run's rate to 0)."""
    return float(f"{value:.{digits}g}")


# ------------------------------------------------------------------------------------------------ environment
def _nvidia_smi() -> dict[str, str]:
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return {}
    driver, name, memory = (s.strip() for s in out.split(","))
    return {"driver": driver, "smi_name": name, "smi_memory": memory}


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and the device's facts, for the first lines of the check and its JSON."""
    env: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda_runtime": torch.version.cuda,
        "cpu": platform.processor() or platform.machine(), "cpu_threads": torch.get_num_threads(),
        "device": str(device), "cuda_available": torch.cuda.is_available(),
    }
    env.update(_nvidia_smi())
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1),
                   multiprocessors=props.multi_processor_count, capability=f"{props.major}.{props.minor}",
                   bf16_supported=torch.cuda.is_bf16_supported(), cudnn=torch.backends.cudnn.version())
    else:
        env["cpu_model"] = _cpu_model()
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ------------------------------------------------------------------------------------------------ timing
class StepClock:
    """Per-step durations without waiting for the device inside the loop: CUDA events, or the wall clock."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list[Any] = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def durations(self) -> list[float]:
        """Seconds between consecutive marks (waits for the device once)."""
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) / 1e3 for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """Dense matmul FLOP/s of an n x n x n product in `dtype`, after warm-up (the MFU denominator)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    clock = StepClock(device)
    clock.mark()
    for _ in range(reps):
        a @ b
        clock.mark()
    return 2 * n**3 / statistics.median(clock.durations())


# ------------------------------------------------------------------------------------------------ the step
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def make_batches(cfg: ModelConfig, batch_size: int, count: int, device: torch.device, seed: int) -> list[Batch]:
    """`count` host batches (x, context_idx, target_idx), pinned when the device is a GPU; masks per step differ."""
    gen = torch.Generator().manual_seed(seed)
    xs = [torch.randn(batch_size, cfg.num_rois, cfg.num_frames, generator=gen) for _ in range(2)]
    batches = []
    for i in range(count):
        ctx, tgt = draw_masks(MaskConfig(), cfg.num_rois, cfg.num_time_patches, seed=seed, epoch=0, batch=i,
                              batch_size=batch_size)
        batch = (xs[i % 2], ctx, tgt)
        batches.append(tuple(t.pin_memory() for t in batch) if device.type == "cuda" else batch)
    return batches


def mark_dynamic(x: torch.Tensor, ctx: torch.Tensor, tgt: torch.Tensor) -> None:
    """Batch and token dimensions are symbolic to torch.compile: one graph serves every mask length."""
    torch._dynamo.mark_dynamic(x, 0)
    torch._dynamo.mark_dynamic(ctx, [0, 1])
    torch._dynamo.mark_dynamic(tgt, [0, 1])


def train_step(forward: Callable, model: BrainJEPA, optimizer: torch.optim.Optimizer, batch: Batch,
               device: torch.device, dtype: torch.dtype, dynamic: bool) -> torch.Tensor:
    """One optimizer step as the training loop does it; returns the loss without reading it back."""
    x, ctx, tgt = (t.to(device, non_blocking=True) for t in batch)
    if dynamic:
        mark_dynamic(x, ctx, tgt)
    amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    with amp:
        out = forward(x, ctx, tgt)
    out.loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    model.update_target(MOMENTUM)
    return out.loss.detach()


def graphs_compiled() -> int:
    """Graphs torch.compile has built in this process (dynamo's counter; every recompilation adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_config(model: BrainJEPA, forward: Callable, optimizer: torch.optim.Optimizer, mode: str, batch: int,
               args: argparse.Namespace, device: torch.device, dtype: torch.dtype, peak: float) -> dict[str, Any]:
    """Warm-up steps, then timed steps, of one (mode, batch); 'oom' when the batch does not fit."""
    cfg = model.config
    row: dict[str, Any] = {"mode": mode, "batch": batch}
    model.set_grad_checkpointing(mode == "eager_ckpt")
    batches = make_batches(cfg, batch, args.warmup + args.steps, device, seed=batch)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    graphs0, t0 = graphs_compiled(), time.perf_counter()
    losses = []
    try:
        for b in batches[: args.warmup]:
            losses.append(train_step(forward, model, optimizer, b, device, dtype, mode == "compile"))
        if device.type == "cuda":
            torch.cuda.synchronize()
        row["warmup_s"] = round(time.perf_counter() - t0, 2)
        clock = StepClock(device)
        clock.mark()
        for b in batches[args.warmup:]:
            losses.append(train_step(forward, model, optimizer, b, device, dtype, mode == "compile"))
            clock.mark()
        times = clock.durations()
    except torch.cuda.OutOfMemoryError:
        optimizer.zero_grad(set_to_none=True)
        losses.clear()
        free_memory(device)
        return {**row, "status": "oom"}
    finally:
        model.set_grad_checkpointing(False)
    ks = [(b[1].shape[1], b[2].shape[1]) for b in batches[args.warmup:]]
    flops = sum(step_flops(cfg, kc, kt, batch).total for kc, kt in ks)
    total = sum(times)
    kc_max, kt_max = max(k[0] for k in ks), max(k[1] for k in ks)
    row.update(
        status="ok" if bool(torch.isfinite(torch.stack(losses)).all()) else "non-finite loss",
        steps=len(times), step_ms_median=round(1e3 * statistics.median(times), 2),
        samples_per_s=round(batch * len(times) / total, 2),
        tokens_per_s=round(batch * len(times) * cfg.num_patches / total),
        tflops_per_s=_sig(flops / total / 1e12), mfu=_sig(flops / total / peak),  # a tiny CPU dry run is ~1e-5
        flops_per_sample=round(flops / (batch * len(times))),
        mean_k_context=round(statistics.mean(k[0] for k in ks), 1),
        mean_k_target=round(statistics.mean(k[1] for k in ks), 1),
        graphs_compiled=graphs_compiled() - graphs0,
        peak_mem_gib=round(torch.cuda.max_memory_allocated(device) / GIB, 3) if device.type == "cuda" else None,
        estimated_mem_gib=round(step_memory_bytes(cfg, kc_max, kt_max, batch, bf16=dtype == torch.bfloat16,
                                                  grad_checkpointing=mode == "eager_ckpt") / GIB, 3),
    )
    return row


# ------------------------------------------------------------------------------------------------ recompile probe
def recompile_probe(cfg: ModelConfig, args: argparse.Namespace, device: torch.device,
                    dtype: torch.dtype) -> dict[str, Any]:
    """Graphs built over `probe_steps` forward passes whose mask lengths vary, per way of compiling.

    static: dynamic=False (one graph per new shape, until torch's recompile limit); automatic: torch's default
    (static first, then dynamic after the first change); marked: batch and token dimensions marked dynamic up
    front (what the `compile` mode does). Recompilation depends on shapes only, so the probe runs a one-block
    encoder and predictor of the same width, under no_grad, with the `eager` backend (tracing without codegen).
    """
    shallow = cfg.replace(depth=1, pred_depth=1)
    model = BrainJEPA(shallow, torch.randn(shallow.num_rois, shallow.gradient_dim)).to(device)
    batches = make_batches(shallow, args.batches[0], args.probe_steps, device, seed=1)
    shapes = {(b[1].shape[1], b[2].shape[1]) for b in batches}
    result: dict[str, Any] = {"steps": args.probe_steps, "distinct_shapes": len(shapes),
                              "model": f"depth 1, pred depth 1, width {shallow.embed_dim}/{shallow.pred_embed_dim}"}
    amp = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
    for name, dynamic, marked in (("static", False, False), ("automatic", None, False), ("marked", None, True)):
        torch._dynamo.reset()
        forward = torch.compile(model, backend="eager", dynamic=dynamic)
        before = graphs_compiled()
        with torch.no_grad(), amp:
            for batch in batches:
                x, ctx, tgt = (t.to(device, non_blocking=True) for t in batch)
                if marked:
                    mark_dynamic(x, ctx, tgt)
                forward(x, ctx, tgt)
        result[name] = graphs_compiled() - before
    torch._dynamo.reset()
    return result


# ------------------------------------------------------------------------------------------------ sweep
def build(args: argparse.Namespace, device: torch.device) -> tuple[BrainJEPA, torch.optim.Optimizer]:
    if args.tiny:
        cfg = model_config("vit_tiny", num_rois=40, num_frames=64, embed_dim=64, depth=2, num_heads=2,
                           pred_embed_dim=32, pred_depth=1)
    else:  # the paper's model: ViT-B encoder, 384 x 6 predictor, 450 ROIs x 160 frames, 30 gradient components
        cfg = model_config("vit_base", num_rois=450, num_frames=160, pred_embed_dim=384, pred_depth=6)
    torch.manual_seed(0)
    model = BrainJEPA(cfg, torch.randn(cfg.num_rois, cfg.gradient_dim)).to(device).train()
    optimizer = torch.optim.AdamW(model.param_groups(0.04), lr=1e-4, fused=True)
    return model, optimizer


def sweep(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    start = time.perf_counter()
    choice = choose_precision(device, args.precision)
    print(f"precision: {choice.name} ({choice.reason})", flush=True)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers (loss, norms) may use TF32 tensor cores
    n = args.matmul_size or (8192 if device.type == "cuda" else 1024)
    peak = matmul_peak(device, choice.dtype, n, reps=10 if device.type == "cuda" else 3)
    print(f"{choice.name} dense matmul peak ({n}^3): {peak / 1e12:.3g} TFLOP/s", flush=True)
    model, optimizer = build(args, device)
    cfg = model.config
    compiled = torch.compile(model, backend=args.compile_backend) if "compile" in args.modes else None
    rows: list[dict[str, Any]] = []
    last: dict[str, float] = {}
    for mode in args.modes:
        for batch in args.batches:
            used = time.perf_counter() - start
            if used + last.get(mode, 0.0) > args.budget_s:
                rows.append({"mode": mode, "batch": batch, "status": "skipped: time budget"})
                continue
            t0 = time.perf_counter()
            try:
                row = run_config(model, compiled if mode == "compile" else model, optimizer, mode, batch, args,
                                 device, choice.dtype, peak)
            except Exception as err:  # one broken configuration must not lose the others' figures
                row = {"mode": mode, "batch": batch, "status": f"error: {type(err).__name__}: {err}".split("\n")[0]}
                free_memory(device)
            last[mode] = time.perf_counter() - t0
            row["wall_s"] = round(last[mode], 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    probe: dict[str, Any] = {"status": "skipped: time budget"}
    if time.perf_counter() - start < args.budget_s:
        probe = recompile_probe(cfg, args, device, choice.dtype)
        print(f"graphs built over {probe['steps']} steps of varying mask lengths: static {probe['static']}, "
              f"automatic dynamic {probe['automatic']}, marked dynamic {probe['marked']}", flush=True)
    return {
        "model": {"embed_dim": cfg.embed_dim, "depth": cfg.depth, "num_heads": cfg.num_heads,
                  "pred_embed_dim": cfg.pred_embed_dim, "pred_depth": cfg.pred_depth, "num_rois": cfg.num_rois,
                  "num_frames": cfg.num_frames, "patch_size": cfg.patch_size, "tokens": cfg.num_patches},
        "masks": "reference defaults (MaskConfig())", "precision": choice.name, "precision_reason": choice.reason,
        "matmul_peak_tflops": round(peak / 1e12, 4), "matmul_size": n, "compile_backend": args.compile_backend,
        "warmup_steps": args.warmup, "timed_steps": args.steps, "sweep": rows, "recompiles": probe,
        "sweep_s": round(time.perf_counter() - start, 1),
    }


# ------------------------------------------------------------------------------------------------ report
def read_tests(log: Path | None, rc: int | None) -> dict[str, Any] | None:
    """pytest's closing line (e.g. '4 passed in 31.2s') and exit code, from the log the check wrote."""
    if log is None:
        return None
    lines = [s.strip("= \n") for s in log.read_text().splitlines() if s.strip()] if log.is_file() else []
    return {"summary": lines[-1] if lines else "no output", "rc": rc}


def summary_line(result: dict[str, Any]) -> str:
    env, bench = result["environment"], result["bench"]
    ok = [r for r in bench["sweep"] if r.get("status") == "ok"]
    parts = [f"gpu_check: {env.get('gpu', env.get('cpu_model', 'cpu'))}"]
    if result.get("tests"):
        parts.append(f"cuda tests: {result['tests']['summary']}")
    if ok:
        best = max(ok, key=lambda r: r["mfu"])
        mem = f", {best['peak_mem_gib']} GiB" if best["peak_mem_gib"] is not None else ""
        parts.append(f"best {best['mode']} B{best['batch']} {bench['precision']}: {best['samples_per_s']} samples/s, "
                     f"MFU {best['mfu']:.3f} of {bench['matmul_peak_tflops']} TFLOP/s{mem}")
    failed = [f"{r['mode']} B{r['batch']} {r['status']}" for r in bench["sweep"] if r.get("status") != "ok"]
    parts.append(f"{len(ok)}/{len(bench['sweep'])} configs ok" + (f" ({'; '.join(failed)})" if failed else ""))
    probe = bench["recompiles"]
    if "static" in probe:
        parts.append(f"graphs static/auto/marked {probe['static']}/{probe['automatic']}/{probe['marked']}")
    parts.append(f"json {result['json']}")
    return " | ".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="auto (cuda if available), cuda or cpu")
    ap.add_argument("--tiny", action="store_true", help="a tiny model on 40 ROIs x 64 frames (dry run)")
    ap.add_argument("--batches", default="16,32,64", help="comma list of batch sizes")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"],
                    help="autocast dtype; auto: bf16 where native (brainjepa.precision.choose_precision)")
    ap.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compile mode")
    ap.add_argument("--matmul-size", type=int, default=None, help="n of the n^3 peak matmul (8192 GPU, 1024 CPU)")
    ap.add_argument("--probe-steps", type=int, default=6, help="forward passes of the recompilation probe")
    ap.add_argument("--budget-s", type=float, default=420.0,
                    help="start no configuration that would end after this many seconds of the sweep")
    ap.add_argument("--json", type=Path, default=None, help="write every figure to this JSON file")
    ap.add_argument("--tests-log", type=Path, default=None, help="pytest log of the CUDA tests, for the JSON")
    ap.add_argument("--tests-rc", type=int, default=None, help="pytest's exit code, for the JSON")
    ap.add_argument("--env", action="store_true", help="print the environment and exit")
    args = ap.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.modes = args.modes.split(",")
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        ap.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda, but torch sees no CUDA device (torch " + torch.__version__ + ")")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    env = environment(device)
    if args.env:
        for key, value in env.items():
            print(f"{key}: {value}")
        return 0
    result = {"environment": env, "tests": read_tests(args.tests_log, args.tests_rc), "bench": sweep(args, device),
              "json": str(args.json) if args.json else None}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(summary_line(result), flush=True)
    broken = [r for r in result["bench"]["sweep"] if r["status"] not in ("ok", "oom", "skipped: time budget")]
    return 1 if broken or (args.tests_rc or 0) != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
