"""`brainjepa pretrain`: JEPA pretraining from a YAML config plus dotted overrides (torchrun-ready)."""

from __future__ import annotations

import argparse
import sys

from brainjepa.cli.arguments import intermixed
from brainjepa.config import load_config
from brainjepa.training import pretrain
from brainjepa.training.interrupt import Interrupted


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
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides, schema or reference keys, e.g. optimization.epochs=5 data.batch_size=8 "
                   "meta.model_name=vit_tiny model.embed_dim=96; they replace what the file sets")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    try:
        run_dir = pretrain(cfg, args.out, resume=args.resume)
    except Interrupted as stop:  # SIGINT / SIGTERM: a checkpoint was saved; one line, exit 128 + signal
        print(f"brainjepa pretrain: {stop}", file=sys.stderr)
        return stop.exit_code
    print(f"run folder: {run_dir}  (weights: {run_dir / 'model'}, curves: {run_dir / 'training_curves.png'})")
    return 0
