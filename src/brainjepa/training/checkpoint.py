"""Training checkpoints: written atomically, verified on load, last k kept.

Layout: RUN_DIR/checkpoints/step-00000120/ with `model.safetensors` + `config.json` (a `save_pretrained` folder),
`training.pt` (optimizer state and position; tensors and plain types only, read with weights_only=True; no RNG
state, as everything random in training is seeded from the seed and the position) and `manifest.json` (sha256 of
each file), written last. The folder is assembled under a temporary name and renamed into place, so a crash never
leaves a half-written checkpoint under a real name, and a failed write (a full disk) removes it and raises one
`OutputError` naming the checkpoint and the disk; a checkpoint whose files do not match its manifest
(truncated, corrupted), or that cannot be read (a training state that is not plain tensors and numbers is never
unpickled), is skipped with a warning in favour of the previous one.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from brainjepa.errors import BrainJEPAError, OutputError
from brainjepa.io import file_sha256, output_error
from brainjepa.models import BrainJEPA
from brainjepa.models.jepa import CONFIG_NAME, WEIGHTS_NAME

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d{8})$")
TRAINING_FILE = "training.pt"
MANIFEST = "manifest.json"
REQUIRED_FILES = (CONFIG_NAME, WEIGHTS_NAME, TRAINING_FILE)


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: Path, model: BrainJEPA, training_state: dict[str, Any], step: int,
                    keep_last: int) -> Path:
    """Write checkpoint `step` atomically and delete all but the newest `keep_last`."""
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        with open(tmp / TRAINING_FILE, "wb") as fh:
            torch.save(training_state, fh)
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
        (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1))
    except Exception as err:  # a full disk: no .tmp-* folder is left, one line names the checkpoint and the disk
        cause = err.__cause__ if isinstance(err, OutputError) and err.__cause__ is not None else err
        failed = output_error(final, cause)  # while the partial files still fill the disk
        shutil.rmtree(tmp, ignore_errors=True)
        if failed is None:
            raise
        raise failed from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders, oldest first (temporary folders of an interrupted write are ignored)."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name)), key=lambda p: p.name)


def verify(path: Path) -> str | None:
    """None if the checkpoint's manifest lists its files and they match their checksums, else what is wrong."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable manifest ({err})"
    for name in REQUIRED_FILES:
        if name not in files:
            return f"its manifest does not list {name}"
    for name, digest in files.items():
        file = path / name
        if not file.is_file():
            return f"missing {name}"
        if file_sha256(file) != digest:
            return f"{name} does not match its checksum (truncated or corrupted)"
    return None


def load_latest(run_dir: Path, map_location: str | torch.device = "cpu") -> tuple[BrainJEPA, dict[str, Any]] | None:
    """Newest usable checkpoint as (model, training state), or None. Each unusable one (files not matching the
    manifest, unreadable weights, a training state that is not plain tensors and numbers, or one that does not
    hold a position) is skipped for the previous one with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        problem = verify(path)
        if problem is None:
            try:
                model = BrainJEPA.from_pretrained(path)
            except (BrainJEPAError, RuntimeError, OSError, KeyError) as err:
                problem = str(err)
            else:
                state, problem = _training_state(path, map_location)
                if problem is None:
                    logger.info("resuming from %s", path)
                    return model, state
        logger.warning("checkpoint %s is unusable: %s; trying the previous one", path, problem)
    return None


def _training_state(path: Path, map_location: str | torch.device) -> tuple[dict[str, Any] | None, str | None]:
    """(state, None) for a readable training.pt holding the optimizer state and the position, else (None, why)."""
    try:
        state = torch.load(path / TRAINING_FILE, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        return None, f"{TRAINING_FILE} holds objects other than tensors and plain types (refused, never unpickled)"
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        return None, f"cannot read {TRAINING_FILE} ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    position = ("step", "epoch", "batch")
    if not (isinstance(state, dict) and isinstance(state.get("optimizer"), dict)
            and all(isinstance(state.get(k), int) and state[k] >= 0 for k in position)):
        return None, f"{TRAINING_FILE} does not hold an optimizer state and a position (step, epoch, batch)"
    if f"step-{state['step']:08d}" != path.name:
        return None, f"{TRAINING_FILE} is at step {state['step']}, not the folder's"
    return state, None
