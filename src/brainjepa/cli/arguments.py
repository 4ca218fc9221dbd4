"""Argument parsing shared by the commands: each subcommand reports its own errors, positionals may come before,
between or after the options, and the global options are accepted anywhere on the line.

argparse hands what a subcommand does not recognise back to the top-level parser, which then prints the top-level
usage (``usage: brainjepa [-h] ...``); a `CommandParser` refuses it itself, with ``usage: brainjepa pretrain ...``.

argparse matches a `nargs="*"` / `"+"` positional once, at its first run of values, so in
``brainjepa pretrain data.path=s --out run optimization.epochs=5`` the override after ``--out`` would be an
"unrecognized argument". `intermixed` makes a subcommand parser collect positionals wherever they appear
(argparse's own `parse_known_intermixed_args`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator


class CommandParser(argparse.ArgumentParser):
    """A subcommand parser that reports unrecognised arguments with its own usage line."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = self._parse(args, namespace)
        if extras and not self._has_subcommands():  # a nested command's parser has reported its own already
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def _parse(self, args, namespace):
        return super().parse_known_args(args, namespace)

    def _has_subcommands(self) -> bool:
        return any(isinstance(a, argparse._SubParsersAction) for a in self._actions)


class _IntermixedParser(CommandParser):
    """A subcommand parser whose positionals may be interleaved with its options."""

    _inner = False

    def _parse(self, args, namespace):
        if self._inner:  # parse_known_intermixed_args calls parse_known_args itself
            return super()._parse(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:  # the inner passes of the intermixed parse: extras are resolved by the outer one
            return self._parse(args, namespace)
        return super().parse_known_args(args, namespace)


def intermixed(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` (made by `subparsers.add_parser`), now collecting its positionals around and between options."""
    parser.__class__ = _IntermixedParser
    return parser


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v/--verbose on `parser`. The top-level parser sets the default; a subcommand's copy leaves the value alone
    unless given (SUPPRESS), so ``brainjepa -v pretrain`` and ``brainjepa pretrain ... -v`` mean the same."""
    parser.add_argument("-v", "--verbose", action="store_true", default=False if top else argparse.SUPPRESS,
                        help="log debug messages, and show the traceback of an error")


def add_force_progress(parser: argparse.ArgumentParser) -> None:
    """--progress beside a command's --no-progress: bars are drawn only when stderr is a terminal, unless forced."""
    parser.add_argument("--progress", dest="force_progress", action="store_true",
                        help="draw progress bars even when stderr is not a terminal (a Slurm log, a pipe); by "
                        "default they are drawn only on a terminal")


def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """`parser` and every subcommand parser below it, depth first."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from all_parsers(sub)


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string `parser` itself accepts."""
    return set(parser._option_string_actions)


def name_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """`message` with the Python names of this command's options replaced by its flags: a library check raised
    under the CLI says ``--batch-size must be ...``, not ``embed.batch_size must be ...``. Only names that cannot
    be prose are replaced: a dotted name (``simulation.subjects``) or one with an underscore (``n_components``).
    A ``(Python: ...)`` hint is the library's spelling on purpose and is left as written."""
    flags = {a.dest: max(a.option_strings, key=len) for a in parser._actions if a.option_strings}

    def flag(match: re.Match) -> str:
        prefix, name = match.group(1), match.group(2)
        if name in flags and (prefix or "_" in name):
            return flags[name]
        return match.group(0)

    parts = re.split(r"(\(Python: [^)]*\))", message)  # odd indices are the Python hints
    return "".join(part if i % 2 else re.sub(r"(?<![\w./-])(\w+\.)?([a-z]\w*)\b(?![.=(])", flag, part)
                   for i, part in enumerate(parts))
