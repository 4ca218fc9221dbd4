"""Command-line interface: `brainjepa <command>` and `python -m brainjepa <command>`.

Each command lives in its own module exposing ``register(subparsers)``, which adds a parser whose
``func`` default receives the parsed namespace and returns an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from brainjepa import __version__
from brainjepa.cli import (
    align,
    embed,
    evaluate,
    finetune,
    gradients,
    info,
    prepare,
    pretrain,
    probe,
    quickstart,
    samples,
    simulate,
    validate,
)
from brainjepa.errors import BrainJEPAError

_COMMANDS = [quickstart, info, validate, prepare, simulate, samples, gradients, pretrain, embed, probe, evaluate,
             finetune, align]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainjepa",
        description="Brain-JEPA: self-supervised foundation model of brain dynamics (parcellated fMRI).",
    )
    parser.add_argument("--version", action="version", version=f"brainjepa {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process; returns the exit code (tests call this directly)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (BrainJEPAError, OSError) as err:
        # User errors (bad data, config, files): one clear line, no traceback unless --verbose.
        if args.verbose:
            raise
        print(f"brainjepa {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """The message on one line: wrapped library messages (pandas, YAML) often carry their own line breaks."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
