"""Plain file formats shared by the models and the data stack, below both.

Atomic writes (readers, a crash and a full disk never see half a file, and never lose the previous one; files
get the umask's permissions); config + safetensors folders; the headerless numeric matrix files of brain gradients
(``gradient_mapping_450.csv``: one row per ROI) and FC matrices.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from brainjepa.errors import CheckpointError, DataError, DownloadError, OutputError

logger = logging.getLogger(__name__)


def _new_temp(path: Path) -> Path:
    """An empty file beside `path` with a name no one else uses; created with mode 0666 minus the umask (as `open`
    would create `path` itself), where `tempfile.mkstemp` always gives 0600."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{path}: no free temporary name beside it")


def atomic_writes(writes: Sequence[tuple[str | Path, Callable[[Path], object]]], *,
                  before_replace: Callable[[], object] | None = None) -> list[Path]:
    """Write several files together: each `write(tmp)` fills a temporary file beside its path, and only when all
    of them succeeded are they renamed over their paths (an output and its companion, e.g. embeddings and their
    index, are replaced together or not at all).

    Files get the permissions `open` would give (0666 minus the umask). A write that fails (a full disk, a
    killed process) removes every temporary file and leaves every existing file as it was. `before_replace` runs
    once every file is written, just before the renames (e.g. to retire a file that must not outlive them).

    Raises:
        OutputError: an OSError while writing, naming the file and, for a full disk, the disk and its free space.
    """
    paths = [Path(path) for path, _ in writes]
    temps: list[Path] = []
    try:
        for path, (_, write) in zip(paths, writes, strict=True):
            try:
                temps.append(_new_temp(path))
                mode = temps[-1].stat().st_mode & 0o777  # 0666 minus the umask
                write(temps[-1])
                if temps[-1].stat().st_mode & 0o777 != mode:  # a writer that replaced the file (safetensors: 0600)
                    os.chmod(temps[-1], mode)
            except Exception as err:  # writers wrap a full disk in their own types (safetensors, torch)
                failed = output_error(path, err)
                if failed is None:
                    raise
                raise failed from err
        if before_replace is not None:
            before_replace()
        for tmp, path in zip(temps, paths, strict=True):
            os.replace(tmp, path)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    return paths


def check_writable(path: str | Path, *, folder: bool, setting: str = "--out") -> Path:
    """Refuse, before any work, an output that cannot be written: a folder that is a file (or a file that is a
    folder), a path under a file, or a place without write permission. Creates nothing; `setting` names the flag or
    parameter in the message."""
    path = Path(path)
    if path.exists() and folder != path.is_dir():
        raise OutputError(f"{setting} {path}: exists and is {'a file, not a folder' if folder else 'a folder'}")
    where = (path if folder else path.parent).absolute()
    while not where.exists():
        where = where.parent
    if not where.is_dir():
        raise OutputError(f"{setting} {path}: {where} is a file, so nothing can be written under it")
    if not os.access(where, os.W_OK | os.X_OK):
        raise OutputError(f"{setting} {path}: {where} is not writable by this user")
    return path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path` (see `atomic_writes`)."""
    return atomic_writes([(path, write)])[0]


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Callable[[Path], None]:
    """A writer for `atomic_write(s)` that saves `array` as .npy under the temporary name (`np.save` given a path
    would add ``.npy`` to it)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)

    return write


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system holding `path` (or its nearest existing parent)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def output_error(path: str | Path, err: BaseException) -> OutputError | None:
    """One line for a failed write of `path`: the file, why, and for a full disk the disk's mount point and its
    free space. A full disk is ENOSPC or a quota, or any error of a writer that wraps it in its own type
    (numpy's "N requested and M written", safetensors, torch) while the disk has under 1 MiB free. None for an
    error that is not about the file system (a bug to raise as it is); an OutputError is returned unchanged."""
    if isinstance(err, OutputError):
        return err
    path = Path(path)
    disk = mount_point(path.parent)
    try:
        usage = shutil.disk_usage(disk)
    except OSError:
        usage = None
    code = getattr(err, "errno", None)
    full = code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(err) or (
        usage is not None and usage.free < (1 << 20))
    if full:
        space = f"{_size(usage.free)} free of {_size(usage.total)}" if usage is not None else "free space unknown"
        reason = "disk quota exceeded" if code == errno.EDQUOT else "no space left on the disk"
        out = OutputError(f"{path}: not written: {reason} mounted at {disk} ({space}); free some space and run "
                          "it again (nothing was replaced)")
        out.errno = code or errno.ENOSPC
        return out
    if not isinstance(err, OSError):
        return None
    why = err.strerror or " ".join(str(err).split()) or type(err).__name__
    out = OutputError(f"{path}: not written: {why}")
    out.errno = code
    return out


def no_such(path: str | Path, what: str) -> str:
    """"PATH: no such WHAT", saying so when PATH is a broken symbolic link (and where it points)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"{path}: no such {what}: it is a broken symbolic link (its target {os.readlink(path)} does not exist)"
    return f"{path}: no such {what}"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (checkpoint manifests, downloaded sample wheels)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _why(err: BaseException, timeout: float) -> str:
    """The reason of a failed fetch in a few words (HTTP status, DNS or connection error, timeout)."""
    import urllib.error

    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    reason = err.reason if isinstance(err, urllib.error.URLError) else err
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s"
    return f"{type(reason).__name__}: {' '.join(str(reason).split())}"


def _network(url: str, timeout: float, call: Callable[[], object]):
    """`call()`, with a network failure turned into a DownloadError (write errors stay OSErrors: `output_error`)."""
    import http.client

    try:
        return call()
    except (OSError, http.client.HTTPException) as err:
        raise DownloadError(f"could not download {url} ({_why(err, timeout)})") from err


def _fetch(url: str, tmp: Path, name: str, sha256: str | None, progress: bool | None, timeout: float) -> str:
    """Stream `url` into `tmp` with a byte progress bar named `name`; returns its sha256, raising when it is not
    `sha256`."""
    import urllib.request

    from tqdm.auto import tqdm

    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "brainjepa"})
    response = _network(url, timeout, lambda: urllib.request.urlopen(request, timeout=timeout))
    size = int(response.headers.get("Content-Length") or 0) or None
    with response, open(tmp, "wb") as fh, tqdm(total=size, desc=name, unit="B", unit_scale=True,
                                               unit_divisor=1024, disable=None if progress is None else not progress,
                                               leave=False) as bar:
        while block := _network(url, timeout, lambda: response.read(1 << 20)):
            fh.write(block)
            digest.update(block)
            bar.update(len(block))
    got = digest.hexdigest()
    if sha256 is not None and got != sha256:
        raise DownloadError(f"{url}: sha256 {got} does not match the pinned {sha256}; the file was not kept")
    return got


def download(url: str, dest: str | Path, *, sha256: str | None, progress: bool | None = None,
             timeout: float = 60.0, hint: str = "") -> Path:
    """`dest`, fetched once from `url` (standard library only: works where pip is not installed) and kept only
    when its sha256 is `sha256`; written atomically, so a broken download never leaves a file behind.

    A cached `dest` is hashed again on every call: a wrong hash (a corrupt or tampered cache) is deleted and
    fetched again. ``sha256=None`` (a file whose hash is not pinned yet) keeps the first download and records its
    hash in ``dest.sha256``, which later calls check instead. ``progress=None`` shows the bar only on a terminal.

    Raises:
        DownloadError: one line naming the URL and why (HTTP status, no network, timeout, wrong hash), then `hint`.
    """
    dest = Path(dest)
    record = dest.with_name(dest.name + ".sha256")
    want = sha256 or (record.read_text().strip() if record.is_file() else None)
    if dest.is_file():
        got = file_sha256(dest)
        if want is None:
            atomic_write_text(record, got + "\n")
        if want in (None, got):
            return dest
        logger.warning("%s: sha256 %s, not %s; downloading it again", dest, got, want)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    logger.info("downloading %s into %s", url, dest)
    digests: list[str] = []
    try:
        atomic_write(dest, lambda tmp: digests.append(_fetch(url, tmp, dest.name, want, progress, timeout)))
    except DownloadError as err:
        raise DownloadError(f"{err}{'; ' + hint if hint else ''}") from err
    if sha256 is None:
        atomic_write_text(record, digests[0] + "\n")
    return dest


def save_weights_folder(directory: str | Path, module, meta: dict, *, config_name: str, weights_name: str,
                        fmt: str, json_default=None) -> Path:
    """Write a module's state dict (safetensors) and a JSON record tagged with `fmt` into directory, atomically
    (both files are replaced together)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    record = json.dumps({"format": fmt, "version": 1, **meta}, indent=2, default=json_default) + "\n"
    atomic_writes([(directory / weights_name, lambda p: save_file(state, str(p), metadata={"format": fmt})),
                   (directory / config_name, lambda p: p.write_text(record, encoding="utf-8"))])
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


def _read_text_rows(path: Path) -> tuple[np.ndarray, list[int]]:
    """A headerless comma/whitespace-separated numeric file, with the file line of each row (blank lines and
    ``#`` comments are skipped, as numpy does); errors name the row as a spreadsheet would (1-based)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a text file of numbers ({err})") from err
    lines, content = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        data = line.split("#", 1)[0].strip()
        if data:
            lines.append(number)
            content.append(data)
    if not content:
        raise DataError(f"{path}: no numeric rows (the file is empty)")
    sep = "," if "," in content[0] else None
    try:
        return np.loadtxt(content, delimiter=sep, ndmin=2, comments=None), lines
    except ValueError:
        pass
    width = None  # numpy's message counts from 0 and without the skipped lines: find the row ourselves
    for i, data in enumerate(content):
        where = row_name(i, lines)
        cells = [c.strip() for c in data.split(sep)]
        bad = []
        for j, cell in enumerate(cells):
            try:
                float(cell)
            except ValueError:
                bad.append(j)
        if i == 0 and len(bad) == len(cells):
            raise DataError(f"{path}: {where} is not numeric ({data[:60]!r}); the file has no header line: "
                            "numbers only, one row per ROI")
        if bad:
            raise DataError(f"{path}: {where}, column {bad[0] + 1}: {cells[bad[0]][:30]!r} is not a number")
        if width is not None and len(cells) != width:
            raise DataError(f"{path}: {where} has {len(cells)} values but row 1 has {width}; every row needs the "
                            "same number of columns")
        width = len(cells)
    raise DataError(f"{path}: unreadable as a numeric matrix without header")


def row_name(index: int, lines: Sequence[int] | None = None) -> str:
    """``row N`` (1-based, as a spreadsheet counts) for row `index`, with ``(line M)`` when the file's line differs
    (comment or blank lines above it)."""
    if lines is not None and lines[index] != index + 1:
        return f"row {index + 1} (line {lines[index]})"
    return f"row {index + 1}"


def _read_rows(path: str | Path) -> tuple[np.ndarray, list[int] | None]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            why = "it holds pickled Python objects, which are never unpickled" if "pickle" in str(err) else str(err)
            raise DataError(f"{path}: unreadable as a numeric .npy matrix ({why})") from err
        lines = None
    else:
        arr, lines = _read_text_rows(path)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: expected a 2-D numeric matrix, got shape {arr.shape} ({arr.dtype})")
    return arr, lines


def read_matrix(path: str | Path) -> np.ndarray:
    """A numeric 2-D matrix from .npy or a headerless comma/whitespace-separated text file (CSV/TSV/TXT); blank and
    ``#`` lines are skipped. `DataError` names the file and the 1-based row (and line) of a non-numeric cell or
    ragged row."""
    return _read_rows(path)[0]


def load_gradient(path_or_array: str | Path | np.ndarray | Sequence, num_rois: int | None = None) -> np.ndarray:
    """Gradient matrix as float32 [R, G] from a headerless CSV, a .npy file or an array.

    Args:
        path_or_array: file path (``gradient_mapping_450.csv`` style) or array-like.
        num_rois: expected R (rows); None accepts any.

    Raises:
        DataError: one line naming the file (or "gradient array") for an unreadable file, a header line, a wrong
            shape, NaN/Inf values, a constant column or linearly dependent columns; rows are counted from 1 as in
            a spreadsheet ("row N (line M)" when comment or blank lines make them differ).
    """
    lines = None
    if isinstance(path_or_array, (str, os.PathLike)):
        where = str(path_or_array)
        grads, lines = _read_rows(path_or_array)
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
        row, col = np.argwhere(bad)[0]
        raise DataError(f"{where}: {int(bad.sum())} NaN/Inf values (first in {row_name(row, lines)}, column "
                        f"{col + 1})")
    check_gradient_columns(grads.astype(np.float64), where)
    return grads.astype(np.float32)


def check_gradient_columns(grads: np.ndarray, where: str) -> None:
    """Refuse gradients that cannot place ROIs: a column equal in every row, or columns linearly dependent."""
    constant = np.flatnonzero((grads == grads[:1]).all(axis=0))
    if constant.size:
        j = constant[0]
        raise DataError(f"{where}: gradient column {j + 1} is constant ({grads[0, j]:g} in every row), so it places "
                        "no ROI; each column must vary across ROIs")
    rank = np.linalg.matrix_rank(grads)
    if rank < grads.shape[1]:
        first = next(j for j in range(1, grads.shape[1] + 1) if np.linalg.matrix_rank(grads[:, :j]) < j)
        raise DataError(f"{where}: the {grads.shape[1]} gradient columns are linearly dependent (rank {rank}; column "
                        f"{first} is a combination of columns 1-{first - 1}); each column must be a separate "
                        "gradient")


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


def cache_root() -> Path:
    """brainjepa's cache folder: ``$BRAINJEPA_CACHE`` if set, else ``$XDG_CACHE_HOME/brainjepa`` (~/.cache by
    default). Samples, atlases and embedding's timing decisions live in it."""
    root = os.environ.get("BRAINJEPA_CACHE")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "brainjepa"


def default_cache_dir() -> Path:
    """Where downloaded samples live: ``samples`` in `cache_root`."""
    return cache_root() / "samples"
