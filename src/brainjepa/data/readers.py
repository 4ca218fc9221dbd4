"""Read ROI time series from tables, numpy files, the UKB pair layout and 4-D NIfTI images.

Every reader returns [R, T] float32 (ROIs x frames). Where a file does not say which axis holds the ROIs, the
caller gives an orientation or the expected ROI count; anything else that cannot be decided is a `DataError`
naming the file, never a guess.

Ids: a BIDS-like name ``sub-XX[_ses-SS]..._run-YY`` gives subject ``XX`` and run ``YY`` (``SS_YY`` with a
session); otherwise a file inside a per-subject folder gets the folder name as subject and its stem as run; a
lone file gets its stem as subject and run ``1``. A leading ``sub-`` is dropped from folder names too.
"""

from __future__ import annotations

import glob
import gzip
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainjepa.errors import DataError

logger = logging.getLogger(__name__)

ORIENTATIONS = ("auto", "rois-x-time", "time-x-rois")
TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
ARRAY_SUFFIXES = (".npy", ".npz")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# The reference UKB layout: <root>/time_series/<id>/<file>; subcortical rows come first in the joined array.
UKB_SUBCORTICAL = "fMRI.Tian_Subcortex_S3_3T.csv.gz"
UKB_CORTICAL = "fMRI.Schaefer17n400p.csv.gz"
# First-cell names that mark a header row above a label column (the reference writes `label_name`).
_HEADER_NAMES = {"", "label_name", "label", "labels", "name", "names", "roi", "rois", "region", "regions"}
_NPZ_TR_KEYS = ("tr", "TR", "t_r", "repetition_time")


@dataclass(frozen=True)
class Source:
    """One run to read: a table, numpy or NIfTI file (`kind`), or a UKB subject folder (`kind` "ukb")."""

    kind: str
    path: Path
    subject: str
    run: str = "1"

    @property
    def label(self) -> str:
        """How problems name this run: the file, or the subject folder for the UKB pair."""
        return str(self.path)


@dataclass
class Run:
    """One run's time series and where it came from."""

    ts: np.ndarray  # [R, T] float32
    subject: str
    run: str
    tr: float | None
    source: str
    roi_labels: list[str] | None = None


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(TABLE_SUFFIXES + ARRAY_SUFFIXES + NIFTI_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return ""


def _kind(path: Path) -> str | None:
    suffix = _suffix(path)
    if suffix in TABLE_SUFFIXES:
        return "table"
    if suffix in ARRAY_SUFFIXES:
        return "array"
    if suffix in NIFTI_SUFFIXES:
        return "nifti"
    return None


def _strip_sub(name: str) -> str:
    return name[4:] if name.startswith("sub-") and len(name) > 4 else name


def parse_ids(path: Path, root: Path | None = None) -> tuple[str, str]:
    """(subject, run) for a file, from BIDS entities, its per-subject folder under `root`, or its stem."""
    stem = path.name[: len(path.name) - len(_suffix(path))] if _suffix(path) else path.stem
    entities = dict(re.findall(r"(?:^|_)([a-zA-Z]+)-([a-zA-Z0-9]+)", stem))
    run = entities.get("run")
    if "ses" in entities:
        run = f"{entities['ses']}_{run or '1'}"
    if "sub" in entities:
        return entities["sub"], run or "1"
    if root is not None and path.parent != root:
        return _strip_sub(path.parent.name), run or stem
    return stem, run or "1"


def _is_ukb_dir(path: Path) -> bool:
    return (path / UKB_SUBCORTICAL).exists() or (path / UKB_CORTICAL).exists()


def _source(path: Path, root: Path | None, skip: set[Path]) -> Source | None:
    """The run a file belongs to (its folder for a UKB file), None for a skipped one; raises if unsupported."""
    if path.name in (UKB_SUBCORTICAL, UKB_CORTICAL):
        return Source("ukb", path.parent, _strip_sub(path.parent.name))
    kind = _kind(path)
    if kind is None:
        raise DataError(f"{path}: unsupported file type (expected csv/tsv/txt[.gz], npy/npz or nii[.gz])")
    return None if path.resolve() in skip else Source(kind, path, *parse_ids(path, root))


def _glob_root(pattern: str) -> Path:
    """The folder a glob pattern starts from ("data" for "data/*/rest.npy"): its per-subject folders lie below."""
    parts = Path(pattern).parts
    fixed = parts[: next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]
    return Path(*fixed) if fixed else Path(".")


def _sources_in_dir(root: Path, skip: set[Path]) -> list[Source]:
    from brainjepa.data.store import META_FILE

    stores = {p.parent for p in root.rglob(META_FILE)}  # a store's own manifest is not a time series
    sources = []
    ignored = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if stores.intersection(path.parents):
            continue
        if _kind(path) is None and path.name not in (UKB_SUBCORTICAL, UKB_CORTICAL):
            ignored += 1
        elif (src := _source(path, root, skip)) is not None:
            sources.append(src)
    if ignored:
        logger.info(
            "%s: ignored %d files that are not time series (csv/tsv/txt[.gz], npy/npz, nii[.gz])", root, ignored
        )
    return sources


def find_sources(inputs: Sequence[str | Path], *, skip: Sequence[str | Path] = ()) -> list[Source]:
    """Expand files, folders (searched recursively) and glob patterns into runs to read, in input order.

    Args:
        inputs: paths or glob patterns.
        skip: files to leave out (e.g. the atlases when they sit next to the images).

    Raises:
        DataError: an input does not exist, matches nothing, or has an unsupported extension.
    """
    skip_set = {Path(p).resolve() for p in skip}
    sources: list[Source] = []
    for item in inputs:
        path = Path(item)
        if path.exists():
            paths, root = [path], None
        else:
            paths, root = [Path(p) for p in sorted(glob.glob(str(item), recursive=True))], _glob_root(str(item))
            if not paths:
                raise DataError(f"{item}: no such file or directory (and no files match it as a pattern)")
        for p in paths:
            if p.is_dir():
                sources += [Source("ukb", p, _strip_sub(p.name))] if _is_ukb_dir(p) else _sources_in_dir(p, skip_set)
            elif (src := _source(p, root, skip_set)) is not None:
                sources.append(src)
    return list(dict.fromkeys(sources))  # a run named twice (a folder and a glob, a UKB pair) is read once


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_index_row(cells: Sequence[str]) -> bool:
    # A header of frame numbers (0..n-1 or 1..n) above the time columns.
    try:
        values = [int(c) for c in cells]
    except ValueError:
        return False
    return bool(values) and values[0] in (0, 1) and values == list(range(values[0], values[0] + len(values)))


def _head_lines(path: Path, n: int = 2) -> list[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    lines: list[str] = []
    with opener(path, "rt", encoding="utf-8-sig") as fh:
        for line in fh:
            if line.strip():
                lines.append(line.rstrip("\r\n"))
                if len(lines) == n:
                    break
    return lines


def _separator(path: Path, line: str) -> str:
    name = path.name.lower()
    if ".tsv" in name or "\t" in line:
        return "\t"
    if ".csv" in name or "," in line:
        return ","
    return r"\s+"


def read_table(
    path: str | Path, *, orientation: str = "auto", num_rois: int | None = None
) -> tuple[np.ndarray, list[str] | None]:
    """Read a CSV/TSV/TXT (optionally .gz) table of one run; returns ([R, T] float32, ROI labels or None).

    A first column of names (e.g. the reference's ``label_name``) means rows are ROIs; a header row of names
    means columns are ROIs (a first column under an empty header cell is an index and is dropped); otherwise
    the orientation or the expected ROI count decides.
    """
    import pandas as pd

    path = Path(path)
    try:
        lines = _head_lines(path)
    except (OSError, UnicodeDecodeError, EOFError) as err:
        raise DataError(f"{path}: unreadable file ({err})") from err
    if not lines:
        raise DataError(f"{path}: empty file")
    sep = _separator(path, lines[0])
    split = (lambda s: s.split()) if sep == r"\s+" else (lambda s: s.split(sep))
    row0 = split(lines[0])
    probe = split(lines[1]) if len(lines) > 1 else row0
    label_col = not _is_number(probe[0])
    header = any(not _is_number(c) for c in row0[1:]) or (
        label_col and (row0[0].strip().lower() in _HEADER_NAMES or _is_index_row(row0[1:]))
    )
    # A header whose first cell is empty sits above an index column (pandas' to_csv): not data either way.
    index_col = label_col or (header and not row0[0].strip())
    try:
        df = pd.read_csv(
            path, sep=sep, header=0 if header else None, index_col=0 if index_col else None, encoding="utf-8-sig"
        )
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: unreadable file ({err})") from err
    if df.empty:
        raise DataError(f"{path}: empty file (no data rows)")
    values = df.to_numpy()
    if values.dtype == object:
        cells = (v for v in values.ravel() if not (isinstance(v, (int, float)) or _is_number(str(v))))
        bad = next(cells, values.dtype)
        raise DataError(f"{path}: non-numeric value {bad!r} in the data")
    rows_are = None
    labels = None
    if label_col:
        rows_are, labels = "rois", [str(v) for v in df.index]
    elif header:
        rows_are, labels = "time", [str(c) for c in df.columns]
    ts = orient(
        values.astype(np.float32), source=str(path), rows_are=rows_are, orientation=orientation, num_rois=num_rois
    )
    if labels is not None and len(labels) != ts.shape[0]:
        labels = None  # an explicit orientation overrode the one the labels implied
    return ts, labels


def orient(
    values: np.ndarray,
    *,
    source: str,
    rows_are: str | None = None,
    orientation: str = "auto",
    num_rois: int | None = None,
) -> np.ndarray:
    """Return `values` as [R, T], deciding which axis holds the ROIs.

    Order of evidence: an explicit `orientation`; what the file says (`rows_are` "rois"/"time", e.g. from a
    label column); the axis whose length equals `num_rois`. Otherwise (no hint, or both axes match) it is
    ambiguous and raises.
    """
    if orientation not in ORIENTATIONS:
        raise DataError(f"{source}: orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    if values.ndim != 2:
        raise DataError(f"{source}: expected a 2-D array of ROIs and frames, got shape {values.shape}")
    if orientation == "rois-x-time" or (orientation == "auto" and rows_are == "rois"):
        return values
    if orientation == "time-x-rois" or (orientation == "auto" and rows_are == "time"):
        return values.T
    if num_rois is None:
        raise DataError(
            f"{source}: cannot tell ROIs from frames in shape {values.shape}; "
            "give the expected ROI count (--rois) or the orientation (--orientation)"
        )
    match = [axis for axis in (0, 1) if values.shape[axis] == num_rois]
    if not match:
        raise DataError(f"{source}: wrong ROI count: shape {values.shape} has no axis of {num_rois} ROIs")
    if len(match) == 2:
        raise DataError(
            f"{source}: ambiguous orientation: both axes of shape {values.shape} have {num_rois} entries; "
            "give --orientation"
        )
    return values if match == [0] else values.T


def read_numpy(
    path: str | Path, *, orientation: str = "auto", num_rois: int | None = None
) -> tuple[np.ndarray, float | None]:
    """Read a .npy array, or a .npz holding one 2-D array (and optionally a scalar ``tr``); returns ([R, T], TR)."""
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: unreadable file ({err})") from err
    tr = None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
        tr_key = next((k for k in _NPZ_TR_KEYS if k in arrays), None)
        if tr_key is not None:
            tr = float(arrays.pop(tr_key))
        series = [k for k, v in arrays.items() if v.ndim == 2]
        if len(series) != 1:
            raise DataError(
                f"{path}: expected exactly one 2-D array in the .npz, found {series or 'none'} "
                f"among keys {sorted(arrays)}"
            )
        loaded = arrays[series[0]]
    if loaded.size == 0:
        raise DataError(f"{path}: empty array (shape {loaded.shape})")
    if not np.issubdtype(loaded.dtype, np.number):
        raise DataError(f"{path}: non-numeric array (dtype {loaded.dtype})")
    ts = orient(loaded.astype(np.float32), source=str(path), orientation=orientation, num_rois=num_rois)
    return ts, tr


def read_ukb_pair(folder: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """Read one UKB subject folder: subcortical then cortical ROIs joined, rows = ROIs; ([R, T], labels)."""
    folder = Path(folder)
    sub, ctx = folder / UKB_SUBCORTICAL, folder / UKB_CORTICAL
    missing = [p.name for p in (sub, ctx) if not p.is_file()]
    if missing:
        raise DataError(f"{folder}: cortical/subcortical mismatch: {missing[0]} is missing")
    sub_ts, sub_labels = read_table(sub, orientation="rois-x-time")
    ctx_ts, ctx_labels = read_table(ctx, orientation="rois-x-time")
    if sub_ts.shape[1] != ctx_ts.shape[1]:
        raise DataError(
            f"{folder}: cortical/subcortical mismatch: {UKB_SUBCORTICAL} has {sub_ts.shape[1]} frames, "
            f"{UKB_CORTICAL} has {ctx_ts.shape[1]}"
        )
    labels = sub_labels + ctx_labels if sub_labels is not None and ctx_labels is not None else None
    return np.concatenate([sub_ts, ctx_ts], axis=0), labels


def read_source(
    source: Source,
    *,
    num_rois: int | None = None,
    orientation: str = "auto",
    atlases: Sequence[str | Path] = (),
    tr: float | None = None,
) -> Run:
    """Read one source into a `Run`.

    Args:
        source: from `find_sources`.
        num_rois: expected R (used to orient tables/arrays without labels).
        orientation: "auto", "rois-x-time" or "time-x-rois" for tables and arrays.
        atlases: label images for NIfTI inputs, joined in this order.
        tr: TR in seconds; fills in where the file has none and overrides a NIfTI/npz value (with a warning).
    """
    labels = None
    file_tr = None
    if source.kind == "table":
        ts, labels = read_table(source.path, orientation=orientation, num_rois=num_rois)
    elif source.kind == "array":
        ts, file_tr = read_numpy(source.path, orientation=orientation, num_rois=num_rois)
    elif source.kind == "ukb":
        ts, labels = read_ukb_pair(source.path)
    elif source.kind == "nifti":
        from brainjepa.data.nifti import read_nifti

        ts, file_tr, labels = read_nifti(source.path, atlases)
    else:
        raise DataError(f"{source.label}: unknown source kind {source.kind!r}")
    if tr is not None and file_tr is not None and not np.isclose(tr, file_tr):
        logger.warning("%s: file says TR %.4g s, using the given TR %.4g s", source.label, file_tr, tr)
    return Run(
        ts=ts,
        subject=source.subject,
        run=source.run,
        tr=tr if tr is not None else file_tr,
        source=source.label,
        roi_labels=labels,
    )


SUBJECT_COLUMNS = ("subject", "subject_id", "participant_id", "participant", "eid", "sub", "id")


@dataclass(frozen=True)
class Phenotypes:
    """Per-subject (or per-run) table to join onto the manifest."""

    columns: list[str]
    rows: dict[tuple[str, ...], dict[str, object]]  # key: (subject,) or (subject, run)
    by_run: bool

    def lookup(self, subject: str, run: str) -> dict[str, object] | None:
        """Values for one run, or None when the table has no row for it."""
        return self.rows.get((subject, run) if self.by_run else (subject,))


def read_phenotypes(path: str | Path, *, subject_column: str | None = None) -> Phenotypes:
    """Read a CSV/TSV of phenotypes keyed by subject (and by run when it has a ``run`` column).

    The subject column is `subject_column` or the first of SUBJECT_COLUMNS present (any case); a leading
    ``sub-`` is dropped so BIDS ``participant_id`` values match ids taken from file names.

    Raises:
        DataError: unreadable file, no subject column, or duplicate subjects (runs).
    """
    import pandas as pd

    path = Path(path)
    sep = "\t" if ".tsv" in path.name.lower() else ","
    try:
        header = list(pd.read_csv(path, sep=sep, nrows=0).columns)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable phenotype file ({err})") from err
    lower = {c.lower(): c for c in header}
    if subject_column is not None:
        if subject_column not in header:
            raise DataError(f"{path}: no subject column {subject_column!r} (columns: {header})")
        col = subject_column
    else:
        col = next((lower[c] for c in SUBJECT_COLUMNS if c in lower), None)
        if col is None:
            raise DataError(f"{path}: no subject column (looked for {SUBJECT_COLUMNS}; columns: {header})")
    run_col = lower.get("run")
    text = {col: str} | ({run_col: str} if run_col else {})
    df = pd.read_csv(path, sep=sep, dtype=text)
    df[col] = df[col].str.strip().map(_strip_sub)
    keys = [col] + ([run_col] if run_col else [])
    dup = df[df.duplicated(keys, keep=False)]
    if len(dup):
        raise DataError(f"{path}: duplicate rows for {', '.join(dup[col].astype(str).unique()[:5])}")
    from brainjepa.data.store import MANIFEST_COLUMNS

    columns = [c for c in header if c not in keys]
    clash = sorted(set(columns) & set(MANIFEST_COLUMNS))
    if clash:
        raise DataError(f"{path}: phenotype columns {clash} clash with manifest columns; rename them")
    rows = {
        tuple(str(v) for v in key): dict(zip(columns, values, strict=True))
        for key, values in zip(df[keys].itertuples(index=False), df[columns].itertuples(index=False), strict=True)
    }
    return Phenotypes(columns=columns, rows=rows, by_run=run_col is not None)
