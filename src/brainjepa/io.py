"""Atomic file writes: readers (and a crash) never see half a file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_weights_folder(directory: str | Path, module, meta: dict, *, config_name: str, weights_name: str,
                        fmt: str, json_default=None) -> Path:
    """Write a module's state dict (safetensors) and a JSON record tagged with `fmt` into directory, atomically."""
    import json

    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    atomic_write(directory / weights_name, lambda p: save_file(state, str(p), metadata={"format": fmt}))
    record = {"format": fmt, "version": 1, **meta}
    atomic_write_text(directory / config_name, json.dumps(record, indent=2, default=json_default) + "\n")
    return directory


def load_weights_folder(directory: str | Path, *, config_name: str, weights_name: str, fmt: str, what: str,
                        map_location: str = "cpu") -> tuple[dict, dict]:
    """Read what `save_weights_folder` wrote: (JSON record, state dict); CheckpointError names what is wrong."""
    import json

    from safetensors.torch import load_file

    from brainjepa.errors import CheckpointError

    directory = Path(directory)
    config_path, weights_path = directory / config_name, directory / weights_name
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{directory}: not a {what} folder (needs {config_name} and {weights_name})")
    try:
        meta = json.loads(config_path.read_text())
        state = load_file(str(weights_path), device=str(map_location))
    except Exception as err:  # json and safetensors raise many types for corrupt files
        raise CheckpointError(f"{directory}: cannot read {what} ({type(err).__name__}: {err})") from err
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CheckpointError(f"{config_path}: not a {what} record")
    return meta, state
