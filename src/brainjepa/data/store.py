"""The dataset store: all runs in one memory-mapped float32 file plus a per-run manifest.

Layout of a store directory (format "brainjepa-store", version 1):

- ``data.f32``: raw little-endian float32, time-major [total_frames, R]; runs are concatenated along time, so a
  window of one run is one contiguous slice and reading it touches only those pages.
- ``manifest.csv``: one row per run: ``subject, run, offset, frames, tr, source`` then phenotype columns.
- ``store.json``: format, version, num_rois, roi_labels, dtype, total_frames and free-form ``metadata``.

``StoreWriter`` streams runs to disk (memory stays flat) and writes the manifest and ``store.json`` last, so an
interrupted write never looks like a store. ``RunStore`` opens the memmap lazily in each process and does not
pickle it, so DataLoader workers can share one store; `open_runs` is how every caller opens one (a path or a
store) together with a subset of its runs. Turning input files into a store is `brainjepa.data.prepare`'s job.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from brainjepa.data.readers import check_tr, run_key
from brainjepa.data.store_format import DATA_FILE, FORMAT, MANIFEST_COLUMNS, MANIFEST_FILE, META_FILE, VERSION
from brainjepa.data.validate import check_timeseries, raise_for_problems
from brainjepa.errors import DataError
from brainjepa.io import atomic_write_text, atomic_writes, no_such, output_error

if TYPE_CHECKING:
    from typing import Self

    import pandas

logger = logging.getLogger(__name__)

_DTYPE = np.dtype("<f4")
_TEXT_COLUMNS = ("subject", "run", "source")


def _json_default(value: Any) -> Any:
    # Metadata often holds numpy statistics (normalisation medians, IQRs); store them as plain lists/numbers.
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"store metadata value of type {type(value).__name__} is not JSON-serialisable")


def _dump_meta(meta: dict) -> str:
    return json.dumps(meta, indent=1, default=_json_default, allow_nan=True) + "\n"


def check_target(path: Path, *, overwrite: bool) -> None:
    """Refuse to write over an existing store (unless `overwrite`) or into a path that is a file."""
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is not a directory")
    if (path / META_FILE).exists() and not overwrite:
        raise DataError(f"{path}: a store already exists here (use overwrite / --overwrite to replace it)")


class StoreWriter:
    """Write runs into a new store directory, one `add` at a time (constant memory).

    Use as a context manager: leaving the block normally calls `close`; an exception discards the partial
    data so nothing half-written is left behind.

    Args:
        path: store directory (created if missing).
        num_rois: R, the number of ROIs every run must have.
        roi_labels: optional R names, kept in ``store.json``.
        overwrite: replace an existing store at `path` instead of refusing.
        min_frames: fewest frames a run may have.
        allow_unusual_tr: accept TRs outside what scanners use (0.05-30 s; `brainjepa.data.readers.check_tr`).
    """

    def __init__(
        self,
        path: str | Path,
        num_rois: int,
        *,
        roi_labels: list[str] | None = None,
        overwrite: bool = False,
        min_frames: int = 1,
        allow_unusual_tr: bool = False,
    ) -> None:
        self.path = Path(path)
        if num_rois < 1:
            raise DataError(f"{self.path}: num_rois must be positive, got {num_rois}")
        if roi_labels is not None and len(roi_labels) != num_rois:
            raise DataError(f"{self.path}: {len(roi_labels)} ROI labels given for {num_rois} ROIs")
        check_target(self.path, overwrite=overwrite)
        self._created_dir = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self.num_rois = int(num_rois)
        self.roi_labels = list(roi_labels) if roi_labels is not None else None
        self.min_frames = int(min_frames)
        self.allow_unusual_tr = bool(allow_unusual_tr)
        self._metadata: dict[str, Any] = {}
        self._rows: list[dict[str, Any]] = []
        self._keys: set[tuple[str, str]] = set()
        self._offset = 0
        self._tmp = self.path / (DATA_FILE + ".partial")
        self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()/abort()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __len__(self) -> int:
        return len(self._rows)

    def add(
        self,
        ts: np.ndarray,
        *,
        subject: str,
        run: str = "1",
        tr: float | None = None,
        source: str = "",
        phenotypes: Mapping[str, object] | None = None,
    ) -> None:
        """Append one run after validating it (finite, R matches, enough frames, no constant ROI).

        Args:
            ts: [R, T] time series.
            subject: subject id; (subject, run) must be unique in the store.
            run: run id within the subject.
            tr: repetition time in seconds, or None if unknown.
            source: where the run came from (file path), kept in the manifest and named in errors.
            phenotypes: per-run values for extra manifest columns (missing ones become empty).

        Raises:
            DataError: naming the source (or subject/run) and every problem found.
        """
        if self._fh.closed:
            raise DataError(f"{self.path}: store writer is already closed")
        subject, run = str(subject), str(run)
        label = f"{source} (subject {subject}, run {run})" if source else f"subject {subject}, run {run}"
        arr = np.asarray(ts)
        raise_for_problems(
            check_timeseries(
                arr, source=label, num_rois=self.num_rois, min_frames=self.min_frames, roi_labels=self.roi_labels
            )
        )
        if (subject, run_key(run)) in self._keys:  # run "1" and run "01" are one run, as in BIDS
            raise DataError(f"{label}: duplicate run (subject {subject}, run {run} was already added)")
        if tr is not None:  # a positive number of seconds, in what scanners use unless allowed
            check_tr(tr, label, allow_unusual=self.allow_unusual_tr)
        extra = dict(phenotypes or {})
        clash = sorted(set(extra) & set(MANIFEST_COLUMNS))
        if clash:
            raise DataError(f"{label}: phenotype columns {clash} clash with manifest columns")
        frames = arr.shape[1]
        try:
            self._fh.write(np.ascontiguousarray(arr.T, dtype=_DTYPE).data)
        except OSError as err:  # a full disk: one line naming the store and the disk
            raise output_error(self.path / DATA_FILE, err) from err
        self._keys.add((subject, run_key(run)))
        self._rows.append(
            {
                "subject": subject,
                "run": run,
                "offset": self._offset,
                "frames": frames,
                "tr": float(tr) if tr is not None else math.nan,
                "source": str(source),
                **extra,
            }
        )
        self._offset += frames

    def set_metadata(self, key: str, value: Any) -> None:
        """Record a JSON-serialisable value (numpy arrays become lists) under ``metadata[key]``."""
        json.dumps(value, default=_json_default)  # fail now, not at close
        self._metadata[key] = value

    def close(self) -> RunStore:
        """Finish the data file, then write manifest.csv and store.json (last, atomically); returns the store."""
        import pandas as pd

        if self._fh.closed:
            raise DataError(f"{self.path}: store writer is already closed")
        try:
            self._fh.close()
        except OSError as err:
            raise output_error(self.path / DATA_FILE, err) from err
        manifest = pd.DataFrame(self._rows)
        if manifest.empty:
            manifest = pd.DataFrame(columns=list(MANIFEST_COLUMNS))
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "num_rois": self.num_rois,
            "roi_labels": self.roi_labels,
            "dtype": "float32",
            "total_frames": self._offset,
            "metadata": self._metadata,
        }
        text = _dump_meta(meta)

        def retire_old_store() -> None:
            # A store being replaced stops being a store first, so no crash can pair old metadata with new data;
            # only once the new manifest and metadata are written (a full disk leaves the old store whole).
            (self.path / META_FILE).unlink(missing_ok=True)
            os.replace(self._tmp, self.path / DATA_FILE)

        atomic_writes([(self.path / MANIFEST_FILE, lambda tmp: manifest.to_csv(tmp, index=False)),
                       (self.path / META_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))],
                      before_replace=retire_old_store)
        logger.info(
            "wrote store %s: %d runs, %d frames x %d ROIs", self.path, len(self._rows), self._offset, self.num_rois
        )
        return RunStore(self.path)

    def abort(self) -> None:
        """Discard everything written so far; a store being replaced is left as it was."""
        if not self._fh.closed:
            self._fh.close()
        self._tmp.unlink(missing_ok=True)
        if self._created_dir and not any(self.path.iterdir()):
            self.path.rmdir()


def _read_manifest(path: Path) -> pandas.DataFrame:
    import pandas as pd

    # Ids and sources stay text ("001", "NA" are valid subject ids); other columns use pandas' usual parsing.
    header = pd.read_csv(path, nrows=0).columns
    na_values = {c: ["", "nan", "NaN", "NA", "N/A", "null"] for c in header if c not in _TEXT_COLUMNS}
    return pd.read_csv(
        path,
        dtype={c: str for c in _TEXT_COLUMNS},
        keep_default_na=False,
        na_values=na_values,
    )


def _manifest_numbers(manifest: pandas.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(offsets, frames, TRs) of the manifest's runs. A hand-edited cell ('abc', an empty offset) raises
    ValueError: cast as it is, an empty count would become a garbage integer."""
    import pandas as pd

    counts = manifest[["offset", "frames"]].apply(pd.to_numeric)
    if counts.isna().any().any() or (counts % 1 != 0).any().any():
        raise ValueError("an empty or fractional offset / frames cell")
    return (counts["offset"].to_numpy(np.int64), counts["frames"].to_numpy(np.int64),
            pd.to_numeric(manifest["tr"]).to_numpy(np.float64))


class RunStore:
    """Read-only view of a store directory; cheap to pickle (the memmap is reopened lazily per process).

    Attributes:
        path: store directory.
        num_rois: R.
        roi_labels: R names or None.
        manifest: one row per run (subject, run, offset, frames, tr, source, phenotypes...).
        metadata: free-form dict from ``store.json`` (normalisation statistics, atlas, simulation...).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not self.path.is_dir():
            raise DataError(no_such(self.path, "store directory"))
        if not meta_path.is_file():
            raise DataError(f"{self.path}: not a brainjepa store (no {META_FILE}; run `brainjepa prepare`)")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise DataError(f"{meta_path}: unreadable store metadata ({err})") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise DataError(f"{meta_path}: not a brainjepa store (format {found!r})")
        if meta.get("version") != VERSION:
            raise DataError(f"{meta_path}: store version {meta.get('version')} is not supported (need {VERSION})")
        if meta.get("dtype") != "float32":
            raise DataError(f"{meta_path}: unsupported dtype {meta.get('dtype')!r}")
        counts = {key: meta.get(key) for key in ("num_rois", "total_frames")}
        bad = [f"{key} {value!r}" for (key, value), least in zip(counts.items(), (1, 0), strict=True)
               if not isinstance(value, int) or isinstance(value, bool) or value < least]
        labels = meta.get("roi_labels")
        if labels is not None and not (isinstance(labels, list) and len(labels) == counts["num_rois"]):
            bad.append(f"roi_labels: {len(labels) if isinstance(labels, list) else type(labels).__name__} for "
                       f"{counts['num_rois']} ROIs")
        if bad:
            raise DataError(f"{meta_path}: damaged store metadata ({', '.join(bad)}; need num_rois >= 1, "
                            "total_frames >= 0 and one label per ROI)")
        self.num_rois: int = counts["num_rois"]
        self.roi_labels: list[str] | None = labels
        self.metadata: dict[str, Any] = dict(meta.get("metadata") or {})
        self._meta = meta
        self._total = counts["total_frames"]
        try:
            self.manifest = _read_manifest(self.path / MANIFEST_FILE)
        except (OSError, ValueError) as err:
            raise DataError(f"{self.path / MANIFEST_FILE}: unreadable manifest ({err})") from err
        missing = [c for c in MANIFEST_COLUMNS if c not in self.manifest.columns]
        if missing:
            raise DataError(f"{self.path / MANIFEST_FILE}: manifest lacks columns {missing}")
        try:
            self._offsets, self._frames, self._trs = _manifest_numbers(self.manifest)
        except (TypeError, ValueError) as err:
            raise DataError(f"{self.path / MANIFEST_FILE}: damaged manifest, offset / frames / tr must be numbers "
                            f"({err})") from None
        outside = (self._offsets < 0) | (self._frames < 1) | (self._offsets + self._frames > self._total)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise DataError(
                f"{self.path / MANIFEST_FILE}: run {i} (offset {self._offsets[i]}, {self._frames[i]} frames) lies "
                f"outside the {self._total} frames of {DATA_FILE}"
            )
        data = self.path / DATA_FILE
        expected = self._total * self.num_rois * _DTYPE.itemsize
        size = data.stat().st_size if data.is_file() else -1
        if size != expected:
            raise DataError(f"{data}: size {size} bytes does not match {self._total} frames x {self.num_rois} ROIs")
        self._mm: np.ndarray | None = None
        self._fd: int | None = None
        self._local = threading.local()

    def __getstate__(self) -> dict:
        # Never pickle the mapping, the file descriptor or the read buffers: each worker opens its own.
        state = self.__dict__.copy()
        state.update(_mm=None, _fd=None, _local=None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Release the file descriptor and mapping (reads reopen them)."""
        fd, self._fd, self._mm = getattr(self, "_fd", None), None, None
        if fd is not None:
            os.close(fd)

    def __len__(self) -> int:
        return len(self._offsets)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r}, runs={len(self)}, rois={self.num_rois}, frames={self._total})"

    @property
    def data(self) -> np.ndarray:
        """The whole store as a read-only [total_frames, R] float32 memmap (opened on first use)."""
        if self._mm is None:
            if self._total == 0:
                self._mm = np.empty((0, self.num_rois), _DTYPE)
            else:
                self._mm = np.memmap(self.path / DATA_FILE, dtype=_DTYPE, mode="r", shape=(self._total, self.num_rois))
        return self._mm

    @property
    def total_frames(self) -> int:
        return self._total

    def _index(self, i: int) -> int:
        n = len(self._offsets)
        if not -n <= i < n:
            raise IndexError(f"run index {i} out of range for a store of {n} runs")
        return i % n

    def frames(self, i: int) -> int:
        """Number of frames T_i of run `i`."""
        return int(self._frames[self._index(i)])

    def tr(self, i: int) -> float | None:
        """TR of run `i` in seconds, None if unknown."""
        value = float(self._trs[self._index(i)])
        return None if math.isnan(value) else value

    def _rows(self, start: int, count: int) -> np.ndarray:
        """Frames [start, start + count) of the whole store as [count, R]; valid until the next read.

        Reads with one pread into a per-thread buffer where the OS has it: as fast as the memmap, and the
        process does not accumulate mapped file pages (RSS stays flat however much of the store is read).
        """
        if not hasattr(os, "preadv"):
            return self.data[start : start + count]
        if self._fd is None:
            self._fd = os.open(self.path / DATA_FILE, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.shape[0] < count:
            buf = self._local.buf = np.empty((max(count, 1), self.num_rois), _DTYPE)
        rows = buf[:count]
        got = os.preadv(self._fd, [rows], start * self.num_rois * _DTYPE.itemsize)
        if got != rows.nbytes:
            raise DataError(f"{self.path / DATA_FILE}: short read ({got} of {rows.nbytes} bytes); file truncated?")
        return rows

    def run(self, i: int) -> np.ndarray:
        """Run `i` as a [R, T_i] float32 array (a copy)."""
        i = self._index(i)
        return np.ascontiguousarray(self._rows(int(self._offsets[i]), int(self._frames[i])).T)

    def window(self, i: int, start: int, length: int) -> np.ndarray:
        """Frames [start, start + length) of run `i` as a [R, length] float32 array (a copy)."""
        i = self._index(i)
        if start < 0 or length < 1 or start + length > self._frames[i]:
            raise DataError(
                f"{self.path}: window [{start}, {start + length}) is outside run {i} "
                f"(subject {self.manifest['subject'].iat[i]}, {self._frames[i]} frames)"
            )
        return np.ascontiguousarray(self._rows(int(self._offsets[i]) + start, length).T)

    def take(self, i: int, frame_idx: np.ndarray) -> np.ndarray:
        """Arbitrary frames of run `i` (e.g. a strided clip) as a [R, len(frame_idx)] float32 array."""
        i = self._index(i)
        idx = np.asarray(frame_idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= self._frames[i]):
            raise DataError(
                f"{self.path}: frame indices {idx.min()}..{idx.max()} are outside run {i} "
                f"(subject {self.manifest['subject'].iat[i]}, {self._frames[i]} frames)"
            )
        lo = int(idx.min()) if idx.size else 0
        hi = int(idx.max()) + 1 if idx.size else 0
        # Read the covering block in one go, then gather in memory.
        return np.ascontiguousarray(self._rows(int(self._offsets[i]) + lo, hi - lo)[idx - lo].T)

    def phenotype(self, column: str) -> np.ndarray:
        """One manifest column as an array (one value per run)."""
        if column not in self.manifest.columns:
            extra = [c for c in self.manifest.columns if c not in MANIFEST_COLUMNS]
            raise DataError(f"{self.path}: no phenotype column {column!r} (available: {extra})")
        return self.manifest[column].to_numpy()

    def set_metadata(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value under ``metadata[key]`` and rewrite store.json atomically."""
        json.dumps(value, default=_json_default)  # fail before touching the file
        self.metadata[key] = value
        self._meta["metadata"] = self.metadata
        atomic_write_text(self.path / META_FILE, _dump_meta(self._meta))


def open_runs(
    store: RunStore | str | Path, indices: Sequence[int] | np.ndarray | None
) -> tuple[RunStore, np.ndarray]:
    """Open `store` (an object or a path) and check `indices` (None: every run) against its run count.

    Every reader of a store (fitting statistics, datasets, embeddings, probes) opens it here, so a bad path or
    a bad subset gets the same message wherever it is given.
    """
    if not isinstance(store, RunStore):
        store = RunStore(store)
    n = len(store)
    idx = np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise DataError(f"{store.path}: run indices must be a 1-D list of integers, got {idx.dtype} {idx.shape}")
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise DataError(f"{store.path}: run index {int(bad[0])} out of range (store has {n} runs)")
    return store, idx.astype(np.int64, copy=False)


def check_num_rois(store: RunStore, num_rois: int, model: str = "the model") -> None:
    """The one refusal wherever a store meets a model (pretraining, embedding, fine-tuning, the evaluation suite):
    a model has one embedding per ROI, so the counts must agree. `model` names the model's side in the message."""
    if store.num_rois != num_rois:
        raise DataError(f"{store.path}: store has {store.num_rois} ROIs but {model} expects {num_rois}")
