"""Tables as people export them (pandas, numpy, nilearn, MATLAB, R) read back exactly, or refused by name.

Every case writes a known [R, T] array with the real library (or MATLAB's / R's text format) and reads it back
with `read_table`: the result must equal the array exactly (ROIs x frames, float32), or the table must be refused
with one line naming the file and the flag that settles it.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainjepa.cli import main
from brainjepa.data.store import RunStore
from brainjepa.data.tables import read_table
from brainjepa.errors import DataError

R, T = 5, 12
TS = np.random.default_rng(0).standard_normal((R, T)).astype(np.float32)  # exact in any float64 text form
NAMES = ["Thal-lh", "Thal-rh", "Caudate", "Putamen", "Vis_1"]
NETWORKS = ["Vis1", "SomMot2", "DorsAttn3", "Limbic4", "Default5"]  # numbered, but not one prefix


def _matlab(x: np.ndarray, header: list[str] | None = None) -> str:
    """MATLAB's writematrix (comma-separated, up to 15 significant digits) or, with a header, writetable."""
    lines = [",".join(header)] if header else []
    return "\n".join(lines + [",".join(f"{v:.15g}" for v in row) for row in x.astype(np.float64)]) + "\n"


def _r_write_csv(x: np.ndarray) -> str:
    """R's write.csv(as.data.frame(x)): quoted header with a blank first cell, quoted row names "1".."n"."""
    header = '"",' + ",".join(f'"V{j + 1}"' for j in range(x.shape[1]))
    rows = [f'"{i + 1}",' + ",".join(f"{v:.15g}" for v in row) for i, row in enumerate(x.astype(np.float64))]
    return "\n".join([header, *rows]) + "\n"


def _text(content: Callable[[], str]) -> Callable[[Path], None]:
    return lambda path: path.write_text(content())


# name: (file name, writer, read_table keywords, expected labels or None)
EXPORTS = {
    "pandas rois-x-frames, header 0..T-1, no index": (
        "a.csv",
        lambda p: pd.DataFrame(TS).to_csv(p, index=False),
        {"num_rois": R},
        None,
    ),
    "pandas frames-x-rois, header 0..R-1, no index": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T).to_csv(p, index=False),
        {"num_rois": R},
        None,
    ),
    "pandas frames-x-rois, header and index (defaults)": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T).to_csv(p),
        {"num_rois": R},
        None,
    ),
    "pandas rois-x-frames, header and index (defaults)": (
        "a.csv",
        lambda p: pd.DataFrame(TS).to_csv(p),
        {"num_rois": R},
        None,
    ),
    "pandas frames-x-rois, index, no header": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T).to_csv(p, header=False),
        {"num_rois": R},
        None,
    ),
    "pandas rois-x-frames, no index, no header": (
        "a.csv",
        lambda p: pd.DataFrame(TS).to_csv(p, header=False, index=False),
        {"num_rois": R},
        None,
    ),
    "pandas frames-x-rois, ROI names as columns": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T, columns=NAMES).to_csv(p, index=False),
        {},
        NAMES,
    ),
    "pandas frames-x-rois, ROI names as columns, index, tsv": (
        "a.tsv",
        lambda p: pd.DataFrame(TS.T, columns=NAMES).to_csv(p, sep="\t"),
        {},
        NAMES,
    ),
    "pandas rois-x-frames, ROI names as index": (
        "a.csv",
        lambda p: pd.DataFrame(TS, index=NAMES).to_csv(p),
        {},
        NAMES,
    ),
    "pandas rois-x-frames, label_name index (the reference's UKB files), gz": (
        "a.csv.gz",
        lambda p: pd.DataFrame(TS, index=pd.Index(NAMES, name="label_name")).to_csv(p),
        {},
        NAMES,
    ),
    "pandas re-saved with its old index as 'Unnamed: 0'": (
        "a.csv",
        lambda p: (
            pd.DataFrame(TS.T, columns=NAMES)
            .reset_index()
            .rename(columns={"index": "Unnamed: 0"})
            .to_csv(p, index=False)
        ),
        {},
        NAMES,
    ),
    "pandas frames-x-rois, gz": (
        "a.csv.gz",
        lambda p: pd.DataFrame(TS.T).to_csv(p, index=False),
        {"num_rois": R},
        None,
    ),
    "numpy savetxt, spaces, rois-x-frames": ("a.txt", lambda p: np.savetxt(p, TS), {"num_rois": R}, None),
    "numpy savetxt, spaces, frames-x-rois, gz": ("a.txt.gz", lambda p: np.savetxt(p, TS.T), {"num_rois": R}, None),
    "numpy savetxt, commas, frames-x-rois": (
        "a.csv",
        lambda p: np.savetxt(p, TS.T, delimiter=","),
        {"num_rois": R},
        None,
    ),
    "numpy savetxt, tabs, rois-x-frames": (
        "a.tsv",
        lambda p: np.savetxt(p, TS, delimiter="\t"),
        {"num_rois": R},
        None,
    ),
    "numpy savetxt with a '#' header comment": (
        "a.txt",
        lambda p: np.savetxt(p, TS.T, header="exported by numpy"),
        {"num_rois": R},
        None,
    ),
    "MATLAB writematrix, rois-x-frames": ("a.csv", _text(lambda: _matlab(TS)), {"num_rois": R}, None),
    "MATLAB writematrix, frames-x-rois, txt": ("a.txt", _text(lambda: _matlab(TS.T)), {"num_rois": R}, None),
    "MATLAB writetable Var1..VarN, frames-x-rois": (
        "a.csv",
        _text(lambda: _matlab(TS.T, [f"Var{j + 1}" for j in range(R)])),
        {"num_rois": R},
        [f"Var{j + 1}" for j in range(R)],  # generated names do not orient, but they do name the ROIs
    ),
    "MATLAB writetable Var1..VarN, rois-x-frames": (
        "a.csv",
        _text(lambda: _matlab(TS, [f"Var{j + 1}" for j in range(T)])),
        {"num_rois": R},
        None,
    ),
    "R write.csv, frames-x-rois": (
        "a.csv",
        _text(lambda: _r_write_csv(TS.T)),
        {"num_rois": R},
        [f"V{j + 1}" for j in range(R)],
    ),
    "nilearn's float labels 1.0..R as pandas' header, no index": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T, columns=np.arange(1.0, R + 1)).to_csv(p, index=False),
        {"num_rois": R},
        None,
    ),
    "nilearn's float labels 1.0..R as pandas' header, with its index": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T, columns=np.arange(1.0, R + 1)).to_csv(p),
        {"num_rois": R},
        None,
    ),
    "frame times above ROI rows named in a 'roi' column": (
        "a.csv",
        lambda p: pd.DataFrame(TS, index=pd.Index(NAMES, name="roi"), columns=np.arange(T) * 0.72).to_csv(p),
        {},
        NAMES,
    ),
    "frame times in whole seconds above 'label_name' rows": (
        "a.csv",
        lambda p: pd.DataFrame(TS, index=pd.Index(NAMES, name="label_name"), columns=np.arange(T) * 2.0).to_csv(p),
        {},
        NAMES,
    ),
    "Excel's UTF-8 CSV (a byte-order mark before the first name)": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T, columns=NAMES).to_csv(p, index=False, encoding="utf-8-sig"),
        {},
        NAMES,
    ),
    "blank lines after the last row": ("a.csv", _text(lambda: _matlab(TS.T, NAMES) + "\n\n"), {}, NAMES),
    "pandas index of frame times under a blank header cell": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T, columns=NAMES, index=np.arange(T) * 0.72).to_csv(p),
        {},
        NAMES,
    ),
    "numbered ROI names in a 'label_name' column": (
        "a.csv",
        lambda p: pd.DataFrame(TS, index=pd.Index([f"ROI{i + 1}" for i in range(R)], name="label_name")).to_csv(p),
        {},
        [f"ROI{i + 1}" for i in range(R)],
    ),
    "ROI names that end in numbers with different prefixes": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T, columns=NETWORKS).to_csv(p, index=False),
        {},
        NETWORKS,
    ),
    "explicit orientation instead of --rois": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T).to_csv(p, index=False),
        {"orientation": "time-x-rois"},
        None,
    ),
}


@pytest.mark.parametrize("case", list(EXPORTS))
def test_export_round_trip(tmp_path, case):
    name, write, kwargs, labels = EXPORTS[case]
    path = tmp_path / name
    write(path)
    got, got_labels = read_table(path, **kwargs)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, TS)
    assert got_labels == labels


def _nilearn_signals() -> np.ndarray:
    """A NiftiLabelsMasker's [T, R] output on a tiny synthetic image and atlas."""
    nib = pytest.importorskip("nibabel")
    maskers = pytest.importorskip("nilearn.maskers")
    rng = np.random.default_rng(1)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    image = nib.Nifti1Image(rng.standard_normal((4, 4, 3, T)).astype(np.float32), affine)
    atlas = np.zeros((4, 4, 3), np.int16)
    atlas[:2] = 1
    atlas[2:, :2] = 2
    atlas[2:, 2:] = 3
    masker = maskers.NiftiLabelsMasker(labels_img=nib.Nifti1Image(atlas, affine), standardize=None)
    return np.asarray(masker.fit_transform(image))


@pytest.mark.parametrize(("name", "options"), [("m.csv", {}), ("m.tsv", {"sep": "\t"}), ("m.csv.gz", {})])
@pytest.mark.parametrize("index", [False, True])
def test_nilearn_masker_saved_by_pandas(tmp_path, name, options, index):
    signals = _nilearn_signals()
    names = ["Thalamus", "Caudate", "Putamen"]
    pd.DataFrame(signals, columns=names).to_csv(tmp_path / name, index=index, **options)
    got, labels = read_table(tmp_path / name)
    np.testing.assert_array_equal(got, signals.T.astype(np.float32))
    assert labels == names


WHOLE = np.arange(R * T).reshape(R, T) % 7  # integer data: a 0..N-1 first row could be data
COUNTING_FIRST = WHOLE.copy()  # whole numbers; ROI 0 counts 0..T-1 like an index
COUNTING_FIRST[0] = np.arange(T)
SIGNED_FIRST = TS.copy()  # ROI 0 holds distinct whole numbers, one of them negative
SIGNED_FIRST[0] = [-3, 8, 2, 6, 9, 1, 4, 7, 11, 5, 0, 10]
# name: (file name, writer, read_table keywords, message, keywords that settle it, array read then)
AMBIGUOUS = {
    "no names and no ROI count": (
        "a.csv",
        lambda p: pd.DataFrame(TS).to_csv(p, index=False),
        {},
        "cannot tell ROIs from frames in shape \\(5, 12\\); .*--rois.*--orientation",
        {"orientation": "rois-x-time"},
        TS,
    ),
    "square table": (
        "a.csv",
        lambda p: pd.DataFrame(TS[:, :R]).to_csv(p, index=False),
        {"num_rois": R},
        "ambiguous orientation: both axes of shape \\(5, 5\\) have 5 entries; give the orientation",
        {"orientation": "rois-x-time"},
        TS[:, :R],
    ),
    "generated names Var1..VarN": (
        "a.csv",
        _text(lambda: _matlab(TS.T, [f"Var{j + 1}" for j in range(R)])),
        {},
        "cannot tell ROIs from frames .*--orientation",
        {"orientation": "time-x-rois"},
        TS,
    ),
    "names on both axes": (
        "a.csv",
        lambda p: pd.DataFrame(TS, index=NAMES, columns=[f"scan {c}" for c in "abcdefghijkl"]).to_csv(p),
        {},
        "cannot tell ROIs from frames .*--orientation",
        {"orientation": "rois-x-time"},
        TS,
    ),
    "whole numbers under a 0..N-1 header": (
        "a.csv",
        lambda p: pd.DataFrame(WHOLE).to_csv(p, index=False),
        {"num_rois": R},
        "cannot tell whether row 1 \\(0, 1, 2, 3, 4, ...\\) is a header of column numbers, or data .*; "
        "give header=True or False \\(--header or --no-header\\)",
        {"num_rois": R, "header": True},
        WHOLE,
    ),
    "whole numbers beside a 0..n-1 index": (
        "a.csv",
        lambda p: pd.DataFrame(WHOLE).to_csv(p, header=False),
        {"num_rois": R},
        "cannot tell whether column 1 \\(0, 1, 2, 3, 4\\) is an index of row numbers, or data .*; "
        "give index_col=True or False \\(--index-col or --no-index-col\\)",
        {"num_rois": R, "index_col": True},
        WHOLE,
    ),
    "whole numbers above decimals": (
        "a.csv",
        _text(lambda: "3,8,2,6,9\n" + _matlab(TS.T)),
        {"num_rois": R},
        "cannot tell whether row 1 \\(3, 8, 2, 6, 9\\) holds whole numbers above decimals: .*"
        "give header=True or False \\(--header or --no-header\\)",
        {"num_rois": R, "header": True},
        TS,
    ),
    "whole numbers written as decimals above decimals": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T, columns=[3.0, 8.0, 2.0, 6.0, 9.0]).to_csv(p, index=False),
        {"num_rois": R},
        "cannot tell whether row 1 \\(3.0, 8.0, 2.0, 6.0, 9.0\\) holds whole numbers written as decimals above "
        "fractional data: a header of labels, or data; give header=True or False \\(--header or --no-header\\)",
        {"num_rois": R, "header": True},
        TS,
    ),
    "a 'roi' first cell above numbers that are not frame times": (
        "a.csv",
        lambda p: pd.DataFrame(TS, index=pd.Index(NAMES, name="roi"), columns=TS[0] + 7).to_csv(p),
        {},
        "cannot tell whether row 1 \\(roi, .*\\) is a header \\(its first cell names the ROI column\\), or a "
        "ROI's data; give header=True or False \\(--header or --no-header\\)",
        {"header": True},
        TS,
    ),
    "a time column": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T, columns=NAMES, index=pd.Index(np.arange(T) * 0.8, name="time")).to_csv(p),
        {},
        "cannot tell whether column 1 \\(headed 'time': 0.0, 0.8, .*\\) holds times or frame numbers, "
        "or a ROI's signal; give index_col=True or False \\(--index-col or --no-index-col\\)",
        {"index_col": True},
        TS,
    ),
    "distinct whole numbers, one negative, beside decimals": (
        "a.csv",
        _text(lambda: _matlab(SIGNED_FIRST.T)),
        {"num_rois": R},
        "cannot tell whether column 1 \\(-3, 8, 2, 6, 9, ...\\) holds whole numbers beside decimals: an index of "
        "labels, or data; give index_col=True or False \\(--index-col or --no-index-col\\)",
        {"num_rois": R, "index_col": False},
        SIGNED_FIRST,
    ),
    "whole numbers under ROI names, the first ROI counting 0..T-1": (
        "a.csv",
        lambda p: pd.DataFrame(COUNTING_FIRST.T, columns=NAMES).to_csv(p, index=False),
        {},
        "cannot tell whether column 1 \\(headed 'Thal-lh': 0, 1, 2, 3, 4, ...\\) is an index of row numbers, or "
        "data \\(all whole numbers\\); give index_col=True or False \\(--index-col or --no-index-col\\)",
        {"index_col": False},
        COUNTING_FIRST,
    ),
    "a column of times headed 'Unnamed: 0' (pandas re-saved)": (
        "a.csv",
        lambda p: pd.DataFrame(TS.T, columns=NAMES, index=np.arange(T) * 0.72).to_csv(p, index_label="Unnamed: 0"),
        {},
        "cannot tell whether column 1 \\(headed 'Unnamed: 0': 0.0, 0.72, .*\\) holds times or frame numbers",
        {"index_col": True},
        TS,
    ),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS))
def test_ambiguous_tables_are_refused_by_name(tmp_path, case):
    name, write, kwargs, message, settle, expected = AMBIGUOUS[case]
    path = tmp_path / name
    write(path)
    with pytest.raises(DataError, match=f"^{path}: {message}") as info:
        read_table(path, **kwargs)
    assert "\n" not in str(info.value)
    got, _ = read_table(path, **settle)  # the named flag settles it
    np.testing.assert_array_equal(got, expected.astype(np.float32))


# name: (file name, content, message)
BAD_TABLES = {
    "blank cell in the first data row": ("a.csv", "1.5,,2.5\n0.5,1.5,3.5\n", "row 1, column 2: empty cell$"),
    "blank cell under ROI names": ("a.csv", "A,B,C\n1.5,2.5,3.5\n1.5,,2.5\n", "row 3, column 2: empty cell$"),
    "several bad cells": (
        "a.csv",
        "A,B,C\n1.5,NA,3.5\n1.5,,n/a\n",
        "row 2, column 2: non-numeric cell 'NA' \\(and 2 more empty or non-numeric cells\\)$",
    ),
    "text in a data row": ("a.csv", "1.5,oops,2.5\n0.5,1.5,3.5\n", "row 1, column 2: non-numeric cell 'oops'$"),
    "blank header cell": ("a.csv", "A,,C\n1.5,2.5,3.5\n", "row 1, column 2: empty cell in the header$"),
    "ragged rows": ("a.csv", "1.5,2.5,3.5\n1.5,2.5\n", "ragged rows: row 1 has 3 cells but row 2 has 2$"),
    "semicolons in a csv": (
        "a.csv",
        "1,5;2,5;3,5\n0,5;1,5;2,5\n",
        "wrong separator: rows are separated by semicolons, not commas",
    ),
    "tabs in a csv": (
        "a.csv",
        "1.5\t2.5\n0.5\t1.5\n",
        "wrong separator: one column per row, but the rows contain tabs",
    ),
    "commas in a tsv": ("a.tsv", "1.5,2.5\n0.5,1.5\n", "wrong separator: one column per row, but .* commas"),
    "spaces in a csv (numpy savetxt's default)": (
        "a.csv",
        "1.5 2.5\n0.5 1.5\n",
        "wrong separator: one column per row, but the rows contain spaces; this file is read as comma-separated",
    ),
    "blank line inside": ("a.csv", "1.5,2.5\n\n0.5,1.5\n", "row 2: blank line inside the table$"),
    "header only": ("a.csv", "A,B,C\n", "empty file \\(no data rows\\)$"),
    "decimal commas in a TSV": ("a.tsv", "0,5\t0,3\n0,7\t0,1\n0,2\t0,9\n",
                                "row 2, column 2: non-numeric cell '0,1' \\(decimal commas\\? write decimals with "
                                "a point\\)"),
    "decimal commas between spaces in a .txt": ("a.txt", "0,5 0,3\n0,7 0,1\n",
                                                "row 1, column 2: non-numeric cell '5 0' \\(decimal commas\\?"),
    "spaces in a csv.gz": (
        "a.csv.gz",
        "1.5 2.5\n0.5 1.5\n",
        "wrong separator: one column per row, but the rows contain spaces; this file is read as comma-separated",
    ),
    "value beyond float32 under a header": ("a.csv", "A,B\n0.5,1.5\n1e300,0.5\n",
                                            "row 3, column 1: value 1e\\+300 is beyond the float32 range"),
}


@pytest.mark.parametrize("case", list(BAD_TABLES))
def test_bad_tables_name_the_cell_or_the_problem(tmp_path, case):
    name, content, message = BAD_TABLES[case]
    path = tmp_path / name
    path.write_bytes(gzip.compress(content.encode()) if name.endswith(".gz") else content.encode())
    with pytest.raises(DataError, match=f"^{path}: {message}"):
        read_table(path, num_rois=2)


def test_nan_written_out_is_a_value_that_validation_reports(tmp_path, capsys):
    ts = TS.astype(np.float64)
    ts[2, 7] = np.nan
    ts[4, 0] = -np.inf
    path = tmp_path / "sub-1.csv"
    pd.DataFrame(ts.T, columns=NAMES).to_csv(path, index=False, na_rep="NaN")
    got, _ = read_table(path)
    np.testing.assert_array_equal(got, ts.astype(np.float32))  # NaN compares equal here
    assert main(["validate", str(path)]) == 1
    assert f"{path}: 1 NaN and 1 Inf values in ROI 2 (Caudate), 4 (Vis_1)" in capsys.readouterr().out


def test_cli_flags_settle_a_table_and_prepare_stores_it_exactly(tmp_path, capsys):
    path = tmp_path / "in" / "sub-1.csv"
    path.parent.mkdir()
    pd.DataFrame(WHOLE).to_csv(path, index=False)  # whole numbers: a 0..N-1 header cannot be told from data
    assert main(["validate", str(path), "--rois", str(R)]) == 1
    assert "give header=True or False (--header or --no-header)" in capsys.readouterr().out
    flags = ["--rois", str(R), "--header"]
    assert main(["validate", str(path), *flags]) == 0
    assert main(["prepare", str(path), "--out", str(tmp_path / "s"), *flags, "--no-progress", "--no-stats"]) == 0
    store = RunStore(tmp_path / "s")
    np.testing.assert_array_equal(store.run(0), WHOLE.astype(np.float32))
    assert store.metadata["prepare"]["header"] is True and store.metadata["prepare"]["index_col"] is None
    # the opposite choice is taken as given: the header row becomes a sixth ROI
    assert main(["validate", str(path), "--no-header", "--orientation", "rois-x-time", "--rois", "6"]) == 0


def _first_frame(values: list[float], rois: int = R) -> np.ndarray:
    """TS's first `rois` ROIs with the first frame set to `values`."""
    x = TS[:rois].copy()
    x[:, 0] = values
    return x


def _first_roi(values: list[float]) -> np.ndarray:
    """TS with ROI 0 set to `values`."""
    x = TS.copy()
    x[0] = values
    return x


# name: (ROIs x frames, written frames-x-rois: a first frame that could pass for a header of labels or frame times,
# or a first ROI that could pass for an index; writer of the text, or None for MATLAB's)
EDGES_OF_DATA = {
    "two ROIs rising": (_first_frame([0.25, 0.5], rois=2), None),
    "equal values": (_first_frame([0.5] * R), None),
    "whole numbers with repeats above decimals": (_first_frame([3, 3, 2, 6, 9]), None),
    "whole numbers with repeats beside decimals": (_first_roi([3, 3, 2, 6, 9, 1, 4, 7, 11, 5, 0, 10]), None),
    "whole numbers written as decimals (pandas' 5.0)": (
        WHOLE.astype(np.float32),
        lambda x: pd.DataFrame(x.T.astype(np.float64)).to_csv(index=False, header=False),
    ),
}


@pytest.mark.parametrize("case", list(EDGES_OF_DATA))
def test_the_edges_of_data_are_not_taken_for_a_header_or_an_index(tmp_path, case):
    """A header or an index needs evidence (names, counting, times rising in equal steps over 3 cells or more,
    distinct whole numbers beside fractional data); a first frame or ROI without it is data, and none is lost."""
    x, write = EDGES_OF_DATA[case]
    path = tmp_path / "a.csv"
    path.write_text(write(x) if write else _matlab(x.T))
    got, labels = read_table(path, num_rois=x.shape[0])
    np.testing.assert_array_equal(got, x)
    assert labels is None


def test_an_index_column_alone_is_refused(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text("Thal-lh\nThal-rh\nCaudate\n")
    with pytest.raises(DataError, match=f"^{path}: no data columns \\(only the index column\\)$"):
        read_table(path, header=False, index_col=True)


def test_an_explicit_orientation_wins_over_the_names_in_the_file(tmp_path):
    path = tmp_path / "a.csv"
    pd.DataFrame(TS, index=NAMES).to_csv(path)  # names in column 1: rows are ROIs, unless told otherwise
    assert read_table(path)[1] == NAMES
    got, labels = read_table(path, orientation="time-x-rois")
    np.testing.assert_array_equal(got, TS.T)
    assert labels is None


def test_one_named_roi_column_is_a_roi(tmp_path):
    """A single name ending in a number (a seed's time series) names the ROI: one name is not a running count."""
    path = tmp_path / "seed.csv"
    pd.DataFrame({"PCC1": TS[0]}).to_csv(path, index=False)
    got, labels = read_table(path)
    np.testing.assert_array_equal(got, TS[:1])
    assert labels == ["PCC1"]
