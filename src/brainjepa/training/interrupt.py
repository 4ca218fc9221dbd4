"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (schedulers, `kill`, torchrun passing on a stop).

While training, `StopSignals` replaces both handlers with one that only records the signal; the loop reads it at
the next step boundary, saves a checkpoint and raises `Interrupted`, which the CLI prints as one line with exit
code 128 + signal (130, 143). A step is never cut in half and no traceback is shown. The previous handlers are
restored on exit.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from brainjepa.errors import TrainingError

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(TrainingError):
    """The run stopped on a signal at a step boundary, after saving a checkpoint."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class StopSignals:
    """Context manager: while active, SIGINT and SIGTERM set `signum` instead of stopping the process.

    Only the main thread can install handlers; elsewhere (a notebook's worker thread) the defaults stay.
    """

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.signum:
            logger.warning("%s received: stopping after this step (a checkpoint will be saved)",
                           signal.Signals(signum).name)
        self.signum = signum
