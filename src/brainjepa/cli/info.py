"""`brainjepa info`: versions, CPU, threads, the precision `auto` picks and the timed decisions (precision,
attention kernel, batch size) stored on this machine, for bug reports; `--weights`: the known weights."""

from __future__ import annotations

import argparse
import platform

import numpy
import torch

from brainjepa import __version__
from brainjepa.models import onednn_attention
from brainjepa.models.weights import list_weights
from brainjepa.precision import choose_precision, cpu_name
from brainjepa.tuning import decisions_path, stored_decisions


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions, CPU, threads, the precision auto picks and the stored timed "
                       "decisions (--weights: the known weights)")
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
    print(f"cpu {cpu_name()}, {torch.get_num_threads()} threads  cuda {torch.cuda.is_available()}")
    choice = choose_precision("cpu")
    print(f"precision auto on cpu: {choice.name} ({choice.reason})")
    kernels = ("SDPA or oneDNN's fused kernel, whichever embed and pretraining time faster"
               if onednn_attention.available() else "SDPA (this torch build has no oneDNN fuser)")
    print(f"bf16 attention without gradient on cpu: {kernels}")
    stored = stored_decisions()
    where = decisions_path()
    if stored:
        print(f"timings stored in {where} (delete it to time again):")
        for key, decided in stored.items():
            print(f"  {key}: " + ", ".join(f"{what} {entry[0]}" for what, entry in decided.items()
                                           if isinstance(entry, list) and entry))
    else:
        print(f"timings: none stored yet ({where})")
    return 0
