"""Command-line interface: `brainjepa <command>` and `python -m brainjepa <command>`.

Each command lives in its own module exposing ``register(subparsers)``, which adds a parser whose
``func`` default receives the parsed namespace and returns an exit code. Command modules import their third-party
packages lazily, so this parser builds with the core install alone; `main` checks the command's extras
(`COMMAND_EXTRAS`) before it runs anything and refuses in one line, exit code 2, naming the extra to install.
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
from brainjepa.extras import hint_for_import_error, install_hint, missing

_COMMANDS = [quickstart, info, validate, prepare, simulate, samples, gradients, pretrain, embed, probe, evaluate,
             finetune, align]

# The extras each command needs (pyproject.toml [project.optional-dependencies], brainjepa.extras.EXTRAS), checked
# before the command starts. [hub] is never required: a Hub model id without it is refused where it is resolved.
# pretrain draws its training curves only when matplotlib is there (one warning line otherwise).
COMMAND_EXTRAS: dict[str, tuple[str, ...]] = {
    "quickstart": ("data", "viz"),  # its report is made of figures
    "info": (),
    "validate": ("data",),
    "prepare": ("data",),
    "simulate": ("data",),
    "samples": ("data",),
    "gradients": ("data",),
    "pretrain": ("data",),
    "embed": ("data",),
    "probe": ("data",),
    "evaluate": ("data",),  # evaluate.png only with [viz] (one warning line otherwise)
    "finetune": ("data",),
    "align": (),  # .npy in, .npy/.json out: torch and numpy only
}


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
    lacking = missing(COMMAND_EXTRAS[args.command])
    if lacking:
        print(install_hint(f"brainjepa {args.command}", lacking), file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except ImportError as err:
        # A package of an extra imported deeper than the table above foresaw: the same one line, never a traceback.
        hint = hint_for_import_error(f"brainjepa {args.command}", err)
        if hint is None or args.verbose:
            raise
        print(hint, file=sys.stderr)
        return 2
    except (BrainJEPAError, OSError) as err:
        # User errors (bad data, config, files): one clear line, no traceback unless --verbose.
        if args.verbose:
            raise
        print(f"brainjepa {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2


def one_line(err: BaseException) -> str:
    """The message on one line: wrapped library messages (pandas, YAML) often carry their own line breaks."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
