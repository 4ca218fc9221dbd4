"""`brainjepa info`: versions, threads and precision support, for bug reports."""

from __future__ import annotations

import argparse
import platform

import numpy
import torch

from brainjepa import __version__


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print versions, thread count and bf16 support")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(f"brainjepa {__version__}")
    print(f"python {platform.python_version()}  torch {torch.__version__}  numpy {numpy.__version__}")
    print(f"cpu threads {torch.get_num_threads()}  cuda {torch.cuda.is_available()}")
    print(f"bf16 on cpu: {torch.backends.mkldnn.is_available()} (oneDNN)")
    return 0
