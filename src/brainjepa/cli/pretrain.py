"""`brainjepa pretrain`: JEPA pretraining from a YAML config plus dotted overrides (torchrun-ready)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from brainjepa.cli.arguments import intermixed
from brainjepa.config import TrainConfig, load_config
from brainjepa.errors import ConfigError
from brainjepa.training import pretrain
from brainjepa.training.checkpoint import list_checkpoints
from brainjepa.training.estimate import RunEstimate, estimate_run
from brainjepa.training.interrupt import Interrupted
from brainjepa.training.rundir import check_run_dir

GIB = 2**30
TIMED_STEPS = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = intermixed(sub.add_parser(
        "pretrain", help="pretrain Brain-JEPA on a store (one process, or many under torchrun)",
        description="Pretrain Brain-JEPA. The config has sections model, mask, data, optimization, logging and meta; "
        "the reference's YAML keys (e.g. meta.model_name, data.crop_size, mask.patch_size) are read too and mapped "
        "onto them (docs/pretraining.md). Keys left out take the reference defaults. Example: brainjepa pretrain "
        "--config configs/small_cpu.yaml --out runs/small data.path=sim optimization.epochs=5",
    ))
    p.add_argument("--config", help="YAML config file (default: reference defaults only)")
    p.add_argument("--out", help="run folder (default: the config's logging.folder/logging.write_tag)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest valid checkpoint")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (YAML) and the run's estimated optimizer steps, time and peak "
                   "memory, then exit without training (the estimate builds the run and times a few steps); with "
                   "--out or --resume, the run folder is checked as the run would check it")
    p.add_argument("--timed-steps", type=int, default=None, metavar="N",
                   help=f"with --print-config: optimizer steps timed after one warm-up step (default {TIMED_STEPS}; "
                   "0: no timing, no time estimate)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars (log lines stay)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides, schema or reference keys, e.g. optimization.epochs=5 data.batch_size=8 "
                   "meta.model_name=vit_tiny model.embed_dim=96; they replace what the file sets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.timed_steps is not None and not args.print_config:
        raise ConfigError("--timed-steps only applies with --print-config")
    if args.timed_steps is not None and args.timed_steps < 0:
        raise ConfigError(f"--timed-steps must be 0 or more, got {args.timed_steps}")
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        run_dir = Path(args.out) if args.out else cfg.logging.run_dir if args.resume else None
        return print_config(cfg, TIMED_STEPS if args.timed_steps is None else args.timed_steps, run_dir, args.resume)
    try:
        run_dir = pretrain(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    except Interrupted as stop:  # SIGINT / SIGTERM: a checkpoint was saved; one line, exit 128 + signal
        print(f"brainjepa pretrain: {stop}", file=sys.stderr)
        return stop.exit_code
    print(f"run folder: {run_dir}  (weights: {run_dir / 'model'}, curves: {run_dir / 'training_curves.png'})")
    return 0


def print_config(cfg: TrainConfig, timed_steps: int, run_dir: Path | None = None, resume: bool = False) -> int:
    """The resolved config as YAML on stdout, then the estimate as YAML comments (stdout stays a loadable config).
    With a run folder (--out, --resume), it is checked as the run would check it, and what the run would do there
    is said first; nothing is written."""
    if run_dir is not None:
        check_run_dir(run_dir, cfg, resume)  # the run's own refusals, before any work
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    if run_dir is not None:
        newest = list_checkpoints(run_dir)[-1].name if resume else None
        print(f"# run folder: {run_dir}: " + (f"resumes from {newest} (the estimate below is for the whole run)"
                                               if newest else "a new run"))
    sys.stdout.flush()  # the config shows while the run is built and timed
    if cfg.data.path is None:
        print("# estimate: set data.path (the store) to count the steps and time them")
        return 0
    for line in estimate_lines(estimate_run(cfg, timed_steps=timed_steps)):
        print(f"# {line}")
    return 0


def estimate_lines(est: RunEstimate) -> list[str]:
    """The estimate, one fact a line, each saying how it was obtained."""
    if est.seconds is None:
        time_line = "time: not estimated (--timed-steps 0)"
    else:
        time_line = (f"time: {_duration(est.seconds)} = {est.total_steps} steps x {est.step_seconds:.3f} s, the "
                     f"median of {est.timed_steps} timed step(s) after a warm-up step (start-up, held-out checks "
                     "and checkpoints not counted)")
    how = ("measured: torch.cuda.max_memory_allocated over the timed steps" if est.peak_measured
           else "analytic estimate of weights, optimizer state and activations (brainjepa.models.flops."
           "step_memory_bytes); not measured on a CPU")
    return [f"estimate for one process on {est.device}, precision {est.precision}:",
            f"steps: {est.total_steps} optimizer steps ({est.train_runs} training runs)",
            time_line,
            f"peak memory: {_size(est.peak_bytes)} ({how})"]


def _size(nbytes: int) -> str:
    return f"{nbytes / GIB:.2f} GiB" if nbytes >= GIB else f"{nbytes / 2**20:.1f} MiB"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
