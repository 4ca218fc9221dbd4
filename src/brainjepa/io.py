"""Plain file formats shared by the models and the data stack, below both.

Atomic writes (readers, and a crash, never see half a file); config + safetensors folders; the headerless numeric
matrix files of brain gradients (``gradient_mapping_450.csv``: one row per ROI) and FC matrices.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from brainjepa.errors import CheckpointError, DataError


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


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (checkpoint manifests, downloaded sample wheels)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights_folder(directory: str | Path, module, meta: dict, *, config_name: str, weights_name: str,
                        fmt: str, json_default=None) -> Path:
    """Write a module's state dict (safetensors) and a JSON record tagged with `fmt` into directory, atomically."""
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
    from safetensors.torch import load_file

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
    check_finite_weights(state, weights_path)
    return meta, state


def check_finite_weights(state: dict, source: str | Path) -> None:
    """Refuse weights holding NaN/Inf (a corrupt file, a diverged run): they would only give NaN outputs.

    Raises:
        CheckpointError: naming `source` and the first non-finite tensor.
    """
    import torch

    for name, tensor in state.items():
        if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(f"{source}: weights are not finite: tensor {name} has {bad} NaN/Inf values of "
                                  f"{tensor.numel()} (a corrupt file or a diverged run)")


def read_matrix(path: str | Path) -> np.ndarray:
    """A numeric 2-D matrix from .npy or a headerless comma/whitespace-separated text file (CSV/TSV/TXT)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
            arr = np.loadtxt(path, delimiter="," if "," in first else None, ndmin=2)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: unreadable as a numeric matrix without header ({err})") from err
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: expected a 2-D numeric matrix, got shape {arr.shape} ({arr.dtype})")
    return arr


def load_gradient(path_or_array: str | Path | np.ndarray | Sequence, num_rois: int | None = None) -> np.ndarray:
    """Gradient matrix as float32 [R, G] from a headerless CSV, a .npy file or an array.

    Args:
        path_or_array: file path (``gradient_mapping_450.csv`` style) or array-like.
        num_rois: expected R (rows); None accepts any.

    Raises:
        DataError: naming the file (or "gradient array") for unreadable files, wrong shape or NaN/Inf values.
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        where = str(path_or_array)
        grads = read_matrix(path_or_array)
    else:
        where = "gradient array"
        grads = np.asarray(path_or_array)
        if not np.issubdtype(grads.dtype, np.number):
            raise DataError(f"{where}: expected numbers, got dtype {grads.dtype}")
    if grads.ndim != 2 or grads.shape[1] < 1:
        raise DataError(f"{where}: expected a 2-D [ROIs, gradients] matrix, got shape {grads.shape}")
    if num_rois is not None and grads.shape[0] != num_rois:
        raise DataError(f"{where}: {grads.shape[0]} rows but the model has {num_rois} ROIs (one row per ROI)")
    bad = ~np.isfinite(grads)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(f"{where}: {int(bad.sum())} NaN/Inf values (first in row {rows[0]})")
    return grads.astype(np.float32)


def save_gradient(path: str | Path, gradients: np.ndarray) -> Path:
    """Write [R, G] gradients as a headerless CSV (full float64 precision), or .npy if the name says so, atomically."""
    path = Path(path)
    grads = np.asarray(gradients, dtype=np.float64)
    if grads.ndim != 2:
        raise DataError(f"{path}: gradients must be 2-D [R, G], got shape {grads.shape}")
    if not np.isfinite(grads).all():
        raise DataError(f"{path}: refusing to write gradients with NaN/Inf values")
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            if path.suffix.lower() == ".npy":
                np.save(fh, grads)
            else:
                np.savetxt(fh, grads, delimiter=",", fmt="%.17g")

    return atomic_write(path, write)
