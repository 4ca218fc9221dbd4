"""The run folder: one process per folder, and a start that fails leaves nothing behind.

`claim_run_dir` wraps a whole pretraining run:

* Rank 0 takes an exclusive `fcntl.flock` on RUN_DIR/.lock, held for the life of the run, and writes its pid there.
  A second `pretrain` (or `--resume`) on the folder stops at once with "RUN_DIR is in use by another brainjepa
  process (pid N)". The OS drops the lock when the process ends, however it ends, so a killed run never leaves the
  folder locked.
* Rank 0 checks that the folder can take the run (`check_run_dir`). Under torchrun it broadcasts the outcome, so
  every process stops with the same one-line error and none waits for a partner that gave up.
* config.yaml, which marks a folder as holding a run, is written only by `start()`, once the run is built. A
  failure before the first optimizer step has completed (`start.commit()`) removes what the start created (the
  folder itself when it made it): a setting that fails the first step (a mask that cannot be drawn, a missing
  package) is a failed start, and the same command, corrected, can simply be run again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import torch.distributed as dist

from brainjepa.config import TrainConfig, load_config, save_config
from brainjepa.errors import BrainJEPAError, CheckpointError, ConfigError, DataError, TrainingError
from brainjepa.training import checkpoint as ckpt
from brainjepa.training.distributed import DistEnv

LOCK_FILE = ".lock"
CONFIG_FILE = "config.yaml"
RUN_FILES = ("metrics.csv", "checkpoints", "model")  # what a run writes besides config.yaml

# Keys that may differ between a run and its resumption (how long / how it is watched, not what is learned).
RESUMABLE_CHANGES = {("optimization", "max_steps"), ("data", "num_workers"), ("data", "pin_mem")} | {
    ("logging", k) for k in ("log_every", "checkpoint_every", "keep_last", "tensorboard", "collapse_every")
}
_ERRORS = {cls.__name__: cls for cls in (ConfigError, CheckpointError, DataError, TrainingError)}


class RunStart:
    """What `claim_run_dir` yields: call it once the run is built (writes config.yaml), then `commit()` once the
    first optimizer step has completed; a failure before the commit removes what this start created."""

    def __init__(self, write_config: Callable[[], None]) -> None:
        self._write_config = write_config
        self.committed = False

    def __call__(self) -> None:
        self._write_config()

    def commit(self) -> None:
        self.committed = True


@contextlib.contextmanager
def claim_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool, env: DistEnv) -> Iterator[RunStart]:
    """Lock and check `run_dir` for this run; yields a `RunStart`. A failure before its commit removes what this
    start created; the lock is released on exit."""
    claim = _Claim(run_dir) if env.is_main else None
    error = None
    if claim is not None:
        try:
            claim.lock()
            check_run_dir(run_dir, cfg, resume)
        except Exception as err:  # any failure: shared with the other ranks, then raised
            claim.abandon()
            error = err
    _raise_everywhere(error, env)
    start = RunStart(lambda: save_config(cfg, run_dir / CONFIG_FILE) if claim is not None else None)
    try:
        yield start
    except BaseException:
        if claim is not None and not start.committed:
            claim.abandon()
        raise
    finally:
        if claim is not None:
            claim.release()


def check_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool) -> None:
    """Refuse a folder that cannot take this run: a new run needs one without a run in it; `--resume` needs one
    holding a run of the same config (up to RESUMABLE_CHANGES) with a checkpoint."""
    saved = run_dir / CONFIG_FILE
    stopped_early = saved.exists() and not ckpt.list_checkpoints(run_dir)
    if stopped_early:
        raise CheckpointError(f"{run_dir} holds a run that stopped before its first checkpoint, so there is nothing "
                              "to resume; remove the folder or choose a new --out to start again")
    if not resume:
        if saved.exists():
            raise ConfigError(f"{run_dir} already holds a run; continue it (resume=True, --resume) or choose a new "
                              "run folder (out_dir=, --out)")
        leftovers = [name for name in RUN_FILES if (run_dir / name).exists()]
        if leftovers:
            raise ConfigError(f"{run_dir} holds {', '.join(leftovers)} but no {CONFIG_FILE}: not a run this command "
                              "can continue or overwrite; choose a new --out")
        return
    if not saved.exists():
        raise CheckpointError(f"--resume: {run_dir} holds no run (no {CONFIG_FILE}); start it without --resume")
    old = load_config(saved).to_dict()  # through the adapter: run folders of the earlier config form compare too
    new = cfg.to_dict()
    changed = [f"{s}.{k}" for s in new for k in new[s]
               if old.get(s, {}).get(k) != new[s][k] and (s, k) not in RESUMABLE_CHANGES]
    if changed:
        raise ConfigError(f"cannot resume {run_dir} with a different config: {', '.join(changed)} changed")


class _Claim:
    """Rank 0's hold on the run folder: the lock, and what existed before this start (to undo a failed one)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.fd: int | None = None
        self.created: Path | None = None  # the topmost folder this start made
        self.before: set[str] = set()

    def lock(self) -> None:
        top = self.run_dir
        while not top.parent.exists() and top.parent != top:
            top = top.parent
        created = top if not self.run_dir.exists() else None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_FILE
        fresh_lock = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise TrainingError(f"{self.run_dir} is in use by another brainjepa process (pid {pid}); wait for it "
                                "to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd, self.created = fd, created
        self.before = set(os.listdir(self.run_dir)) - ({LOCK_FILE} if fresh_lock else set())

    def abandon(self) -> None:
        """Remove what this start created (nothing unless it holds the lock), then release the lock."""
        if self.fd is None:
            return
        if self.created is not None:
            shutil.rmtree(self.created, ignore_errors=True)
        else:
            for name in set(os.listdir(self.run_dir)) - self.before:
                path = self.run_dir / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _raise_everywhere(error: Exception | None, env: DistEnv) -> None:
    """Raise rank 0's `error` on rank 0 and, as the same error class and message, on every other rank."""
    if env.distributed:
        shared = [None if error is None else (type(error).__name__, str(error))]
        dist.broadcast_object_list(shared, src=0)
        if shared[0] is not None and error is None:
            name, message = shared[0]
            raise _ERRORS.get(name, BrainJEPAError)(message)
    if error is not None:
        raise error
