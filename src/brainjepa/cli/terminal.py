"""What the CLI draws on the terminal: log lines that never land inside a progress bar, and bars only where a
person watches (stderr a terminal), so a Slurm log or a pipe gets the log lines without carriage-return noise."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import TextIO

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def show_progress(*, no_progress: bool, forced: bool, stream: TextIO | None = None) -> bool:
    """Whether to draw bars: never with --no-progress, always with --progress, else only when `stream` (default
    stderr, where tqdm draws) is a terminal."""
    if no_progress:
        return False
    if forced:
        return True
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def settle_progress(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Turn the command's --no-progress / --progress (when it has them) into the one decision its code reads:
    ``args.no_progress`` is True when no bar is to be drawn."""
    if not hasattr(args, "no_progress"):
        return
    forced = getattr(args, "force_progress", False)
    if forced and args.no_progress:
        parser.error("--progress and --no-progress contradict each other; give one")
    args.no_progress = not show_progress(no_progress=args.no_progress, forced=forced)


def configure_logging(verbose: bool) -> None:
    """INFO (DEBUG with -v) to stderr; the library itself never configures handlers."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)


@contextlib.contextmanager
def bars_and_logs() -> Iterator[None]:
    """While a command runs, the root logger's console output goes through tqdm.write, which clears an active bar,
    prints the line and redraws the bar below it (instead of gluing the line onto the bar)."""
    from tqdm.auto import tqdm  # here, not at the top: --help and --version start without it
    from tqdm.contrib.logging import logging_redirect_tqdm

    if not any(_console(h) for h in logging.getLogger().handlers):
        # No console output configured (main() called in-process under the caller's own logging, e.g. pytest):
        # logging_redirect_tqdm would add a console handler of its own, printing records nobody asked to see.
        yield
        return
    with logging_redirect_tqdm(tqdm_class=tqdm):
        yield


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """While a command runs, a library's warning (scikit-learn, nilearn) is one log line, ``WARNING
    brainjepa.warnings: UserWarning: ...``, not the message plus the library's source line printed past the bar."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001 (the signature)
        logging.getLogger("brainjepa.warnings").warning("%s: %s", category.__name__, " ".join(str(message).split()))

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def _console(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.stderr)
