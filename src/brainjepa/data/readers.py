"""Read ROI time series from tables, numpy files, the UKB pair layout and 4-D NIfTI images.

Every reader returns [R, T] float32 (ROIs x frames). Where a file does not say which axis holds the ROIs, the
caller gives an orientation or the expected ROI count; anything else that cannot be decided is a `DataError`
naming the file, never a guess.

Ids: a BIDS-like name ``sub-XX[_ses-SS]..._run-YY`` gives subject ``XX`` and run ``YY`` (``SS_YY`` with a
session); otherwise a file inside a per-subject folder gets the folder name as subject and its stem as run; a
lone file gets its stem, less any ``ses-``/``run-`` entities, as subject and run ``1`` (or the entities' run).
A leading ``sub-`` is dropped from folder names too. Run indices are compared as numbers, as BIDS does
(`run_key`): ``run-1`` and ``run-01`` are one run.

Folders are searched recursively and symbolic links to folders are followed (each real folder once, so a link
loop ends); a broken symbolic link is a problem of its own, named with its missing target.
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainjepa.bounds import SCANNER_TR
from brainjepa.data.atlases import is_label_table, label_table_path
from brainjepa.data.nifti import read_nifti
from brainjepa.data.store_format import MANIFEST_COLUMNS, META_FILE
from brainjepa.data.tables import ORIENTATIONS, read_numpy, read_table
from brainjepa.errors import DataError
from brainjepa.io import no_such

logger = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
ARRAY_SUFFIXES = (".npy", ".npz")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# The reference UKB layout: <root>/time_series/<id>/<file>; subcortical rows come first in the joined array.
UKB_SUBCORTICAL = "fMRI.Tian_Subcortex_S3_3T.csv.gz"
UKB_CORTICAL = "fMRI.Schaefer17n400p.csv.gz"


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

    def read(self, options: ReadOptions) -> Run:
        """This run as a `Run`, read as `options` say; a source kind with its own reader (fMRIPrep) overrides this,
        so the checks and the store read every kind through one call."""
        labels = None
        file_tr = None
        if self.kind == "table":
            ts, labels = read_table(self.path, orientation=options.orientation, num_rois=options.num_rois,
                                    header=options.header, index_col=options.index_col)
        elif self.kind == "array":
            ts, file_tr = read_numpy(self.path, orientation=options.orientation, num_rois=options.num_rois)
        elif self.kind == "ukb":
            ts, labels = read_ukb_pair(self.path)
        elif self.kind == "nifti":
            ts, file_tr, labels = read_nifti(self.path, options.atlases)
        elif self.kind == "broken":
            raise DataError(f"{self.label}: broken symbolic link (its target {os.readlink(self.path)} does not "
                            "exist)")
        else:
            raise DataError(f"{self.label}: unknown source kind {self.kind!r}")
        return Run(
            ts=ts,
            subject=self.subject,
            run=self.run,
            tr=pick_tr(self.label, options.tr, file_tr, allow_unusual=options.allow_unusual_tr),
            source=self.label,
            roi_labels=labels,
        )


@dataclass(frozen=True)
class ReadOptions:
    """How runs are read: the input flags of `brainjepa validate` / `prepare`, passed down as one value from the
    CLI through `brainjepa.data.prepare` and the checks (`brainjepa.data.validate`) to `read_source`.

    Args:
        num_rois: expected R (orients tables/arrays without labels; the checks also hold every run to it).
        orientation: "auto", "rois-x-time" or "time-x-rois" for tables and arrays.
        header: whether a table's first row is a header (None: decide from the evidence, see `read_table`).
        index_col: whether a table's first column is an index or ROI names (None: decide from the evidence).
        atlases: label images for NIfTI inputs, joined in this order (files beside the inputs are not read as runs).
        tr: TR in seconds; fills in where the file has none and overrides a NIfTI/npz value (with a warning).
        allow_unusual_tr: accept TRs outside `SCANNER_TR` (0.05-30 s), which are refused by default (`check_tr`).
    """

    num_rois: int | None = None
    orientation: str = "auto"
    header: bool | None = None
    index_col: bool | None = None
    atlases: tuple[str | Path, ...] = ()
    tr: float | None = None
    allow_unusual_tr: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "atlases", tuple(self.atlases))  # a list is accepted; the value stays hashable
        if self.orientation not in ORIENTATIONS:
            raise DataError(f"orientation must be one of {ORIENTATIONS}, got {self.orientation!r}")


DEFAULT_READ = ReadOptions()  # every default decided from the evidence in the files (frozen: safe to share)


@dataclass
class Run:
    """One run's time series and where it came from."""

    ts: np.ndarray  # [R, T] float32
    subject: str
    run: str
    tr: float | None
    source: str
    roi_labels: list[str] | None = None
    info: dict[str, object] | None = None  # extra manifest columns (e.g. fMRIPrep session, task, frames_removed)


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


_INDEX_ENTITY = re.compile(r"(run|echo)-0*(\d+)\Z")


def run_key(run: str) -> str:
    """The run id as BIDS compares it: run indices as numbers, so "01" and "1" (``run-02`` and ``run-2`` in an
    fMRIPrep id such as ``ses-1_task-rest_run-02``) are one run. Other labels are compared as written."""
    parts = str(run).split("_")
    for i, part in enumerate(parts):
        if (match := _INDEX_ENTITY.fullmatch(part)) is not None:
            parts[i] = f"{match.group(1)}-{match.group(2)}"
    if parts[-1].isdigit():  # "YY" or the run of "SS_YY" (a session is a label: kept as written)
        parts[-1] = str(int(parts[-1]))
    return "_".join(parts)


_RUN_ENTITIES = re.compile(r"(?:^|_)(?:ses|run)-[a-zA-Z0-9]+")


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
    # The stem less its ses-/run- entities: "p07_run-1" and "p07_run-2" are two runs of one subject, not two subjects.
    subject = _RUN_ENTITIES.sub("", stem).strip("_")
    return subject or stem, run or "1"


def _is_ukb_dir(path: Path) -> bool:
    return (path / UKB_SUBCORTICAL).exists() or (path / UKB_CORTICAL).exists()


def _broken_link(path: Path) -> bool:
    return path.is_symlink() and not path.exists()


def _source(path: Path, root: Path | None, skip: set[Path]) -> Source | None:
    """The run a file belongs to (its folder for a UKB file), None for a skipped one; raises if unsupported."""
    if _broken_link(path):  # reported when read, beside the other runs: validate lists it, --skip-bad skips it
        return Source("broken", path, *parse_ids(path, root))
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


def walk(root: Path) -> list[Path]:
    """Every file, folder and link under `root`, sorted, following symbolic links to folders; each real folder is
    entered once, so a link loop (or a link back up the tree) ends instead of repeating runs.

    Raises:
        DataError: a folder that cannot be listed (no permission), naming it.
    """
    found: list[Path] = []
    entered: set[Path] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        real = folder.resolve()
        if real in entered:
            continue
        entered.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            raise DataError(f"{folder}: cannot list the folder ({err.strerror or err})") from err
        for entry in entries:
            path = Path(entry.path)
            found.append(path)
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            if is_dir:
                pending.append(path)
    return sorted(found)


def _sources_in_dir(root: Path, skip: set[Path]) -> list[Source]:
    paths = walk(root)
    stores = {p.parent for p in paths if p.name == META_FILE}  # a store's own manifest is not a time series
    _refuse_fmriprep(root, paths)
    sources = []
    ignored = 0
    # A folder named like a data file (x.csv/) is kept as an input, so that it is reported rather than ignored.
    for path in (p for p in paths if p.is_file() or _kind(p) is not None or _broken_link(p)):
        if stores.intersection(path.parents):
            continue
        if _kind(path) is None and path.name not in (UKB_SUBCORTICAL, UKB_CORTICAL) and not _broken_link(path):
            ignored += 1
        elif (src := _source(path, root, skip)) is not None:
            sources.append(src)
    if ignored:
        logger.info(
            "%s: ignored %d files that are not time series (csv/tsv/txt[.gz], npy/npz, nii[.gz])", root, ignored
        )
    return sources


# Names fMRIPrep gives its outputs: read as plain inputs they are images without an atlas and confound tables.
_FMRIPREP_NAMES = ("_desc-preproc_bold.nii.gz", "_bold.dtseries.nii")


def _refuse_fmriprep(root: Path, paths: Sequence[Path]) -> None:
    """fMRIPrep derivatives (a preprocessed BOLD image or dtseries) given as plain inputs would fail run by run
    (images without confound cleaning, confound tables read as time series); say what they are instead."""
    bold = [p for p in paths if p.name.endswith(_FMRIPREP_NAMES[:2])]
    if bold:
        raise DataError(f"{root}: holds fMRIPrep derivatives ({bold[0].name}, ...); read them as such "
                        "(fmriprep=FmriprepOptions(...) and atlases in Python; --fmriprep and --atlas on the "
                        "command line)")


def find_sources(inputs: Sequence[str | Path], *, skip: Sequence[str | Path] = ()) -> list[Source]:
    """Expand files, folders (searched recursively) and glob patterns into runs to read, in input order.

    Args:
        inputs: paths or glob patterns.
        skip: files to leave out (e.g. the atlases when they sit next to the images), with the label table
            ``<stem>.tsv`` (index, name) beside each.

    Raises:
        DataError: an input does not exist, matches nothing, or has an unsupported extension.
    """
    tables = [label_table_path(p) for p in skip]  # an atlas's ROI names, not a run
    skip_set = {Path(p).resolve() for p in skip} | {t.resolve() for t in tables if is_label_table(t)}
    sources: list[Source] = []
    for item in inputs:
        path = Path(item)
        if path.exists() or _broken_link(path):
            paths, root = [path], None
        else:
            paths, root = [Path(p) for p in sorted(glob.glob(str(item), recursive=True))], _glob_root(str(item))
            if not paths:
                raise DataError(f"{item}: no such file or directory (and no files match it as a pattern)")
        for p in paths:
            if p.is_dir() and _is_ukb_dir(p):
                sources.append(Source("ukb", p, _strip_sub(p.name)))
            elif p.is_dir() and _kind(p) is None:  # a folder named like a data file (x.csv/) is reported
                sources += _sources_in_dir(p, skip_set)
            elif (src := _source(p, root, skip_set)) is not None:
                sources.append(src)
    return list(dict.fromkeys(sources))  # a run named twice (a folder and a glob, a UKB pair) is read once


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


def check_tr(tr: float, where: str | Path, *, allow_unusual: bool = False, given_as: str = "TR") -> float:
    """`tr` if it is a TR in seconds that a scanner could have used (`SCANNER_TR`, 0.05-30 s) or `allow_unusual`.

    Raises:
        DataError: naming `where` for a TR that is not a positive number, or one outside the range (milliseconds
            given as seconds, most likely), with how to confirm it.
    """
    if not (isinstance(tr, int | float | np.number) and math.isfinite(tr) and tr > 0):
        raise DataError(f"{where}: {given_as} must be a positive number of seconds, got {tr}")
    low, high = SCANNER_TR
    if not allow_unusual and not low <= tr <= high:
        guess = f" (milliseconds given as seconds? {tr:g} ms is {tr / 1000:g} s)" if tr > high else ""
        raise DataError(f"{where}: {given_as} {tr:g} s is outside what scanners use ({low:g}-{high:g} s){guess}; "
                        "give the TR in seconds, or confirm this one (allow_unusual_tr=True in Python, "
                        "--allow-unusual-tr on the command line)")
    return float(tr)


def pick_tr(label: str | Path, given: float | None, found: float | None, *, found_in: str = "file",
            allow_unusual: bool = False) -> float | None:
    """The TR a run gets: the given one (with a warning where the file says otherwise), else the file's; checked
    with `check_tr` (a TR outside what scanners use is refused unless `allow_unusual`)."""
    if given is not None and found is not None and not np.isclose(given, found):
        logger.warning("%s: %s says TR %.4g s, using the given TR %.4g s", label, found_in, found, given)
    tr = given if given is not None else found
    if tr is not None:
        check_tr(tr, label, allow_unusual=allow_unusual, given_as="TR" if given is not None else f"the {found_in}'s TR")
    return tr


def read_source(source: Source, options: ReadOptions = DEFAULT_READ) -> Run:
    """Read one source (from `find_sources` or `find_fmriprep_runs`) into a `Run`, as `options` say."""
    return source.read(options)


SUBJECT_COLUMNS = ("subject", "subject_id", "participant_id", "participant", "eid", "sub", "id")


@dataclass(frozen=True)
class Phenotypes:
    """Per-subject (or per-run) table to join onto the manifest."""

    columns: list[str]
    rows: dict[tuple[str, ...], dict[str, object]]  # key: (subject,) or (subject, run)
    by_run: bool
    keys: tuple[str, ...] = ("subject",)  # the table's columns the rows are keyed on (subject[, run])

    def lookup(self, subject: str, run: str) -> dict[str, object] | None:
        """Values for one run, or None when the table has no row for it (runs compared as numbers: `run_key`)."""
        return self.rows.get((subject, run_key(run)) if self.by_run else (subject,))


def read_phenotypes(path: str | Path, *, subject_column: str | None = None) -> Phenotypes:
    """Read a CSV/TSV of phenotypes keyed by subject (and by run when it has a ``run`` column).

    The subject column is `subject_column` or the first of SUBJECT_COLUMNS present (any case); a leading
    ``sub-`` is dropped so BIDS ``participant_id`` values match ids taken from file names.

    Raises:
        DataError: unreadable file, no subject column, or duplicate subjects (runs).
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise DataError(f"{no_such(path, 'file')}; unreadable phenotype file")
    sep = "\t" if ".tsv" in path.name.lower() else ","
    try:
        header = list(pd.read_csv(path, sep=sep, nrows=0).columns)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable phenotype file ({err})") from err
    other = next((o for o in (";", "\t", ",") if o != sep and len(header) == 1 and o in header[0]), None)
    if other is not None:  # a European CSV (semicolons), or a TSV named .csv: one column holding every name
        names = {";": "semicolons", "\t": "tabs", ",": "commas"}
        raise DataError(f"{path}: one column {header[0]!r}: the table is separated by {names[other]}, not "
                        f"{names[sep]}; save it with commas (.csv) or tabs (.tsv)")
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
    try:
        df = pd.read_csv(path, sep=sep, dtype=text)
    except (OSError, ValueError) as err:  # ragged rows, bad encoding
        raise DataError(f"{path}: unreadable phenotype file ({err})") from err
    empty = df[col].isna() | (df[col].str.strip() == "")
    if empty.any():
        raise DataError(f"{path}: {int(empty.sum())} rows have no subject id in column {col!r} (first: data row "
                        f"{int(np.flatnonzero(empty.to_numpy())[0]) + 1})")
    df[col] = df[col].str.strip().map(_strip_sub)
    if run_col:  # "1" and "01" are one run, as in the file names (`run_key`)
        df[run_col] = df[run_col].fillna("").str.strip().map(run_key)
    for name in df.columns.difference([col, run_col]):  # "A " and " B" from a spreadsheet are the labels A and B
        if not pd.api.types.is_numeric_dtype(df[name]):
            df[name] = df[name].map(lambda v: v.strip() if isinstance(v, str) else v)
    keys = [col] + ([run_col] if run_col else [])
    dup = df[df.duplicated(keys, keep=False)]
    if len(dup):
        raise DataError(f"{path}: duplicate rows for {', '.join(dup[col].astype(str).unique()[:5])}")
    columns = [c for c in header if c not in keys]
    clash = sorted(set(columns) & set(MANIFEST_COLUMNS))
    if clash:
        raise DataError(f"{path}: phenotype columns {clash} clash with manifest columns; rename them")
    rows = {
        tuple(str(v) for v in key): dict(zip(columns, values, strict=True))
        for key, values in zip(df[keys].itertuples(index=False), df[columns].itertuples(index=False), strict=True)
    }
    return Phenotypes(columns=columns, rows=rows, by_run=run_col is not None, keys=tuple(keys))
