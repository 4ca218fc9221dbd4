"""`brainjepa info`: versions, threads and precision support, for bug reports; `--weights`: the known weights."""

from __future__ import annotations

import argparse
import platform

import numpy
import torch

from brainjepa import __version__
from brainjepa.models.weights import list_weights


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions, thread count and bf16 support (--weights: the known weights)")
    p.add_argument("--weights", action="store_true",
                   help="list the known pretrained weights (names BrainJEPA.from_pretrained accepts) and their "
                   "Hub repositories; unpublished ones are marked so")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.weights:
        for w in list_weights():
            where = w.repo_id if w.published else "UNPUBLISHED (no Hub repository yet)"
            print(f"{w.name}  {where}\n    {w.description}")
            if not w.published:
                print(f"    meanwhile: {w.instead}")
        return 0
    print(f"brainjepa {__version__}")
    print(f"python {platform.python_version()}  torch {torch.__version__}  numpy {numpy.__version__}")
    print(f"cpu threads {torch.get_num_threads()}  cuda {torch.cuda.is_available()}")
    print(f"bf16 on cpu: {torch.backends.mkldnn.is_available()} (oneDNN)")
    return 0
