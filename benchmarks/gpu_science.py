"""The science audit's GPU run (G1 + G2), orchestrated: parallel pretraining processes on one GPU within a time
budget, everything written to OUT. Run through benchmarks/gpu_science.sh (which picks the Python); see its header.

G1, seed variance of the fixed pipeline: tiny models (configs/small_cpu.yaml: 96-d, depth 4) on the real store,
4 seeds x 2 input scales (`robust` = data.normalization=robust data.input_gain=1, the reference's scaling;
`zscore` = the default roi_zscore with the auto gain), batch 8, up to 5,280 steps (the CPU recipe study's longest
budget), all 8 as parallel processes. A probe first runs 50 steps of all 8 at once; the per-step wall time between
steps 10 and 50 (read from metrics.csv as it is written), the start-up and the exit time give the steps that fit
the phase's share of the budget (x 0.9), which replace 5,280 when fewer; optimization.epochs is set so the LR
schedule ends at that step (epochs = ceil(steps / batches per epoch), optimization.max_steps = steps).

G2, data scaling on surrogates: `brainjepa simulate --like STORE` makes 1k / 4k / 16k surrogate subjects
(nested: subject i is the same in every size; generated on the CPU while G1 trains). A small model (192-d, depth 6,
predictor 96-d depth 3) is pretrained on each at the same fixed number of steps (batch 32; fitted to the time left
after a 30-step probe, like G1), then its JEPA loss on the real store's centre windows with fixed masks, and that of
its random-init twin, is measured (benchmarks/gpu_science_loss.py): the whole real store is held out.

Every phase has a deadline; a process still running at its deadline (+20 s) gets SIGTERM (it checkpoints and
stops at the next step). OUT receives at most 8 files: gpu_science.json (plan, timings, every run's summary and
held-out curve, the real-data losses), gpu_science.log, and gzipped tars of the run folders (model weights cast to
bf16 to fit the 16 MiB-per-file transfer limit, metrics.csv, summary.json, config.yaml, the process log):
g1_robust.tar.gz, g1_zscore.tar.gz, g2_<size>.tar.gz. Evaluate on CPU: python benchmarks/gpu_science_eval.py OUT.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "small_cpu.yaml"
SCALES = {"robust": ["data.normalization=robust", "data.input_gain=1"], "zscore": []}
SMALL = ["model.embed_dim=192", "model.depth=6", "model.num_heads=6", "model.pred_embed_dim=96", "model.pred_depth=3"]
TINY = ["model.embed_dim=32", "model.depth=2", "model.num_heads=2", "model.pred_embed_dim=16", "model.pred_depth=1"]
HOLDOUT = 0.05
GRACE_S = 20.0
RESERVE_S = 40.0  # kept at the end for the real-data losses, the tars and the JSON
POLL_S = 0.2


def log(msg: str) -> None:
    line = f"[gpu_science {time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if LOG is not None:
        LOG.write(line + "\n")
        LOG.flush()


LOG: io.TextIOBase | None = None


# ------------------------------------------------------------------------------------------------ processes
@dataclass
class Child:
    """One pretraining (or simulate) process: its folder, log, and when its metrics.csv reached each step."""

    name: str
    cmd: list[str]
    run_dir: Path | None
    log_path: Path
    proc: subprocess.Popen | None = None
    started: float = 0.0
    ended: float | None = None
    seen: dict[int, float] = field(default_factory=dict)  # step -> first time its row was in metrics.csv
    signalled: bool = False
    killed: bool = False

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        with open(self.log_path, "w") as fh:
            self.proc = subprocess.Popen(self.cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)

    def rows(self) -> int:
        path = self.run_dir / "metrics.csv" if self.run_dir else None
        if path is None or not path.is_file():
            return 0
        with open(path, "rb") as fh:
            return max(fh.read().count(b"\n") - 1, 0)

    def poll(self, marks: tuple[int, ...] = ()) -> bool:
        """Record step marks; True while running."""
        if marks:
            n, now = self.rows(), time.monotonic()
            for m in marks:
                if n >= m and m not in self.seen:
                    self.seen[m] = now
        if self.ended is None and self.proc.poll() is not None:
            self.ended = time.monotonic()
        return self.ended is None

    @property
    def rc(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def wall(self) -> float:
        return (self.ended or time.monotonic()) - self.started


def run_all(children: list[Child], env: dict[str, str], deadline: float, marks: tuple[int, ...] = ()) -> None:
    """Start every child, poll until all exit; SIGTERM at the deadline, SIGKILL GRACE_S later."""
    for c in children:
        c.start(env)
    while any(c.poll(marks) for c in children):
        now = time.monotonic()
        for c in children:
            if c.ended is None and now > deadline and not c.signalled:
                log(f"{c.name}: past the phase deadline, SIGTERM (it checkpoints and stops)")
                c.proc.send_signal(signal.SIGTERM)
                c.signalled = True
            elif c.ended is None and now > deadline + GRACE_S and not c.killed:
                log(f"{c.name}: still running {GRACE_S:.0f} s after SIGTERM, SIGKILL")
                c.proc.kill()
                c.killed = True
        time.sleep(POLL_S)
    for c in children:
        c.poll(marks)
        state = "ok" if c.rc == 0 else f"exit {c.rc}"
        log(f"{c.name}: {state} after {c.wall():.1f} s ({c.rows()} steps logged)")
        if c.rc != 0:
            tail = c.log_path.read_text(errors="replace").strip().splitlines()[-8:]
            log("  | " + "\n  | ".join(tail))


# ------------------------------------------------------------------------------------------------ planning
def batches_per_epoch(store: Path, seed: int, batch: int) -> int:
    from brainjepa.data.store import RunStore
    from brainjepa.training.watch import holdout_split

    train, _ = holdout_split(RunStore(store), HOLDOUT, seed)
    return max(len(train) // batch, 1)


def schedule(steps: int, ipe: int) -> list[str]:
    """Overrides that end the LR schedule at `steps` (warmup a tenth of it, as in the recipe study)."""
    epochs = max(math.ceil(steps / ipe), 1)
    return [f"optimization.epochs={epochs}", f"optimization.warmup={epochs / 10:g}", f"optimization.max_steps={steps}"]


def probe_rate(children: list[Child], lo: int, hi: int) -> dict[str, float]:
    """Per-step wall time (slowest child, steps lo..hi), start-up (launch to step lo, less lo steps) and exit time."""
    per, start, tail = [], [], []
    for c in children:
        if lo not in c.seen or hi not in c.seen:
            raise RuntimeError(f"probe {c.name} did not reach step {hi} (exit {c.rc}); see {c.log_path}")
        rate = max((c.seen[hi] - c.seen[lo]) / (hi - lo), 1e-4)
        per.append(rate)
        start.append(c.seen[lo] - c.started - lo * rate)
        tail.append((c.ended or c.seen[hi]) - c.seen[hi])
    return {"step_s": max(per), "startup_s": max(start), "exit_s": max(tail), "step_s_each": per}


def fit_steps(rate: dict[str, float], seconds: float, wanted: int, minimum: int) -> int:
    usable = 0.9 * (seconds - rate["startup_s"] - rate["exit_s"])
    return int(max(minimum, min(wanted, usable // rate["step_s"])))


# ------------------------------------------------------------------------------------------------ results
def model_dir(run: Path) -> Path | None:
    """run/model, else the newest checkpoint folder (a run stopped by SIGTERM exports no model/)."""
    if (run / "model" / "model.safetensors").is_file():
        return run / "model"
    steps = sorted((run / "checkpoints").glob("step-*")) if (run / "checkpoints").is_dir() else []
    return steps[-1] if steps else None


def run_record(c: Child) -> dict[str, Any]:
    """What the JSON keeps of a run: exit, wall time, summary.json, last training loss, held-out curve."""
    import csv

    rec: dict[str, Any] = {"name": c.name, "exit": c.rc, "wall_s": round(c.wall(), 2), "run_dir": str(c.run_dir)}
    summary = c.run_dir / "summary.json"
    rec["summary"] = json.loads(summary.read_text()) if summary.is_file() else None
    metrics = c.run_dir / "metrics.csv"
    if metrics.is_file():
        with open(metrics, newline="") as fh:
            rows = list(csv.DictReader(fh))
        rec["steps_logged"] = len(rows)
        if rows:
            rec["final_loss"] = float(rows[-1]["loss"])
            rec["mean_step_time_s"] = sum(float(r["step_time_s"]) for r in rows) / len(rows)
        keep = ("heldout_loss", "block_ratio", "run_share", "patch_norm", "pos_norm")
        rec["curve"] = [{"step": int(r["step"]), "loss": float(r["loss"]),
                         **{k: float(r[k]) for k in keep if r.get(k) not in (None, "")}}
                        for r in rows if r.get("heldout_loss") not in (None, "")]
    return rec


def pack(children: list[Child], tar_path: Path) -> dict[str, Any]:
    """tar.gz of the runs: model weights cast to bf16 (gradient buffer kept fp32), config, metrics, summary, log."""
    import torch
    from safetensors.torch import load_file, save_file

    with tarfile.open(tar_path, "w:gz") as tar:
        for c in children:
            base = c.name
            for name in ("metrics.csv", "summary.json", "config.yaml", "gradients.csv"):
                if (c.run_dir / name).is_file():
                    tar.add(c.run_dir / name, arcname=f"{base}/{name}")
            tar.add(c.log_path, arcname=f"{base}/process.log")
            weights = model_dir(c.run_dir)
            if weights is None:
                continue
            state = load_file(str(weights / "model.safetensors"))
            state = {k: (v.to(torch.bfloat16) if v.is_floating_point() and not k.endswith("pos_embed.gradient")
                         else v).contiguous() for k, v in state.items()}
            buf = c.run_dir / "model_bf16.safetensors"
            save_file(state, str(buf))
            tar.add(buf, arcname=f"{base}/model/model.safetensors")
            tar.add(weights / "config.json", arcname=f"{base}/model/config.json")
    size = tar_path.stat().st_size
    if size > 16 * 2**20:
        log(f"WARNING: {tar_path.name} is {size / 2**20:.1f} MiB, over the 16 MiB a returned file may have")
    return {"file": tar_path.name, "mib": round(size / 2**20, 2)}


def environment(device: str) -> dict[str, Any]:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
           "cpu_count": os.cpu_count(), "cuda_available": torch.cuda.is_available()}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


# ------------------------------------------------------------------------------------------------ main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="G1 + G2 of the science audit on one GPU (see the module docstring)")
    p.add_argument("--store", required=True, help="the real store (e.g. a carried runs/gpu_science_in/store)")
    p.add_argument("--gradients", required=True, help="its gradients CSV (brainjepa gradients; BrainSpace is not "
                   "needed on the GPU machine)")
    p.add_argument("--events", help="events folder for the surrogates' evoked part (default: none)")
    p.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "benchmarks" / "out" / "gpu_science"),
                   help="where the JSON, log and tars go (default $OUT, else benchmarks/out/gpu_science)")
    p.add_argument("--work", default=None, help="scratch folder for stores and run folders (default: a temp dir)")
    p.add_argument("--device", default="cuda", help="cuda (the real run) or cpu (a tiny dry run, < 1 minute)")
    p.add_argument("--budget-s", type=float, default=None, help="seconds the whole script may take (default 480)")
    p.add_argument("--g1-share", type=float, default=0.5, help="share of the budget before G2 starts (default 0.5)")
    p.add_argument("--seeds", default=None, help="G1 seeds (default 0,1,2,3)")
    p.add_argument("--g1-steps", type=int, default=None, help="G1 steps wanted (default 5280; fewer if they do not "
                   "fit)")
    p.add_argument("--g1-batch", type=int, default=None, help="G1 batch size (default 8)")
    p.add_argument("--sizes", default=None, help="G2 surrogate subject counts (default 1000,4000,16000)")
    p.add_argument("--g2-steps", type=int, default=None, help="G2 steps wanted, the same for every size (default "
                   "20000; fewer if they do not fit)")
    p.add_argument("--g2-batch", type=int, default=None, help="G2 batch size (default 32)")
    p.add_argument("--probe-steps", type=int, default=None, help="steps of each timing probe (default 50; 0 skips "
                   "the probes and runs the steps wanted)")
    p.add_argument("--tiny", action="store_true", help="tiny models in both phases (the dry run's)")
    args = p.parse_args(argv)
    dry = args.device == "cpu"
    defaults = {"budget_s": 300.0 if dry else 480.0, "seeds": "0" if dry else "0,1,2,3",
                "g1_steps": 3 if dry else 5280, "g1_batch": 4 if dry else 8, "sizes": "16,32" if dry else
                "1000,4000,16000", "g2_steps": 3 if dry else 20000, "g2_batch": 4 if dry else 32,
                "probe_steps": 0 if dry else 50}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.tiny = args.tiny or dry
    args.seeds = [int(s) for s in str(args.seeds).split(",")]
    args.sizes = [int(s) for s in str(args.sizes).split(",")]
    return args


def make_surrogates(argv: list[str]) -> int:
    """`gpu_science.py surrogates STORE EVENTS WORK SIZES`: `surrogate_store` into WORK/sur_<size> for each size
    (EVENTS "" = the store's own link, if any), the statistics fitted once; WORK/surrogates.json has the timings."""
    from brainjepa.data.simulate import SurrogateConfig, fit_store_statistics, surrogate_store

    store, events, work, sizes = argv[0], argv[1] or None, Path(argv[2]), [int(n) for n in argv[3].split(",")]
    t = time.perf_counter()
    stats = fit_store_statistics(store, events=events, progress=False)
    fit_s = time.perf_counter() - t
    made = []
    for n in sizes:
        t = time.perf_counter()
        surrogate_store(work / f"sur_{size_name(n)}", store, SurrogateConfig(subjects=n), stats=stats,
                        progress=False)
        made.append({"subjects": n, "compute_s": round(time.perf_counter() - t, 2)})
        print(f"surrogates {n}: {made[-1]['compute_s']} s", flush=True)
    (work / "surrogates.json").write_text(json.dumps({"fit_s": round(fit_s, 2), "sizes": made}) + "\n")
    return 0


def size_name(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def main(argv: list[str] | None = None) -> int:
    global LOG
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["surrogates"]:
        return make_surrogates(argv[1:])
    args = parse(argv)
    t0 = time.monotonic()
    end = t0 + args.budget_s
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(os.environ.get("TMPDIR", "/tmp")) / f"gpu_science_{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    LOG = open(out / "gpu_science.log", "w")  # noqa: SIM115 - closed at exit
    dry = args.device == "cpu"
    py = sys.executable
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "PYTHONUNBUFFERED": "1"}
    from brainjepa.data.store import RunStore

    store = RunStore(args.store)
    rois = store.num_rois
    result: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "device": args.device,
                              "environment": environment(args.device), "budget_s": args.budget_s,
                              "store": {"path": str(args.store), "runs": len(store), "rois": rois},
                              "plan": {}, "timings": {}, "g1": [], "g2": [], "failures": []}
    json_path = out / "gpu_science.json"

    def save() -> None:
        result["timings"]["total_s"] = round(time.monotonic() - t0, 1)
        json_path.write_text(json.dumps(result, indent=1) + "\n")

    workers = "0" if dry else "1"
    common = [f"data.path={args.store}", f"data.crop_size=[{rois},160]", f"data.gradient_csv_path={args.gradients}",
              f"meta.device={args.device}", f"meta.precision={'fp32' if dry else 'bf16'}", f"data.holdout={HOLDOUT}",
              f"data.num_workers={workers}", f"data.pin_mem={'false' if dry else 'true'}", "logging.keep_last=1",
              "logging.checkpoint_every=1000000", "logging.collapse_every=50", "meta.accumulation_steps=1"]
    model = TINY if args.tiny else []

    # ------------------------------------------------------------------ surrogates (CPU, while G1 trains)
    # One process fits the store's statistics once and writes every size (nested: subject i is the same in all).
    cmd = [py, str(Path(__file__).resolve()), "surrogates", str(args.store), str(args.events or ""), str(work),
           ",".join(map(str, args.sizes))]
    sim = Child("surrogates", cmd, None, work / "logs" / "surrogates.log")
    sim.start(env)
    log(f"generating surrogates {args.sizes} in the background")

    # ------------------------------------------------------------------ G1
    g1_end = t0 + args.g1_share * (args.budget_s - RESERVE_S)
    ipe = {s: batches_per_epoch(Path(args.store), s, args.g1_batch) for s in args.seeds}

    def g1_children(tag: str, steps: int, extra: list[str]) -> list[Child]:
        kids = []
        for scale, over in SCALES.items():
            for s in args.seeds:
                name = f"g1_{scale}_s{s}"
                run = work / tag / name
                cmd = [py, "-m", "brainjepa", "pretrain", "--config", str(CONFIG), "--out", str(run), *common, *model,
                       *over, f"meta.seed={s}", f"data.batch_size={args.g1_batch}", *schedule(steps, ipe[s]), *extra]
                kids.append(Child(name, cmd, run, work / "logs" / tag / f"{name}.log"))
        return kids

    def probed_steps(label: str, children, lo: int, hi: int, deadline: float, wanted: int) -> int:
        """Time `hi` steps of the phase's runs in parallel and return the step count that fits until `deadline`
        (RuntimeError when the probe could not be timed)."""
        probe = children(f"probe_{label}", hi, [f"logging.log_every={lo}", "logging.eval_every=1000000"])
        log(f"{label.upper()} probe: {len(probe)} runs x {hi} steps in parallel")
        run_all(probe, env, deadline, marks=(lo, hi))
        rate = probe_rate(probe, lo, hi)
        steps = fit_steps(rate, deadline - time.monotonic(), wanted, minimum=hi)
        result["plan"][f"{label}_probe"] = {k: ([round(x, 4) for x in v] if isinstance(v, list) else round(v, 4))
                                            for k, v in rate.items()}
        log(f"{label.upper()} probe: {rate['step_s'] * 1000:.1f} ms/step with {len(probe)} concurrent runs, "
            f"start-up {rate['startup_s']:.1f} s, exit {rate['exit_s']:.1f} s -> {steps} steps (wanted {wanted})")
        return steps

    g1_steps = args.g1_steps
    if args.probe_steps:
        try:
            g1_steps = probed_steps("g1", g1_children, min(10, args.probe_steps // 2), args.probe_steps, g1_end,
                                    args.g1_steps)
        except RuntimeError as err:  # G1 is skipped; G2 still runs
            result["failures"].append(str(err))
            log(f"{err}; skipping G1")
            g1_steps = 0
    result["plan"]["g1"] = {"steps": g1_steps, "wanted": args.g1_steps, "batch": args.g1_batch,
                            "seeds": args.seeds, "scales": SCALES, "batches_per_epoch": ipe,
                            "model": "tiny (32-d, depth 2)" if args.tiny else "configs/small_cpu.yaml (96-d, depth 4)"}
    save()
    g1 = g1_children("g1", g1_steps, ["logging.log_every=50", f"logging.eval_every={max(g1_steps // 20, 1)}"]
                     ) if g1_steps else []
    log(f"G1: {len(g1)} runs x {g1_steps} steps in parallel")
    t = time.monotonic()
    run_all(g1, env, g1_end)
    result["timings"]["g1_s"] = round(time.monotonic() - t, 1)
    result["g1"] = [run_record(c) for c in g1]
    result["failures"] += [f"{c.name}: exit {c.rc}" for c in g1 if c.rc != 0]
    save()

    # ------------------------------------------------------------------ surrogates done?
    while sim.poll():
        time.sleep(POLL_S)
    made = work / "surrogates.json"
    result["surrogates"] = json.loads(made.read_text()) if made.is_file() else {"sizes": []}
    result["surrogates"]["wall_s"] = round(sim.wall(), 1)
    log(f"surrogates: exit {sim.rc} after {sim.wall():.1f} s wall: " + ", ".join(
        f"{s['subjects']} in {s['compute_s']} s" for s in result["surrogates"]["sizes"]))
    if sim.rc != 0:
        tail = sim.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        result["failures"].append(f"surrogates: exit {sim.rc}: {' / '.join(tail)}")
    save()
    sizes = [s["subjects"] for s in result["surrogates"]["sizes"]]

    # ------------------------------------------------------------------ G2
    g2_end = end - RESERVE_S
    g2_ipe = {n: batches_per_epoch(work / f"sur_{size_name(n)}", 0, args.g2_batch) for n in sizes}
    small = TINY if args.tiny else SMALL

    def g2_children(tag: str, steps: int, extra: list[str]) -> list[Child]:
        kids = []
        for n in sizes:
            name = f"g2_{size_name(n)}"
            run = work / tag / name
            over = [o.replace(f"data.path={args.store}", f"data.path={work / f'sur_{size_name(n)}'}") for o in common]
            cmd = [py, "-m", "brainjepa", "pretrain", "--config", str(CONFIG), "--out", str(run), *over, *small,
                   "meta.seed=0", f"data.batch_size={args.g2_batch}", *schedule(steps, g2_ipe[n]), *extra]
            kids.append(Child(name, cmd, run, work / "logs" / tag / f"{name}.log"))
        return kids

    g2_steps = args.g2_steps
    if args.probe_steps and sizes:
        hi = max(args.probe_steps * 3 // 5, 2)
        try:
            g2_steps = probed_steps("g2", g2_children, min(10, hi // 2), hi, g2_end, args.g2_steps)
        except RuntimeError as err:
            result["failures"].append(str(err))
            log(str(err))
            sizes = []
    result["plan"]["g2"] = {"steps": g2_steps, "wanted": args.g2_steps, "batch": args.g2_batch, "sizes": sizes,
                            "batches_per_epoch": g2_ipe, "epochs": {n: math.ceil(g2_steps / g2_ipe[n]) for n in sizes},
                            "model": "tiny (32-d, depth 2)" if args.tiny else "small (192-d, depth 6)"}
    save()
    g2 = g2_children("g2", g2_steps, ["logging.log_every=50", f"logging.eval_every={max(g2_steps // 20, 1)}"])
    if g2:
        log(f"G2: {len(g2)} runs x {g2_steps} steps in parallel")
        t = time.monotonic()
        run_all(g2, env, g2_end)
        result["timings"]["g2_s"] = round(time.monotonic() - t, 1)
    result["failures"] += [f"{c.name}: exit {c.rc}" for c in g2 if c.rc != 0]

    # ------------------------------------------------------------------ real-data losses, tars, JSON
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gpu_science_loss import real_losses

    t = time.monotonic()
    for c, n in zip(g2, sizes, strict=True):
        rec = run_record(c)
        rec["subjects"] = n
        weights = model_dir(c.run_dir)
        if weights is not None:
            rec["real"] = real_losses(store, [weights], device=args.device)[0]
            log(f"G2 {size_name(n)}: real-data JEPA loss {rec['real']['loss']:.5f} "
                f"(random init {rec['real']['random_init_loss']:.5f})")
        result["g2"].append(rec)
    result["timings"]["real_loss_s"] = round(time.monotonic() - t, 1)
    save()
    t = time.monotonic()
    result["files"] = []
    for scale in SCALES:
        kids = [c for c in g1 if c.name.startswith(f"g1_{scale}_")]
        result["files"].append(pack(kids, out / f"g1_{scale}.tar.gz"))
    for c, n in zip(g2, sizes, strict=True):
        result["files"].append(pack([c], out / f"g2_{size_name(n)}.tar.gz"))
    result["timings"]["pack_s"] = round(time.monotonic() - t, 1)
    save()
    shutil.rmtree(work, ignore_errors=True)
    ok = not result["failures"]
    failed = "" if ok else f"; FAILURES: {result['failures']}"
    log(f"done in {time.monotonic() - t0:.0f} s (budget {args.budget_s:.0f} s): G1 {len(g1)} runs x {g1_steps} "
        f"steps, G2 sizes {sizes} x {g2_steps} steps; {json_path}{failed}")
    LOG.close()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
