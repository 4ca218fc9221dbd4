"""Argument parsing shared by the commands: positionals may come before, between or after the options.

argparse matches a `nargs="*"` / `"+"` positional once, at its first run of values, so in
``brainjepa pretrain data.path=s --out run optimization.epochs=5`` the override after ``--out`` would be an
"unrecognized argument". `intermixed` makes a subcommand parser collect positionals wherever they appear
(argparse's own `parse_known_intermixed_args`).
"""

from __future__ import annotations

import argparse


class _IntermixedParser(argparse.ArgumentParser):
    """A subcommand parser whose positionals may be interleaved with its options."""

    _inner = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inner:  # parse_known_intermixed_args calls parse_known_args itself
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def intermixed(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` (made by `subparsers.add_parser`), now collecting its positionals around and between options."""
    parser.__class__ = _IntermixedParser
    return parser
