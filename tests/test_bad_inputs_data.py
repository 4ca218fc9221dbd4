"""Every unreadable input file is one line in `validate` and `prepare`, and `prepare --skip-bad` skips it.

Each case puts one bad file next to a good run and runs the CLI in-process: `validate` lists exactly one problem
line naming the file (exit 1); `prepare` exits 2 with one line on stderr naming it and writes nothing;
`prepare --skip-bad` stores the good run and lists the bad file once in skipped.csv. No input file is modified.
"""

from __future__ import annotations

import gzip
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainjepa.cli import main
from brainjepa.data.store import RunStore

RNG = np.random.default_rng(0)
GOOD = RNG.standard_normal((4, 10)).astype(np.float32)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _truncated(save: Callable[[Path], None]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return write


def _directory(path: Path) -> None:
    path.mkdir()


def _unreadable(path: Path) -> None:
    np.save(path, GOOD)
    path.chmod(0)


def _npz(**arrays: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as fh:  # np.savez would add ".npz" to a name without it
            np.savez(fh, **arrays)

    return write


def _object_npy(path: Path) -> None:
    with open(path, "wb") as fh:
        np.save(fh, np.array([[1.0, None]], dtype=object), allow_pickle=True)


def _xlsx(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")


def _truncated_nifti(path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    nib.save(nib.Nifti1Image(RNG.standard_normal((4, 4, 3, 10)).astype(np.float32), np.eye(4)), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _csv(text: str) -> bytes:
    return text.encode()


# name: (file name, writer, message)
CASES = {
    "truncated .npy": ("bad.npy", _truncated(lambda p: np.save(p, GOOD)), "corrupt or truncated numpy file"),
    "truncated .npz": ("bad.npz", _truncated(_npz(ts=GOOD)), "corrupt or truncated numpy file"),
    "zero-byte .npy": ("bad.npy", _bytes(b""), "empty file"),
    "zero-byte .npz": ("bad.npz", _bytes(b""), "empty file"),
    "zero-byte .csv": ("bad.csv", _bytes(b""), "empty file"),
    "zero-byte .csv.gz": ("bad.csv.gz", _bytes(b""), "empty file"),
    "binary garbage named .csv": ("bad.csv", _bytes(bytes(range(256)) * 4), "binary data, not a text table"),
    "binary garbage named .npy": ("bad.npy", _bytes(os.urandom(64)), "not a numpy file"),
    "a pickle named .npy": ("bad.npy", _bytes(pickle.dumps({"ts": [1, 2]})), "not a numpy file"),
    "an Excel workbook named .csv": ("bad.csv", _xlsx, "a zip archive \\(an Excel workbook\\?\\), not a text table"),
    "a directory named x.csv": ("bad.csv", _directory, "is a directory, not a file"),
    "a directory named x.npy": ("bad.npy", _directory, "is a directory, not a file"),
    "unreadable permissions": ("bad.npy", _unreadable, "cannot read the file \\(Permission denied\\)"),
    "not gzip but named .gz": ("bad.csv.gz", _bytes(b"1,2\n3,4\n"), "not a gzip file"),
    "bad gzip stream": ("bad.csv.gz", _bytes(b"\x1f\x8b" + bytes(40)), "corrupt or truncated gzip file"),
    "truncated gzip": (
        "bad.tsv.gz",
        _bytes(gzip.compress(b"1.5\t2.5\n" * 200)[:-12]),
        "corrupt or truncated gzip file",
    ),
    "latin-1 text": ("bad.csv", _bytes("label_name,0,1\nThal\xe9,1.5,2.5\n".encode("latin-1")), "not UTF-8 text"),
    "UTF-16 text": ("bad.csv", _bytes("1.5,2.5\n0.5,1.5\n".encode("utf-16")), "UTF-16 text"),
    "UTF-16 big-endian text": ("bad.csv", _bytes(b"\xfe\xff" + "1.5,2.5\n0.5,1.5\n".encode("utf-16-be")),
                               "UTF-16 text"),
    "strings in .npy": ("bad.npy", lambda p: np.save(p, np.array([["a", "b"], ["c", "d"]])), "non-numeric array"),
    "object array in .npy": ("bad.npy", _object_npy, "holds Python objects \\(dtype object\\), which are never"),
    "object array in .npz": (
        "bad.npz",
        _npz(ts=np.array([[1.0, None]], dtype=object)),
        "holds Python objects",
    ),
    "complex .npy": ("bad.npy", lambda p: np.save(p, GOOD.astype(np.complex64)), "non-numeric array"),
    "boolean .npy": ("bad.npy", lambda p: np.save(p, GOOD > 0), "non-numeric array"),
    ".npz with a text tr": ("bad.npz", _npz(ts=GOOD, tr=np.array("fast")), "'tr' must be one number"),
    ".npz with a negative tr": ("bad.npz", _npz(ts=GOOD, tr=np.float64(-1)), "'tr' must be a positive number"),
    ".npz without a 2-D array": ("bad.npz", _npz(ts=GOOD.ravel()), "expected exactly one 2-D array"),
    "3-D .npy": ("bad.npy", lambda p: np.save(p, GOOD[None]), "expected a 2-D array"),
    "table with an empty cell": ("bad.csv", _bytes(_csv("1.5,,2.5,3.5\n" * 10)), "row 1, column 2: empty cell"),
    "ragged table": ("bad.csv", _bytes(_csv("1.5,2.5,3.5,4.5\n1.5,2.5\n")), "ragged rows"),
    "semicolon table": ("bad.csv", _bytes(_csv("1,5;2,5;3,5;4,5\n" * 10)), "wrong separator"),
    "truncated NIfTI": ("bad.nii.gz", _truncated_nifti, "corrupt or truncated image"),
    # issue 19: said as what they are
    ".npz of no arrays": ("bad.npz", _npz(), "empty .npz archive \\(it holds no arrays\\)"),
    "value beyond float32 in a table": ("bad.csv", _bytes(_csv("1.5,2.5,3.5,4.5\n1e300,3.5,0.5,1.5\n" * 5)),
                                        "row 2, column 1: value 1e\\+300 is beyond the float32 range"),
    "value beyond float32 in a .npy": ("bad.npy", lambda p: np.save(p, np.full((4, 10), 1e300)),
                                       "element \\[0, 0\\]: value 1e\\+300 is beyond the float32 range"),
    "broken symbolic link": ("bad.npy", lambda p: p.symlink_to(p.parent / "gone.npy"),
                             "broken symbolic link \\(its target .*gone.npy does not exist\\)"),
    "broken link to a subject folder": ("sub-09", lambda p: p.symlink_to(p.parent / "gone"),
                                        "broken symbolic link"),
}


def _snapshot(folder: Path) -> dict[Path, tuple[int, int, bytes | None]]:
    return {
        p: (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes() if os.access(p, os.R_OK) else None)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(params=list(CASES))
def bad_input(request, tmp_path) -> tuple[Path, Path, str, list[str]]:
    """(input folder with one good run and one bad file, the bad file, its message, extra CLI arguments)."""
    name, write, message = CASES[request.param]
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "sub-good.npy", GOOD)
    bad = folder / name
    write(bad)
    if request.param == "unreadable permissions" and os.access(bad, os.R_OK):
        pytest.skip("file permissions do not stop this user (root) from reading")
    extra = ["--rois", str(GOOD.shape[0])]
    if name.endswith(".nii.gz"):
        nib = pytest.importorskip("nibabel")
        atlas = np.ones((4, 4, 3), np.int16)
        atlas[:2] = 2
        nib.save(nib.Nifti1Image(atlas, np.eye(4)), tmp_path / "atlas.nii.gz")
        extra += ["--atlas", str(tmp_path / "atlas.nii.gz")]
    return folder, bad, message, extra


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_validate_prints_one_line(bad_input, capsys):
    folder, bad, message, extra = bad_input
    before = _snapshot(folder)
    assert main(["validate", str(folder), *extra]) == 1
    out, err = capsys.readouterr()
    problems = _lines(out)[:-1]
    assert len(problems) == 1, out
    assert problems[0].startswith(f"{bad}: ")
    assert re.search(message, problems[0]), problems[0]
    assert _lines(out)[-1] == "1 problem in 1 of 2 runs"
    assert "Traceback" not in err
    assert _snapshot(folder) == before


def test_prepare_stops_with_one_line(bad_input, tmp_path, capsys):
    folder, bad, _, extra = bad_input
    before = _snapshot(folder)
    out = tmp_path / "store"
    assert main(["prepare", str(folder), "--out", str(out), *extra, "--no-progress"]) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and str(bad) in err[0] and "nothing written" in err[0], err
    assert not out.exists()
    assert _snapshot(folder) == before


def test_prepare_skip_bad_skips_it(bad_input, tmp_path):
    folder, bad, message, extra = bad_input
    before = _snapshot(folder)
    out = tmp_path / "store"
    assert main(["prepare", str(folder), "--out", str(out), *extra, "--skip-bad", "--no-progress", "--no-stats"]) == 0
    store = RunStore(out)
    assert len(store) == 1
    np.testing.assert_array_equal(store.run(0), GOOD)
    report = pd.read_csv(out / "skipped.csv")
    assert report["source"].tolist() == [str(bad)]
    assert re.search(message, report["problem"].iat[0])
    assert _snapshot(folder) == before
