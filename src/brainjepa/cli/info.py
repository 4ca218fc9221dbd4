"""`brainjepa info`: versions, CPU, threads, the precision `auto` picks and the embedding timings stored on this
machine, for bug reports; `--weights`: the known weights."""

from __future__ import annotations

import argparse
import platform

import numpy
import torch

from brainjepa import __version__
from brainjepa.evaluation.tuning import decisions_path, stored_decisions
from brainjepa.models.weights import list_weights
from brainjepa.precision import choose_precision, cpu_name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions, CPU, threads, the precision auto picks and stored embedding "
                       "timings (--weights: the known weights)")
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
    stored = stored_decisions()
    where = decisions_path()
    if stored:
        print(f"embedding timings stored in {where} (delete it to time again):")
        for key, decided in stored.items():
            print(f"  {key}: " + ", ".join(f"{what} {entry[0]}" for what, entry in decided.items()
                                           if isinstance(entry, list) and entry))
    else:
        print(f"embedding timings: none stored yet ({where})")
    return 0
