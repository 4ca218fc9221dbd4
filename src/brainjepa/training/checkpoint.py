"""Training checkpoints: written atomically, verified on load, last k kept.

Layout: RUN_DIR/checkpoints/step-00000120/ with `model.safetensors` + `config.json` (a `save_pretrained` folder),
`training.pt` (optimizer state and position; tensors and plain types only, read with weights_only=True; no RNG
state, as everything random in training is seeded from the seed and the position) and `manifest.json` (sha256 of
each file), written last. The folder is assembled under a temporary name and renamed into place, so a crash never
leaves a half-written checkpoint under a real name; a checkpoint whose files do not match its manifest
(truncated, corrupted) is skipped with a warning in favour of the previous one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from brainjepa.errors import CheckpointError
from brainjepa.models import BrainJEPA

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d{8})$")
TRAINING_FILE = "training.pt"
MANIFEST = "manifest.json"


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
    model.save_pretrained(tmp)
    torch.save(training_state, tmp / TRAINING_FILE)
    files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
    (tmp / MANIFEST).write_text(json.dumps({"step": step, "files": files}, indent=1))
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
    """None if the checkpoint's files match its manifest, else what is wrong."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        return f"unreadable manifest ({err})"
    for name, digest in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            return f"missing {name}"
        if _sha256(file) != digest:
            return f"{name} does not match its checksum (truncated or corrupted)"
    return None


def load_latest(run_dir: Path, map_location: str | torch.device = "cpu") -> tuple[BrainJEPA, dict[str, Any]] | None:
    """Newest valid checkpoint as (model, training state); corrupt ones are skipped with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        problem = verify(path)
        if problem is None:
            try:
                model = BrainJEPA.from_pretrained(path)
                state = torch.load(path / TRAINING_FILE, map_location=map_location, weights_only=True)
            except (CheckpointError, RuntimeError, OSError) as err:
                problem = str(err)
            else:
                logger.info("resuming from %s", path)
                return model, state
        logger.warning("checkpoint %s is unusable: %s; trying the previous one", path, problem)
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()
