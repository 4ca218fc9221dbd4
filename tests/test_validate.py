"""Validation messages, and the validate / prepare commands run in-process (exit codes, reports, joins)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from brainjepa.cli import main
from brainjepa.data.fmriprep import FmriprepOptions
from brainjepa.data.prepare import prepare_store, validate_paths
from brainjepa.data.readers import UKB_CORTICAL, UKB_SUBCORTICAL, ReadOptions, Run
from brainjepa.data.store import RunStore
from brainjepa.data.validate import Consistency, Problem, check_source, check_timeseries, raise_for_problems
from brainjepa.errors import ConfigError, DataError, DownloadError
from conftest import cli_call

RNG = np.random.default_rng(0)


def test_check_timeseries_good_run_has_no_problems():
    assert check_timeseries(RNG.standard_normal((4, 10)), source="f.csv", num_rois=4, min_frames=10) == []


@pytest.mark.parametrize(
    ("ts", "kwargs", "message"),
    [
        (np.ones((3, 4, 5)), {}, "expected a 2-D \\[ROIs, frames\\] array, got shape \\(3, 4, 5\\)"),
        (np.zeros((0, 5)), {}, "empty time series"),
        (np.array([["a", "b"]]), {}, "non-numeric data"),
        (RNG.standard_normal((3, 5)), {"num_rois": 4}, "wrong ROI count: 3 \\(expected 4\\)"),
        (RNG.standard_normal((4, 5)), {"min_frames": 6}, "too few frames: 5 \\(need at least 6\\)"),
        (
            np.where(np.arange(20).reshape(4, 5) == 7, np.nan, 1.0) + np.arange(5),
            {},
            "1 NaN and 0 Inf values in ROI 1$",
        ),
        (
            np.where(np.arange(20).reshape(4, 5) == 19, np.inf, 1.0) + np.arange(5),
            {"roi_labels": list("abcd")},
            "0 NaN and 1 Inf values in ROI 3 \\(d\\)",
        ),
        (  # labels that do not match the ROIs are not used to name them
            np.where(np.arange(20).reshape(4, 5) == 19, np.inf, 1.0) + np.arange(5),
            {"roi_labels": list("abc")},
            "0 NaN and 1 Inf values in ROI 3$",
        ),
    ],
)
def test_check_timeseries_messages(ts, kwargs, message):
    problems = check_timeseries(ts, source="sub-1.csv", **kwargs)
    assert len(problems) == 1
    assert problems[0].source == "sub-1.csv"
    assert re.search(message, problems[0].message), problems[0].message
    assert str(problems[0]).startswith("sub-1.csv: ")


def test_constant_rois_are_named_and_capped():
    ts = RNG.standard_normal((9, 6))
    ts[[0, 2, 3, 4, 5, 6, 8]] = 2.5
    (problem,) = check_timeseries(ts, source="x", roi_labels=[f"L{i}" for i in range(9)])
    assert problem.message == "constant ROI 0 (L0), 2 (L2), 3 (L3), 4 (L4), 5 (L5) and 2 more"


def _run(subject: str, run: str, rois: int = 3, labels: list[str] | None = None) -> Run:
    return Run(RNG.standard_normal((rois, 8)), subject=subject, run=run, tr=2.0, source=f"sub-{subject}_run-{run}",
               roi_labels=labels)


@pytest.mark.parametrize(("runs", "flagged"), [
    pytest.param([_run("01", "1"), _run("02", "1", rois=4), _run("03", "1")],
                 {1: r"wrong ROI count: 4 \(the first run has 3\)"}, id="a refused run's ROIs"),
    pytest.param([_run("01", "1"), _run("02", "1", rois=4), _run("02", "1")], {1: "wrong ROI count"},
                 id="a refused run's id"),
    pytest.param([_run("01", "1"), _run("01", "01")], {1: "duplicate run: subject 01, run 01 is also in sub-01_run-1"},
                 id="run-1 is run-01"),
    pytest.param([_run("01", "1", labels=list("abc")), _run("02", "1"), _run("03", "1", labels=list("abd"))],
                 {2: "ROI labels differ from the first run's"}, id="labels after a run without"),
])
def test_runs_are_checked_against_the_runs_accepted_before_them(runs: list[Run], flagged: dict[int, str]) -> None:
    """Only accepted runs set what the later ones must match: a refused run (wrong ROI count) neither changes the ROI
    count nor claims its (subject, run); a run without labels does not forget the first run's; run 1 and run 01 are
    one run."""
    across = Consistency()
    found = {i: "; ".join(p.message for p in across.check(run, run.source)) for i, run in enumerate(runs)}
    assert {i for i, message in found.items() if message} == set(flagged)
    for i, message in flagged.items():
        assert re.search(message, found[i]), found[i]


def test_every_problem_is_raised_in_one_error() -> None:
    """`raise_for_problems` names every problem in its one line, not only the first."""
    with pytest.raises(DataError, match=r"^a\.csv: too few frames; b\.csv: constant ROI 2$"):
        raise_for_problems([Problem("a.csv", "too few frames"), Problem("b.csv", "constant ROI 2")])


def _unreadable(error: Exception) -> SimpleNamespace:
    """A stand-in source whose reading fails with `error`."""
    def read(options: ReadOptions) -> Run:
        raise error

    return SimpleNamespace(label="x.csv", read=read)


def test_a_download_failure_stops_the_check_where_a_reading_error_is_the_runs_problem() -> None:
    """A named atlas that cannot be downloaded is raised by `check_source` (every run would fail alike, so validate
    and prepare stop once), not listed as a problem of each run as an unreadable file is."""
    with pytest.raises(DownloadError, match="could not download the atlas"):
        check_source(_unreadable(DownloadError("could not download the atlas")))
    assert check_source(_unreadable(DataError("x.csv: not a table"))).problems == [Problem("x.csv", "not a table")]


def _prepare(*args: object) -> int:
    return main(["prepare", *map(str, args), "--no-progress"])


def _npy(path: Path, ts: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, ts.astype(np.float32))
    return path


def _good(tmp_path: Path, n: int = 3, rois: int = 5, frames: int = 12) -> list[np.ndarray]:
    runs = [RNG.standard_normal((rois, frames + k)).astype(np.float32) for k in range(n)]
    for k, ts in enumerate(runs):
        _npy(tmp_path / "in" / f"sub-{k:02d}_run-1.npy", ts)
    return runs


def test_validate_cli_all_good(tmp_path, capsys):
    _good(tmp_path)
    assert main(["validate", str(tmp_path / "in"), "--rois", "5"]) == 0
    assert capsys.readouterr().out.strip() == "3 runs checked: all good"


def test_validate_cli_lists_every_problem(tmp_path, capsys):
    _good(tmp_path)
    bad = RNG.standard_normal((5, 12))
    bad[2, 3] = np.nan
    _npy(tmp_path / "in" / "sub-nan.npy", bad)
    _npy(tmp_path / "in" / "sub-short.npy", RNG.standard_normal((5, 4)))
    (tmp_path / "in" / "sub-empty.csv").write_text("")
    ukb = tmp_path / "in" / "ukb" / "1001"
    ukb.mkdir(parents=True)
    (ukb / UKB_CORTICAL).write_bytes(gzip.compress(b"label_name,0\nA,1.0\n"))
    assert main(["validate", str(tmp_path / "in"), "--rois", "5", "--frames", "10"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert f"{tmp_path / 'in' / 'sub-empty.csv'}: empty file" in lines
    assert f"{tmp_path / 'in' / 'sub-nan.npy'}: 1 NaN and 0 Inf values in ROI 2" in lines
    assert f"{tmp_path / 'in' / 'sub-short.npy'}: too few frames: 4 (need at least 10)" in lines
    assert f"{ukb}: cortical/subcortical mismatch: {UKB_SUBCORTICAL} is missing" in lines
    assert lines[-1] == "4 problems in 4 of 7 runs"


def test_validate_cli_cross_run_checks(tmp_path, capsys):
    _npy(tmp_path / "a" / "sub-1_run-1.npy", RNG.standard_normal((5, 8)))
    _npy(tmp_path / "b" / "sub-1_run-1.npy", RNG.standard_normal((5, 8)))
    _npy(tmp_path / "c" / "sub-2.npy", RNG.standard_normal((6, 8)))
    code = main(
        ["validate", str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c"), "--orientation", "rois-x-time"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "b/sub-1_run-1.npy: duplicate run: subject 1, run 1 is also in" in out
    assert "c/sub-2.npy: wrong ROI count: 6 (the first run has 5)" in out


def test_validate_cli_missing_input_is_usage_error(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope")]) == 2
    assert "nope: no such file or directory" in capsys.readouterr().err


def test_prepare_round_trip_with_phenotypes(tmp_path, capsys):
    runs = _good(tmp_path)
    pheno = tmp_path / "participants.tsv"
    pheno.write_text("participant_id\tage\tgroup\nsub-00\t31\tctl\nsub-01\t45\tpat\n")
    out = tmp_path / "store"
    assert _prepare(tmp_path / "in", "--out", out, "--rois", 5, "--tr", 0.72, "--phenotypes", pheno) == 0
    assert "wrote 3 runs (39 frames x 5 ROIs)" in capsys.readouterr().out
    store = RunStore(out)
    for i, ts in enumerate(runs):
        np.testing.assert_array_equal(store.run(i), ts)
        assert store.tr(i) == 0.72
    assert list(store.manifest["subject"]) == ["00", "01", "02"]
    assert store.phenotype("age")[:2].tolist() == [31, 45] and np.isnan(store.phenotype("age")[2])
    assert store.phenotype("group")[:2].tolist() == ["ctl", "pat"]
    assert store.metadata["prepare"] == {"inputs": [str(tmp_path / "in")], "atlases": [], "orientation": "auto",
                                         "header": None, "index_col": None}
    assert store.metadata["phenotypes"] == {"file": str(pheno), "columns": ["age", "group"],
                                            "joined_on": ["participant_id"], "unmatched_runs": 1}
    assert not (out / "skipped.csv").exists()
    # robust-scaling statistics are fitted at prepare time and kept with the store
    stats = store.metadata["normalization"]
    means = np.stack([ts.mean(axis=1) for ts in runs])
    np.testing.assert_allclose(stats["median"], np.median(means, axis=0), rtol=1e-5)


def test_prepare_joins_on_run_when_present(tmp_path):
    for run in (1, 2):
        _npy(tmp_path / "in" / f"sub-7_run-{run}.npy", RNG.standard_normal((3, 6)))
    pheno = tmp_path / "p.csv"
    pheno.write_text("subject,run,score\n7,1,0.1\n7,2,0.2\n")
    assert _prepare(tmp_path / "in", "--out", tmp_path / "s", "--rois", 3, "--phenotypes", pheno) == 0
    assert RunStore(tmp_path / "s").phenotype("score").tolist() == [0.1, 0.2]


def test_prepare_ukb_layout(tmp_path):
    folder = tmp_path / "ukb" / "time_series" / "1000"
    folder.mkdir(parents=True)
    sub, ctx = RNG.standard_normal((2, 9)), RNG.standard_normal((3, 9))
    for name, ts, tag in ((UKB_SUBCORTICAL, sub, "S"), (UKB_CORTICAL, ctx, "C")):
        df = pd.DataFrame(ts, index=pd.Index([f"{tag}{i}" for i in range(len(ts))], name="label_name"))
        df.to_csv(folder / name)
    assert _prepare(tmp_path / "ukb", "--out", tmp_path / "s") == 0
    store = RunStore(tmp_path / "s")
    np.testing.assert_allclose(store.run(0), np.concatenate([sub, ctx]), rtol=1e-6)
    assert store.roi_labels == ["S0", "S1", "C0", "C1", "C2"]
    assert store.manifest["subject"].tolist() == ["1000"] and store.tr(0) is None


def test_prepare_nifti_with_atlas_next_to_images(tmp_path):
    nib = pytest.importorskip("nibabel")
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    data = RNG.standard_normal((3, 3, 2, 7)).astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_zooms((3.0, 3.0, 3.0, 2.0))
    (tmp_path / "in").mkdir()
    nib.save(img, tmp_path / "in" / "sub-5_bold.nii.gz")
    atlas = np.ones((3, 3, 2), np.int16)
    atlas[0] = 2
    nib.save(nib.Nifti1Image(atlas, affine), tmp_path / "in" / "atlas.nii.gz")
    assert _prepare(tmp_path / "in", "--atlas", tmp_path / "in" / "atlas.nii.gz", "--out", tmp_path / "s") == 0
    store = RunStore(tmp_path / "s")
    assert len(store) == 1 and store.manifest["subject"].tolist() == ["5"] and store.tr(0) == 2.0
    assert store.roi_labels == ["atlas:1", "atlas:2"]
    assert store.metadata["prepare"]["atlases"] == [str(tmp_path / "in" / "atlas.nii.gz")]
    expected = np.stack([data[1:].reshape(-1, 7).mean(0), data[0].reshape(-1, 7).mean(0)])
    np.testing.assert_allclose(store.run(0), expected, rtol=1e-5, atol=1e-6)


def test_prepare_refuses_bad_run_and_writes_nothing(tmp_path, capsys):
    _good(tmp_path)
    const = RNG.standard_normal((5, 12))
    const[4] = 0.0
    _npy(tmp_path / "in" / "sub-99.npy", const)
    out = tmp_path / "store"
    assert _prepare(tmp_path / "in", "--out", out, "--rois", 5) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'in' / 'sub-99.npy'}: constant ROI 4" in err and "nothing written" in err
    assert not out.exists()


def test_prepare_skip_bad_writes_report(tmp_path, capsys):
    runs = _good(tmp_path)
    _npy(tmp_path / "in" / "sub-50.npy", np.full((5, 12), np.inf))
    _npy(tmp_path / "in" / "sub-51.npy", RNG.standard_normal((4, 12)))
    out = tmp_path / "store"
    assert _prepare(tmp_path / "in", "--out", out, "--orientation", "rois-x-time", "--skip-bad") == 0
    assert "skipped 2 bad runs" in capsys.readouterr().out
    store = RunStore(out)
    assert len(store) == 3
    np.testing.assert_array_equal(store.run(2), runs[2])
    report = pd.read_csv(out / "skipped.csv")
    assert report["source"].tolist() == [str(tmp_path / "in" / "sub-50.npy"), str(tmp_path / "in" / "sub-51.npy")]
    assert report["problem"].tolist() == [
        "0 NaN and 60 Inf values in ROI 0, 1, 2, 3, 4",
        "wrong ROI count: 4 (the first run has 5)",
    ]


def test_prepare_in_worker_processes_keeps_input_order(tmp_path):
    runs = _good(tmp_path, n=9)
    _npy(tmp_path / "in" / "sub-03_run-1.npy", np.full((5, 12), np.nan))  # replaces a good one
    assert _prepare(tmp_path / "in", "--out", tmp_path / "s", "--rois", 5, "--workers", 2, "--skip-bad") == 0
    store = RunStore(tmp_path / "s")
    assert store.manifest["subject"].tolist() == ["00", "01", "02", "04", "05", "06", "07", "08"]
    np.testing.assert_array_equal(store.run(7), runs[8])
    assert pd.read_csv(tmp_path / "s" / "skipped.csv")["source"].str.endswith("sub-03_run-1.npy").tolist() == [True]


def test_store_inside_input_folder_is_not_read(tmp_path, capsys):
    _good(tmp_path)
    assert _prepare(tmp_path / "in", "--out", tmp_path / "in" / "store", "--rois", 5) == 0
    assert main(["validate", str(tmp_path / "in"), "--rois", "5"]) == 0
    assert capsys.readouterr().out.strip().endswith("3 runs checked: all good")


def test_prepare_refuses_existing_store_before_reading(tmp_path, capsys):
    runs = _good(tmp_path)
    args = [tmp_path / "in", "--out", tmp_path / "s", "--rois", 5]
    assert _prepare(*args) == 0
    assert _prepare(*args) == 2
    assert "a store already exists" in capsys.readouterr().err
    # a refused overwrite leaves the old store intact
    assert _prepare(*args, "--overwrite", "--frames", 13) == 2
    assert json.loads((tmp_path / "s" / "store.json").read_text())["total_frames"] == 39
    np.testing.assert_array_equal(RunStore(tmp_path / "s").run(0), runs[0])
    assert _prepare(*args, "--overwrite", "--frames", 13, "--skip-bad") == 0
    assert RunStore(tmp_path / "s").total_frames == 27


def test_prepare_all_bad_is_an_error(tmp_path, capsys):
    _npy(tmp_path / "in" / "sub-1.npy", np.zeros((2, 5)))
    assert _prepare(tmp_path / "in", "--out", tmp_path / "s", "--rois", 2, "--skip-bad") == 2
    assert "no usable runs: all 1 inputs had problems" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_prepare_keeps_a_store_whose_stats_cannot_be_fitted(tmp_path, capsys, caplog):
    for run in (1, 2):  # one subject: every ROI's IQR across subjects is 0
        _npy(tmp_path / "in" / f"sub-7_run-{run}.npy", RNG.standard_normal((3, 6)))
    assert _prepare(tmp_path / "in", "--out", tmp_path / "s", "--rois", 3) == 0
    assert "robust-scaling statistics not saved: robust scaling: IQR of ROI 0" in caplog.text
    assert "saved robust-scaling" not in capsys.readouterr().out
    assert len(RunStore(tmp_path / "s")) == 2 and "normalization" not in RunStore(tmp_path / "s").metadata


def test_prepare_store_api_and_no_stats(tmp_path):
    runs = _good(tmp_path)
    prepared = prepare_store([tmp_path / "in"], tmp_path / "s", ReadOptions(num_rois=5), progress=False)
    assert prepared.skipped == [] and prepared.store.metadata["normalization"] == prepared.stats.to_dict()
    np.testing.assert_allclose(prepared.stats.median, np.median([ts.mean(axis=1) for ts in runs], axis=0), rtol=1e-5)
    assert _prepare(tmp_path / "in", "--out", tmp_path / "s", "--rois", 5, "--overwrite", "--no-stats") == 0
    assert "normalization" not in RunStore(tmp_path / "s").metadata


def test_two_frame_constant_roi_is_reported():
    """Two frames are enough to see a constant ROI (and to need a std); a run that short with a flat ROI would
    otherwise pass and then fail, or divide by zero, in z-scoring."""
    ts = RNG.standard_normal((3, 2))
    ts[1] = 4.0
    assert [p.message for p in check_timeseries(ts, source="x")] == ["constant ROI 1"]


def test_validate_cli_reports_roi_labels_that_differ_between_runs(tmp_path, capsys):
    """Runs whose ROI names differ (another atlas, or the same ROIs in another order) cannot share a store: their
    rows would be averaged and embedded as if they were the same regions."""
    names = ["thalamus", "caudate", "putamen", "amygdala"]
    for sub, header in (("1", names), ("2", names[::-1])):
        table = pd.DataFrame(RNG.standard_normal((8, 4)), columns=header)
        (tmp_path / "in").mkdir(exist_ok=True)
        table.to_csv(tmp_path / "in" / f"sub-{sub}.tsv", sep="\t", index=False)
    assert main(["validate", str(tmp_path / "in")]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'in' / 'sub-2.tsv'}: ROI labels differ from the first run's" in out


def test_overwriting_a_store_drops_its_old_skip_report(tmp_path):
    """skipped.csv describes the runs left out of this store; after an overwrite without skip_bad, a report left
    from the earlier store would list runs that are in fact in it (or no longer exist)."""
    _good(tmp_path)
    _npy(tmp_path / "in" / "sub-50.npy", np.full((5, 12), np.inf))
    out = tmp_path / "store"
    first = prepare_store([tmp_path / "in"], out, ReadOptions(num_rois=5), skip_bad=True, progress=False)
    assert len(first.skipped) == 1 and (out / "skipped.csv").is_file()
    (tmp_path / "in" / "sub-50.npy").unlink()
    again = prepare_store([tmp_path / "in"], out, ReadOptions(num_rois=5), overwrite=True, progress=False)
    assert again.skipped == [] and len(again.store) == 3
    assert not (out / "skipped.csv").exists()


def test_skip_bad_with_nothing_to_skip_writes_an_empty_report(tmp_path):
    """With skip_bad, skipped.csv always describes this store: a header and no rows when every run was good."""
    _good(tmp_path)
    prepared = prepare_store([tmp_path / "in"], tmp_path / "s", ReadOptions(num_rois=5), skip_bad=True,
                             progress=False, stats=False)
    assert prepared.skipped == [] and len(prepared.store) == 3
    report = pd.read_csv(tmp_path / "s" / "skipped.csv")
    assert report.columns.tolist() == ["source", "problem"] and report.empty


@pytest.mark.parametrize(("options", "flag", "named"), [
    ({"orientation": "rois-x-time"}, "orientation", "--orientation"), ({"header": False}, "header", "--no-header"),
    ({"index_col": True}, "index_col", "--index-col")])
def test_table_settings_are_refused_with_fmriprep_derivatives(tmp_path, options, flag, named):
    """Each table setting is refused by name with fMRIPrep derivatives (images), before anything is searched."""
    message = f"{named}: only for tables and arrays.*remove it \\(Python: ReadOptions {flag}\\)"
    with pytest.raises(ConfigError, match=message):
        validate_paths([tmp_path / "nothing here"], ReadOptions(**options), fmriprep=FmriprepOptions())


@pytest.mark.parametrize(("flags", "named", "python"), [
    (["--index-col"], "--index-col", "index_col"), (["--no-index-col"], "--no-index-col", "index_col"),
    (["--no-header", "--orientation", "time-x-rois"], "--orientation, --no-header", "orientation, header")])
def test_the_cli_names_the_table_flag_given_and_keeps_the_python_spelling(tmp_path, capsys, flags, named, python):
    """Under the CLI the refusal names the flag the user typed (--no-index-col too), and its "(Python: ...)" hint
    keeps the ReadOptions names: it is not rewritten into flags like the rest of a library message."""
    assert main(["validate", str(tmp_path), "--fmriprep", *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"brainjepa validate: error: {named}: only for tables and arrays")
    assert err.endswith(f"(Python: ReadOptions {python})\n")


def test_every_validate_flag_reaches_validate_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each input flag reaches `validate_paths` as the option it documents, and the defaults are the documented
    ones (a lost --workers or --index-col would read the runs another way without a word)."""
    target = "brainjepa.cli.validate.validate_paths"
    assert cli_call(monkeypatch, target, ["validate", "a.csv"]) == {
        "inputs": ["a.csv"], "options": ReadOptions(), "min_frames": 1, "workers": 1, "fmriprep": None}
    seen = cli_call(monkeypatch, target, ["validate", "a.csv", "b", "--rois", "7", "--frames", "30", "--orientation",
                                          "time-x-rois", "--header", "--no-index-col", "--atlas", "tian.nii.gz",
                                          "--atlas", "schaefer.nii.gz", "--tr", "0.8", "--workers", "3"])
    assert seen == {"inputs": ["a.csv", "b"], "min_frames": 30, "workers": 3, "fmriprep": None,
                    "options": ReadOptions(num_rois=7, orientation="time-x-rois", header=True, index_col=False,
                                           atlases=("tian.nii.gz", "schaefer.nii.gz"), tr=0.8)}
    seen = cli_call(monkeypatch, target, ["validate", "a.csv", "--tr", "45", "--allow-unusual-tr", "--no-header",
                                          "--index-col"])
    assert seen["options"] == ReadOptions(header=False, index_col=True, tr=45.0, allow_unusual_tr=True)


def test_every_fmriprep_flag_reaches_validate_paths(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The --fmriprep group's flags reach `validate_paths` as one FmriprepOptions (prepare shares the code)."""
    target = "brainjepa.cli.validate.validate_paths"
    seen = cli_call(monkeypatch, target, ["validate", "deriv", "--fmriprep", "--task", "rest", "--space", "fsLR",
                                          "--session", "2", "--confounds", "scrubbing", "--high-pass", "0.01",
                                          "--detrend", "--atlas", "a.dlabel.nii"])
    assert seen["fmriprep"] == FmriprepOptions(confounds="scrubbing", high_pass=0.01, detrend=True, task="rest",
                                               space="fsLR", session="2")
    assert cli_call(monkeypatch, target, ["validate", "deriv", "--fmriprep", "--no-detrend"])["fmriprep"] == (
        FmriprepOptions())
    # a given value is checked even where it is falsy, and a group flag needs --fmriprep
    assert main(["validate", "deriv", "--fmriprep", "--high-pass", "0"]) == 2
    assert "--high-pass must be a positive frequency in Hz, got 0.0" in capsys.readouterr().err
    assert main(["validate", "deriv", "--session", "2"]) == 2
    assert capsys.readouterr().err == ("brainjepa validate: error: --session: only for fMRIPrep derivatives; add "
                                       "--fmriprep\n")


def test_every_prepare_flag_reaches_prepare_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """prepare's own flags and the shared input flags reach `prepare_store`; the defaults are the documented ones."""
    target = "brainjepa.cli.prepare.prepare_store"
    assert cli_call(monkeypatch, target, ["prepare", "in", "--out", "s", "--no-progress"]) == {
        "inputs": ["in"], "out": "s", "options": ReadOptions(), "min_frames": 1, "workers": 1, "fmriprep": None,
        "phenotypes": None, "subject_column": None, "skip_bad": False, "overwrite": False, "stats": True,
        "progress": False}
    seen = cli_call(monkeypatch, target, ["prepare", "in", "more", "--out", "s", "--rois", "5", "--frames", "20",
                                          "--tr", "2", "--orientation", "rois-x-time", "--phenotypes", "p.csv",
                                          "--subject-column", "eid", "--skip-bad", "--overwrite", "--no-stats",
                                          "--workers", "2", "--progress"])
    assert seen == {"inputs": ["in", "more"], "out": "s", "min_frames": 20, "workers": 2, "fmriprep": None,
                    "options": ReadOptions(num_rois=5, orientation="rois-x-time", tr=2.0), "phenotypes": "p.csv",
                    "subject_column": "eid", "skip_bad": True, "overwrite": True, "stats": False, "progress": True}


def test_problems_are_counted_by_run(tmp_path, capsys):
    """A run with two problems is one bad run, in validate's summary and in prepare's skip report."""
    _good(tmp_path)
    short = RNG.standard_normal((5, 4))
    short[1, 2] = np.nan
    _npy(tmp_path / "in" / "sub-50.npy", short)
    assert main(["validate", str(tmp_path / "in"), "--rois", "5", "--frames", "10"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert sum(line.startswith(str(tmp_path / "in" / "sub-50.npy")) for line in lines) == 2
    assert lines[-1] == "2 problems in 1 of 4 runs"
    assert _prepare(tmp_path / "in", "--out", tmp_path / "s", "--rois", 5, "--frames", 10, "--skip-bad") == 0
    assert "skipped 1 bad runs" in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "s" / "skipped.csv")) == 2
