"""One run's 2-D array from a text table or a numpy file, and which of its axes holds the ROIs.

A table's header row, index column and orientation are decided only from unambiguous evidence; when the evidence
is missing or conflicting the table is refused with one line naming the flag that settles it
(``--header/--no-header``, ``--index-col/--no-index-col``, ``--orientation``; the keyword arguments ``header``,
``index_col`` and ``orientation`` of `read_table`). Any file that cannot be read, decoded or parsed is a
`DataError` naming the file (and the row and column of a bad cell), never a traceback, a guess or a NaN.

Cells: whatever Python's ``float`` accepts is a number, so ``nan``/``inf`` written out are values (validation
reports them as non-finite); an empty cell or any other text (``NA``, ``n/a``) in the data is an error.
"""

from __future__ import annotations

import csv
import gzip
import re
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from brainjepa.errors import DataError

ORIENTATIONS = ("auto", "rois-x-time", "time-x-rois")
# A named first cell of a header row above an index column (the reference's UKB files write `label_name`).
_INDEX_HEADERS = {"label_name", "label", "labels", "name", "names", "roi", "rois", "region", "regions"}
# Header names of a first column that may hold frame numbers or times rather than a ROI's signal.
_TIME_HEADERS = {"time", "t", "frame", "frames", "volume", "vol", "tr", "timepoint", "timepoints", "index", "onset"}
_NPZ_TR_KEYS = ("tr", "repetitiontime")  # any case, underscores aside: tr, TR, t_r, RepetitionTime (BIDS), ...
_INT = re.compile(r"[+-]?\d+\Z")
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+")  # 0,5: a European decimal in a file not separated by commas
_SPACED = re.compile(r"[+-]?\d+\s+[+-]?\d+")  # "5 0" of "0,5 0,3" split at its commas
_FRACTION = re.compile(r"\.\d*[1-9]|[eE]-")  # a cell with a fractional part (0.5, 1e-3; not 12.0)
_NUMBERED = re.compile(r"(.*?)(\d+)\Z", re.DOTALL)
_SEPARATOR_NAMES = {",": "commas", "\t": "tabs", ";": "semicolons", " ": "spaces", None: "whitespace"}
_MAX_SHOWN = 5  # cells quoted in a message
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def to_float32(values: np.ndarray, source: str | Path, cell: Callable[[int, int], str]) -> np.ndarray:
    """`values` [rows, cols] as float32; a finite value beyond the float32 range (about 3.4e38), which the cast
    would turn into Inf with numpy's warning, is an error naming `cell(i, j)` of the first one and its value."""
    big = np.isfinite(values) & (np.abs(values) > _FLOAT32_MAX) if values.dtype.itemsize > 4 else None
    if big is not None and big.any():
        i, j = np.argwhere(big)[0]
        more = f" (and {int(big.sum()) - 1} more)" if big.sum() > 1 else ""
        raise DataError(f"{source}: {cell(int(i), int(j))}: value {values[i, j]:.4g} is beyond the float32 range "
                        f"(+-{_FLOAT32_MAX:.3g}) the store holds{more}; rescale the data")
    return values.astype(np.float32)


def _one_line(err: BaseException) -> str:
    return " ".join(str(getattr(err, "strerror", None) or err).split()) or type(err).__name__


def _kind(cell: str) -> str:
    """'blank', 'int' (written as a whole number), 'num' (any other number, nan/inf included) or 'text'."""
    cell = cell.strip()
    if not cell:
        return "blank"
    if _INT.match(cell):
        return "int"
    try:
        float(cell)
    except ValueError:
        return "text"
    return "num"


def _counting(cells: Sequence[str]) -> bool:
    """Whole numbers 0..n-1 or 1..n (n >= 2): frame or column numbers, an index."""
    if len(cells) < 2 or not all(_INT.match(c.strip()) for c in cells):
        return False
    values = [int(c) for c in cells]
    return values[0] in (0, 1) and values == list(range(values[0], values[0] + len(values)))


def _numbered(names: Sequence[str]) -> bool:
    """Names that are one prefix plus a running number (Var1..VarN, V1.., X1.., roi0..): generated, not ROI names."""
    parts = [_NUMBERED.match(n.strip()) for n in names]
    if not all(parts) or len({p.group(1) for p in parts}) != 1:
        return False
    return _counting([p.group(2) for p in parts])


def _show(cells: Sequence[str]) -> str:
    shown = ", ".join(c.strip() for c in cells[:_MAX_SHOWN])
    return shown + (", ..." if len(cells) > _MAX_SHOWN else "")


def read_text(path: Path) -> str:
    """The text of a (possibly gzipped) table; an unreadable, binary, non-UTF-8 or empty file is a DataError."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({_one_line(err)})") from err
    if path.name.lower().endswith(".gz") and raw:
        if raw[:2] != b"\x1f\x8b":
            raise DataError(f"{path}: not a gzip file, though its name ends in .gz")
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: corrupt or truncated gzip file ({_one_line(err)})") from err
    if not raw.strip():
        raise DataError(f"{path}: empty file")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: UTF-16 text; save the table as UTF-8")
    if raw.startswith(b"PK\x03\x04"):
        raise DataError(f"{path}: a zip archive (an Excel workbook?), not a text table; export it as CSV")
    if b"\x00" in raw:
        raise DataError(f"{path}: binary data, not a text table")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); save the table as UTF-8"
        ) from err


def _numbered_lines(path: Path, text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of the table: leading '#' comments and trailing blank lines left out."""
    lines = list(enumerate(text.splitlines(), start=1))
    while lines and not lines[-1][1].strip():
        lines.pop()
    start = 0
    while start < len(lines) and (not lines[start][1].strip() or lines[start][1].lstrip().startswith("#")):
        start += 1
    lines = lines[start:]
    if not lines:
        raise DataError(f"{path}: empty file (only comments or blank lines)")
    blank = next((n for n, line in lines if not line.strip()), None)
    if blank is not None:
        raise DataError(f"{path}: row {blank}: blank line inside the table")
    return lines


def _separator(path: Path, first_line: str) -> str | None:
    """',' for .csv, tab for .tsv; for .txt a tab, a comma or else any whitespace (None), from the first line."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".csv"):
        return ","
    if name.endswith(".tsv"):
        return "\t"
    return "\t" if "\t" in first_line else "," if "," in first_line else None


def _check_separator(path: Path, sep: str | None, lines: Sequence[str], widths: Sequence[int]) -> None:
    # A wrong separator shows as one column per row, or as ';' on every line (European CSV with decimal commas).
    head = lines[:5]
    used = _SEPARATOR_NAMES[sep]
    kind = {",": "comma-separated", "\t": "tab-separated", None: "whitespace-separated"}[sep]
    fix = "re-export it with commas (.csv), tabs (.tsv) or spaces (.txt)"
    if all(";" in line for line in head):
        raise DataError(f"{path}: wrong separator: rows are separated by semicolons, not {used}; {fix}")
    if all(w == 1 for w in widths):
        for other in (",", "\t", " "):
            if other != sep and all(other in line.strip() for line in head):
                raise DataError(
                    f"{path}: wrong separator: one column per row, but the rows contain {_SEPARATOR_NAMES[other]}; "
                    f"this file is read as {kind}; rename it or {fix}"
                )


def _cells(path: Path, number: int, line: str, sep: str | None) -> list[str]:
    """All cells of one line (quoted cells as in CSV)."""
    if sep is None:
        return line.split()
    if '"' not in line:
        return line.split(sep)
    try:
        return next(csv.reader([line], delimiter=sep, skipinitialspace=True, strict=True))
    except csv.Error as err:
        raise DataError(f"{path}: row {number}: {_one_line(err)}") from err


def _first_and_rest(path: Path, number: int, line: str, sep: str | None) -> tuple[str, str, int]:
    """(first cell, the text of the other cells, number of cells) of one line, without splitting all of it."""
    if sep is not None and '"' in line:
        cells = _cells(path, number, line, sep)
        return cells[0], sep.join(cells[1:]), len(cells)
    parts = line.split(sep, 1)
    width = line.count(sep) + 1 if sep is not None else len(line.split())
    return parts[0], parts[1] if len(parts) > 1 else "", width


def _check_ragged(path: Path, numbers: Sequence[int], widths: Sequence[int]) -> None:
    odd = next((i for i, w in enumerate(widths) if w != widths[0]), None)
    if odd is not None:
        raise DataError(
            f"{path}: ragged rows: row {numbers[0]} has {widths[0]} cells but row {numbers[odd]} has {widths[odd]}"
        )


def _distinct_ints(cells: Sequence[str]) -> bool:
    return len({int(c) for c in cells}) == len(cells)


def _evenly_increasing(values: Sequence[float]) -> bool:
    """At least 3 values from >= 0 up in equal steps (frame times or numbers): no ROI's signal looks like that."""
    steps = np.diff(values)
    return len(values) >= 3 and values[0] >= 0 and steps[0] > 0 and bool(np.allclose(steps, steps[0], rtol=1e-3))


def _decimal_header(path: Path, number: int, row0: Sequence[str], first: str, fractional: bool) -> bool | None:
    """A first row of numbers some of which are written as decimals: a header (True), data (False) or not
    decided here (None). nilearn's ``labels_`` are floats, so pandas writes ``1.0,2.0,...`` above its columns;
    frame times (``0.0,0.72,...``) head a table of ROI rows."""
    named = first in ("blank", "text")
    values = [float(c) for c in (row0[1:] if named else row0)]
    if _evenly_increasing(values):
        return True  # column numbers or float labels 1.0..n, frame times
    if all(v.is_integer() for v in values):
        if fractional and len(set(values)) == len(values):
            question = (f"row {number} ({_show(row0)}) holds whole numbers written as decimals above fractional "
                        "data: a header of labels, or data")
            raise DataError(f"{path}: cannot tell whether {question}; give header=True or False (--header or "
                            "--no-header)")
        return None
    if first == "text" and row0[0].strip().lower() in _INDEX_HEADERS:
        question = f"row {number} ({_show(row0)}) is a header (its first cell names the ROI column), or a ROI's data"
        raise DataError(f"{path}: cannot tell whether {question}; give header=True or False (--header or "
                        "--no-header)")
    return None


def _decide_header(path: Path, number: int, row0: Sequence[str], decimals: bool, fractional: bool) -> bool:
    """Whether the first row (line `number`) is a header; `decimals`: the cells below it and right of column 1
    are not all written as whole numbers; `fractional`: some of them have a fractional part."""
    kinds = [_kind(c) for c in row0]
    first, rest = kinds[0], kinds[1:] or kinds
    if "text" in rest and all(k in ("text", "blank") for k in rest):
        return True  # names (a missing one is reported as an empty header cell)
    if len(row0) >= 2 and "num" in kinds[first in ("blank", "text"):] \
            and all(k in ("int", "num") for k in kinds[first in ("blank", "text"):]):
        decided = _decimal_header(path, number, row0, first, fractional)
        if decided is not None:
            return decided
    if not all(k == "int" for k in rest) or len(row0) < 2:
        return False  # data (any blank or text cell in it is reported as such)
    if first == "blank" or row0[0].strip().lower() in _INDEX_HEADERS:
        return True  # pandas' ",0,1,2" above its index; the reference's "label_name,0,1,..."
    if first == "text":
        if decimals and _counting(row0[1:]):
            return True  # frame numbers above a column of names
        question = f"row {number} ({_show(row0)}) is a header above a column of names, or a row of data"
    elif first != "int":
        return False
    elif _counting(row0):
        if decimals:
            return True  # column numbers above decimal data
        question = f"row {number} ({_show(row0)}) is a header of column numbers, or data (all cells are whole numbers)"
    elif decimals and _distinct_ints(row0):
        question = f"row {number} ({_show(row0)}) holds whole numbers above decimals: a header of labels, or data"
    else:
        return False
    raise DataError(f"{path}: cannot tell whether {question}; give header=True or False (--header or --no-header)")


def _decide_index(path: Path, column: Sequence[str], head: str | None, decimals: bool) -> bool:
    """Whether column 0 is an index (or ROI names); `head` is the header cell above it (None without a header)."""
    kinds = [_kind(c) for c in column]
    if head is not None and not head.strip():
        return True  # a blank cell above the first column: pandas' or R's index
    if all(k == "text" for k in kinds):
        return True  # names
    if not all(k in ("int", "num") for k in kinds):
        return False  # data (its blank or text cells are reported as such)
    named = f"headed {head.strip()!r}: " if head else ""
    if _counting(column):
        if decimals:
            return True  # row numbers beside decimal data
        question = f"column 1 ({named}{_show(column)}) is an index of row numbers, or data (all whole numbers)"
    elif head is not None and (head.strip().lower() in _TIME_HEADERS or head.strip().lower().startswith("unnamed:")):
        question = f"column 1 ({named}{_show(column)}) holds times or frame numbers, or a ROI's signal"
    elif len(column) >= 2 and decimals and all(k == "int" for k in kinds) and _distinct_ints(column):
        question = f"column 1 ({_show(column)}) holds whole numbers beside decimals: an index of labels, or data"
    else:
        return False
    raise DataError(f"{path}: cannot tell whether {question}; give index_col=True or False (--index-col or "
                    "--no-index-col)")


def _to_float(
    path: Path, lines: Sequence[str], numbers: Sequence[int], sep: str | None, left: int, width: int
) -> np.ndarray:
    """Columns `left`.. of `lines` as float64; an empty or non-numeric cell is an error naming its row and column
    (1-based, as a spreadsheet shows the file)."""
    try:
        return np.loadtxt(
            lines,
            delimiter=sep,
            usecols=range(left, width),
            dtype=np.float64,
            comments=None,
            quotechar='"' if sep else None,
            ndmin=2,
        )
    except ValueError:
        pass  # find every bad cell, for the message
    values = np.empty((len(lines), width - left), np.float64)
    bad: list[str] = []
    for i, (number, line) in enumerate(zip(numbers, lines, strict=True)):
        for j, cell in enumerate(_cells(path, number, line, sep)[left:]):
            try:
                values[i, j] = float(cell)
            except ValueError:
                what = "empty cell" if not cell.strip() else f"non-numeric cell {cell.strip()!r}"
                if _DECIMAL_COMMA.fullmatch(cell.strip()) or (sep == "," and _SPACED.fullmatch(cell.strip())):
                    what += " (decimal commas? write decimals with a point)"
                bad.append(f"row {number}, column {left + j + 1}: {what}")
    if not bad:
        return values
    more = f" (and {len(bad) - 1} more empty or non-numeric cells)" if len(bad) > 1 else ""
    raise DataError(f"{path}: {bad[0]}{more}")


def read_table(
    path: str | Path,
    *,
    orientation: str = "auto",
    num_rois: int | None = None,
    header: bool | None = None,
    index_col: bool | None = None,
) -> tuple[np.ndarray, list[str] | None]:
    """Read a CSV/TSV/TXT (optionally .gz) table of one run; returns ([R, T] float32, ROI labels or None).

    Args:
        path: the table; the separator follows the extension (',' for .csv, tab for .tsv, and for .txt a tab, a
            comma or whitespace, whichever the first line has).
        orientation: "rois-x-time" (rows are ROIs), "time-x-rois", or "auto" (names on one axis, else `num_rois`).
        num_rois: expected R, used to orient a table without ROI names.
        header: whether the first row is a header; None decides from the evidence (names; ``0..N-1``/``1..N``
            above decimals; numbers written as decimals rising in equal steps, as nilearn's float labels and
            frame times are; a blank or ``label_name`` first cell above an index) or refuses.
        index_col: whether the first column is an index or ROI names; None decides from the evidence (names; a
            blank header cell above it; ``0..n-1``/``1..n`` beside decimals) or refuses.

    Raises:
        DataError: unreadable file, bad cell, ragged rows, wrong separator, or an undecidable layout; the message
            names the file and the flag that settles it.
    """
    path = Path(path)
    lines = _numbered_lines(path, read_text(path))
    numbers = [n for n, _ in lines]
    texts = [line for _, line in lines]
    sep = _separator(path, texts[0])
    firsts, rests, widths = zip(*(_first_and_rest(path, n, line, sep) for n, line in lines), strict=True)
    _check_separator(path, sep, texts, widths)
    _check_ragged(path, numbers, widths)
    row0 = _cells(path, numbers[0], texts[0], sep)
    # Evidence that the data are decimals: a cell right of column 0, below row 0, not written as a whole number.
    whole = re.compile(r"[\d\s+\-\"" + re.escape(sep or "") + r"]*\Z")
    decimals = not all(whole.match(rest) for rest in rests[1:])
    fractional = decimals and any(_FRACTION.search(rest) for rest in rests[1:])
    if header is None:
        header = _decide_header(path, numbers[0], row0, decimals, fractional)
    top = int(header)
    if index_col is None:
        head = row0[0] if header else None
        index_col = widths[0] > 1 and _decide_index(path, firsts[top:], head, decimals)
    left = int(index_col)
    if len(lines) <= top:
        raise DataError(f"{path}: empty file (no data rows)")
    if widths[0] <= left:
        raise DataError(f"{path}: no data columns (only the index column)")
    values = _to_float(path, texts[top:], numbers[top:], sep, left, widths[0])
    col_names = [c.strip() for c in row0[left:]] if header else None
    row_names = [c.strip() for c in firsts[top:]] if index_col else None
    if col_names is not None and any(not c for c in col_names):
        blank = left + next(i for i, c in enumerate(col_names) if not c) + 1
        raise DataError(f"{path}: row {numbers[0]}, column {blank}: empty cell in the header")
    # Text names label an axis; numbers (frame numbers, an index) and generated names (Var1..VarN) say nothing,
    # unless a header such as `label_name` says the first column names ROIs.
    col_names = col_names if col_names and all(_kind(c) == "text" for c in col_names) else None
    row_names = row_names if row_names and all(_kind(c) == "text" for c in row_names) else None
    roi_header = header and index_col and row0[0].strip().lower() in _INDEX_HEADERS  # "label_name" above
    named_rows = row_names is not None and (roi_header or not _numbered(row_names))
    named_cols = col_names is not None and not _numbered(col_names)
    rows_are = None if named_rows == named_cols else "rois" if named_rows else "time"
    axis = roi_axis(values.shape, source=str(path), rows_are=rows_are, orientation=orientation, num_rois=num_rois)
    labels = row_names if axis == 0 else col_names
    values = to_float32(values, path, lambda i, j: f"row {numbers[top + i]}, column {left + j + 1}")
    return values if axis == 0 else values.T, labels


def roi_axis(
    shape: tuple[int, ...],
    *,
    source: str,
    rows_are: str | None = None,
    orientation: str = "auto",
    num_rois: int | None = None,
) -> int:
    """Which axis (0 or 1) of a 2-D array holds the ROIs.

    Order of evidence: an explicit `orientation`; what the file says (`rows_are` "rois"/"time", e.g. from a
    column of ROI names); the axis whose length equals `num_rois`. Otherwise (no evidence, or both axes match)
    it is ambiguous and raises.
    """
    if orientation not in ORIENTATIONS:
        raise DataError(f"{source}: orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    if len(shape) != 2:
        raise DataError(f"{source}: expected a 2-D array of ROIs and frames, got shape {shape}")
    if orientation == "rois-x-time" or (orientation == "auto" and rows_are == "rois"):
        return 0
    if orientation == "time-x-rois" or (orientation == "auto" and rows_are == "time"):
        return 1
    if num_rois is None:
        raise DataError(
            f"{source}: cannot tell ROIs from frames in shape {shape}; "
            "give the expected ROI count (num_rois=, --rois) or the orientation (orientation=, --orientation)"
        )
    match = [axis for axis in (0, 1) if shape[axis] == num_rois]
    if not match:
        raise DataError(f"{source}: wrong ROI count: shape {shape} has no axis of {num_rois} ROIs")
    if len(match) == 2:
        raise DataError(
            f"{source}: ambiguous orientation: both axes of shape {shape} have {num_rois} entries; give the "
            "orientation (orientation=, --orientation)"
        )
    return match[0]


def orient(
    values: np.ndarray,
    *,
    source: str,
    rows_are: str | None = None,
    orientation: str = "auto",
    num_rois: int | None = None,
) -> np.ndarray:
    """Return `values` as [R, T], the ROI axis chosen by `roi_axis`."""
    axis = roi_axis(np.shape(values), source=source, rows_are=rows_are, orientation=orientation, num_rois=num_rois)
    return values if axis == 0 else values.T


def _load_numpy(path: Path) -> tuple[np.ndarray, float | None]:
    """The one 2-D array of a .npy/.npz (told apart by content) and an .npz's scalar TR; never unpickles."""
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as err:
        raise DataError(f"{path}: cannot read the file ({_one_line(err)})") from err
    if not magic:
        raise DataError(f"{path}: empty file")
    if magic.startswith(b"PK\x05\x06"):  # a zip archive with no members: np.savez() of no arrays
        raise DataError(f"{path}: empty .npz archive (it holds no arrays)")
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK\x03\x04"):
        raise DataError(f"{path}: not a numpy file (.npy or .npz)")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return loaded, None
        with loaded:
            arrays = {k: loaded[k] for k in loaded.files}
    except ValueError as err:
        if "allow_pickle" in str(err):
            raise DataError(f"{path}: holds Python objects (dtype object), which are never unpickled") from err
        raise DataError(f"{path}: corrupt or truncated numpy file ({_one_line(err)})") from err
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated numpy file ({_one_line(err)})") from err
    tr = None
    tr_keys = [k for k in arrays if k.lower().replace("_", "") in _NPZ_TR_KEYS]
    if len(tr_keys) > 1:
        raise DataError(f"{path}: two TRs, {' and '.join(map(repr, tr_keys[:2]))}; keep one")
    tr_key = tr_keys[0] if tr_keys else None
    if tr_key is not None:
        value = arrays.pop(tr_key)
        if value.size != 1 or not np.issubdtype(value.dtype, np.number):
            raise DataError(f"{path}: '{tr_key}' must be one number (seconds), got {value.dtype} {value.shape}")
        tr = float(value.reshape(()))
        if not (np.isfinite(tr) and tr > 0):
            raise DataError(f"{path}: '{tr_key}' must be a positive number of seconds, got {tr}")
    series = [k for k, v in arrays.items() if v.ndim == 2]
    if len(series) != 1:
        raise DataError(
            f"{path}: expected exactly one 2-D array in the .npz, found {series or 'none'} among keys {sorted(arrays)}"
        )
    return arrays[series[0]], tr


def read_numpy(
    path: str | Path, *, orientation: str = "auto", num_rois: int | None = None
) -> tuple[np.ndarray, float | None]:
    """Read a .npy array, or a .npz holding one 2-D array (and optionally a scalar ``tr``); returns ([R, T], TR)."""
    path = Path(path)
    array, tr = _load_numpy(path)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{path}: non-numeric array (dtype {array.dtype}); need integers or floats")
    if array.size == 0:
        raise DataError(f"{path}: empty array (shape {array.shape})")
    if array.ndim == 2:
        array = to_float32(array, path, lambda i, j: f"element [{i}, {j}]")
    return orient(array.astype(np.float32), source=str(path), orientation=orientation, num_rois=num_rois), tr
