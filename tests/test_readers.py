"""Readers: tables (both orientations, labels, gzip), numpy, the UKB pair layout, NIfTI, ids and discovery."""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest

from brainjepa.data.readers import (
    UKB_CORTICAL,
    UKB_SUBCORTICAL,
    ReadOptions,
    check_tr,
    find_sources,
    parse_ids,
    read_phenotypes,
    read_source,
    read_ukb_pair,
)
from brainjepa.data.tables import orient, read_numpy, read_table
from brainjepa.errors import DataError

RNG = np.random.default_rng(0)


def _labelled_csv(path: Path, ts: np.ndarray, labels: list[str], sep: str = ",") -> None:
    """ROIs as rows, column 0 = label_name, header of frame numbers (the reference's UKB layout)."""
    lines = [sep.join(["label_name"] + [str(t) for t in range(ts.shape[1])])]
    lines += [sep.join([name] + [repr(float(v)) for v in row]) for name, row in zip(labels, ts, strict=True)]
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def test_table_with_label_column_tsv_gz(tmp_path):
    ts = RNG.standard_normal((5, 12)).astype(np.float32)
    path = tmp_path / "sub-01_run-2.tsv.gz"
    _labelled_csv(path, ts, [f"R{i}" for i in range(5)], sep="\t")
    got, labels = read_table(path)
    np.testing.assert_array_equal(got, ts)
    assert labels == ["R0", "R1", "R2", "R3", "R4"]


def test_table_label_column_without_header(tmp_path):
    ts = RNG.standard_normal((3, 7)).astype(np.float32)
    path = tmp_path / "a.csv"
    names = ["Thal-lh", "Thal-rh", "Vis_1"]
    rows = zip(names, ts, strict=True)
    path.write_text("".join(f"{n}," + ",".join(repr(float(v)) for v in row) + "\n" for n, row in rows))
    got, labels = read_table(path)
    np.testing.assert_array_equal(got, ts)
    assert labels == names


def test_numbered_names_do_not_orient(tmp_path):
    # roi0..roi2 could as well be t0..t2: generated names say nothing about which axis holds the ROIs
    ts = RNG.standard_normal((3, 7)).astype(np.float32)
    path = tmp_path / "a.csv"
    path.write_text("".join(f"roi{i}," + ",".join(repr(float(v)) for v in row) + "\n" for i, row in enumerate(ts)))
    with pytest.raises(DataError, match="a.csv: cannot tell ROIs from frames in shape \\(3, 7\\)"):
        read_table(path)
    got, labels = read_table(path, num_rois=3)
    np.testing.assert_array_equal(got, ts)
    assert labels == ["roi0", "roi1", "roi2"]


def test_table_header_of_roi_names_is_time_by_roi(tmp_path):
    ts = RNG.standard_normal((4, 9)).astype(np.float32)
    path = tmp_path / "a.csv"
    path.write_text("A,B,C,D\n" + "".join(",".join(repr(float(v)) for v in row) + "\n" for row in ts.T))
    got, labels = read_table(path)
    np.testing.assert_array_equal(got, ts)
    assert labels == list("ABCD")


def test_pandas_export_with_index_column(tmp_path):
    pd = pytest.importorskip("pandas")
    ts = RNG.standard_normal((3, 8)).astype(np.float32)
    pd.DataFrame(ts.T, columns=["x", "y", "z"]).to_csv(tmp_path / "a.csv")  # header ",x,y,z", index 0..7
    got, labels = read_table(tmp_path / "a.csv")
    np.testing.assert_array_equal(got, ts)
    assert labels == ["x", "y", "z"]


@pytest.mark.parametrize("transpose", [False, True])
def test_plain_table_oriented_by_roi_count(tmp_path, transpose):
    ts = RNG.standard_normal((6, 11)).astype(np.float32)
    path = tmp_path / "a.csv"
    np.savetxt(path, ts.T if transpose else ts, delimiter=",")
    got, labels = read_table(path, num_rois=6)
    np.testing.assert_allclose(got, ts, rtol=1e-6)
    assert labels is None
    got, _ = read_table(path, orientation="time-x-rois" if transpose else "rois-x-time")
    np.testing.assert_allclose(got, ts, rtol=1e-6)


def test_whitespace_txt(tmp_path):
    ts = RNG.standard_normal((3, 8)).astype(np.float32)
    path = tmp_path / "x.txt"
    np.savetxt(path, ts.T)
    np.testing.assert_allclose(read_table(path, num_rois=3)[0], ts, rtol=1e-6)


def test_orientation_errors():
    values = np.zeros((4, 6), np.float32)
    with pytest.raises(DataError, match="src: cannot tell ROIs from frames in shape \\(4, 6\\)"):
        orient(values, source="src")
    with pytest.raises(DataError, match="src: wrong ROI count: shape \\(4, 6\\) has no axis of 5 ROIs"):
        orient(values, source="src", num_rois=5)
    with pytest.raises(DataError, match="src: ambiguous orientation"):
        orient(np.zeros((4, 4)), source="src", num_rois=4)
    assert orient(values, source="src", num_rois=6).shape == (6, 4)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"label_name,0,1\n", "empty file \\(no data rows\\)"),
        (b"r0,1,2\nr1,3,oops\n", "row 2, column 3: non-numeric cell 'oops'"),
    ],
)
def test_bad_tables(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"bad.csv: {message}"):
        read_table(path, num_rois=2)


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="bad.csv.gz: not a gzip file"):
        read_table(path)


def test_numpy_files(tmp_path):
    ts = RNG.standard_normal((5, 9)).astype(np.float32)
    np.save(tmp_path / "a.npy", ts.T)
    got, tr = read_numpy(tmp_path / "a.npy", num_rois=5)
    np.testing.assert_array_equal(got, ts)
    assert tr is None
    np.savez(tmp_path / "b.npz", ts=ts, tr=np.float64(0.72))
    got, tr = read_numpy(tmp_path / "b.npz", orientation="rois-x-time")
    np.testing.assert_array_equal(got, ts)
    assert tr == pytest.approx(0.72)
    np.savez(tmp_path / "c.npz", a=ts, b=ts)
    with pytest.raises(DataError, match="c.npz: expected exactly one 2-D array"):
        read_numpy(tmp_path / "c.npz", num_rois=5)
    (tmp_path / "d.npy").write_bytes(b"garbage")
    with pytest.raises(DataError, match="d.npy: not a numpy file"):
        read_numpy(tmp_path / "d.npy")


def _ukb_subject(root: Path, sid: str, frames=(20, 20), n_sub=3, n_ctx=5) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "time_series" / sid
    folder.mkdir(parents=True)
    sub = RNG.standard_normal((n_sub, frames[0])).astype(np.float32)
    ctx = RNG.standard_normal((n_ctx, frames[1])).astype(np.float32)
    _labelled_csv(folder / UKB_SUBCORTICAL, sub, [f"S{i}" for i in range(n_sub)])
    _labelled_csv(folder / UKB_CORTICAL, ctx, [f"C{i}" for i in range(n_ctx)])
    return sub, ctx


def test_ukb_pair_subcortical_first(tmp_path):
    sub, ctx = _ukb_subject(tmp_path, "1000123")
    ts, labels = read_ukb_pair(tmp_path / "time_series" / "1000123")
    np.testing.assert_array_equal(ts, np.concatenate([sub, ctx]))
    assert labels == ["S0", "S1", "S2", "C0", "C1", "C2", "C3", "C4"]
    sources = find_sources([tmp_path])
    assert [(s.kind, s.subject) for s in sources] == [("ukb", "1000123")]
    run = read_source(sources[0], ReadOptions(tr=0.735))
    assert run.subject == "1000123" and run.tr == 0.735 and run.ts.shape == (8, 20)


def test_ukb_pair_mismatches(tmp_path):
    _ukb_subject(tmp_path, "1", frames=(20, 19))
    mismatch = "1: cortical/subcortical mismatch: .*Tian.* has 20 frames, .*Schaefer.* has 19"
    with pytest.raises(DataError, match=mismatch):
        read_ukb_pair(tmp_path / "time_series" / "1")
    _ukb_subject(tmp_path, "2")
    (tmp_path / "time_series" / "2" / UKB_SUBCORTICAL).unlink()
    with pytest.raises(DataError, match=f"2: cortical/subcortical mismatch: {UKB_SUBCORTICAL} is missing"):
        read_ukb_pair(tmp_path / "time_series" / "2")
    # the lone cortical file is still found, as a UKB subject with a missing partner
    assert [s.subject for s in find_sources([tmp_path])] == ["1", "2"]


@pytest.mark.parametrize(
    ("name", "subject", "run"),
    [
        ("sub-07_task-rest_run-02_bold.tsv", "07", "02"),
        ("sub-07_ses-b_task-rest_bold.npy", "07", "b_1"),
        ("sub-07.csv.gz", "07", "1"),
        ("subject12.csv", "subject12", "1"),
    ],
)
def test_parse_ids_from_names(name, subject, run):
    assert parse_ids(Path("/data") / name) == (subject, run)


def test_folder_per_subject_and_globs(tmp_path):
    for sid in ("sub-A", "B"):
        (tmp_path / sid).mkdir()
        for run in ("rest1", "rest2"):
            np.save(tmp_path / sid / f"{run}.npy", RNG.standard_normal((4, 6)))
    (tmp_path / "B" / "notes.json").write_text("{}")
    sources = find_sources([tmp_path])
    assert [(s.subject, s.run) for s in sources] == [("B", "rest1"), ("B", "rest2"), ("A", "rest1"), ("A", "rest2")]
    globbed = find_sources([str(tmp_path / "*" / "rest2.npy")])  # folders below the pattern's root are subjects
    assert [(s.subject, s.run) for s in globbed] == [("B", "rest2"), ("A", "rest2")]
    with pytest.raises(DataError, match="nothing.npy: no such file or directory"):
        find_sources([tmp_path / "nothing.npy"])
    with pytest.raises(DataError, match="notes.json: unsupported file type"):
        find_sources([tmp_path / "B" / "notes.json"])


def _nifti(tmp_path: Path, tr_units: str = "sec"):
    nib = pytest.importorskip("nibabel")
    data = RNG.standard_normal((4, 4, 3, 10)).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", tr_units)
    img.header.set_zooms((2.0, 2.0, 2.0, 800.0 if tr_units == "msec" else 0.8))
    img_path = tmp_path / "sub-09_task-rest_run-1_bold.nii.gz"
    nib.save(img, img_path)
    cortex = np.zeros((4, 4, 3), np.int16)
    cortex[:2, :, :] = 5
    cortex[2:, :2, :] = 2
    subcortex = np.zeros((4, 4, 3), np.int16)
    subcortex[2:, 2:, 0] = 1
    paths = []
    for name, atlas in (("subcortex", subcortex), ("cortex", cortex)):
        paths.append(tmp_path / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(atlas, affine), paths[-1])
    return data, img_path, paths, cortex, subcortex


@pytest.mark.parametrize("units", ["sec", "msec"])
def test_nifti_roi_means_and_tr(tmp_path, units):
    data, img_path, atlases, cortex, subcortex = _nifti(tmp_path, units)
    sources = find_sources([tmp_path], skip=atlases)  # atlases next to the image are not runs
    assert [(s.kind, s.subject, s.run) for s in sources] == [("nifti", "09", "1")]
    run = read_source(sources[0], ReadOptions(atlases=atlases))
    expected = [data[subcortex == 1].mean(0), data[cortex == 2].mean(0), data[cortex == 5].mean(0)]
    np.testing.assert_allclose(run.ts, np.stack(expected), rtol=1e-5, atol=1e-6)
    assert run.tr == pytest.approx(0.8)
    assert run.roi_labels == ["subcortex:1", "cortex:2", "cortex:5"]


@pytest.mark.filterwarnings("ignore:After resampling the label image")
def test_nifti_errors(tmp_path):
    nib = pytest.importorskip("nibabel")
    _, img_path, atlases, _, _ = _nifti(tmp_path)
    source = find_sources([img_path])[0]
    with pytest.raises(DataError, match="bold.nii.gz: NIfTI input needs at least one label atlas"):
        read_source(source)
    with pytest.raises(DataError, match="subcortex.nii.gz: expected a 4-D image"):
        read_source(find_sources([atlases[0]])[0], ReadOptions(atlases=atlases))
    fine = np.zeros((8, 8, 6), np.int16)  # 1 mm atlas: label 3 lies between the image's 2 mm voxel centres
    fine[4:] = 4
    fine[1, 1, 1] = 3
    nib.save(nib.Nifti1Image(fine, np.eye(4)), tmp_path / "fine.nii.gz")
    with warnings.catch_warnings(record=True) as caught:  # our one line, not nilearn's warning before it
        warnings.simplefilter("always")
        with pytest.raises(DataError, match="bold.nii.gz: atlas fine.nii.gz labels \\[3.0\\] have no voxels"):
            read_source(source, ReadOptions(atlases=[tmp_path / "fine.nii.gz"]))
    assert not [w for w in caught if "labels were removed" in str(w.message)]
    prob = np.zeros((4, 4, 3), np.float32)  # a probabilistic map: fractional values, not labels
    prob[:2] = 0.5
    prob[2:] = 2.5
    nib.save(nib.Nifti1Image(prob, np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "prob.nii.gz")
    with pytest.raises(DataError, match="prob.nii.gz: label image has non-integer values"):
        read_source(source, ReadOptions(atlases=[tmp_path / "prob.nii.gz"]))


def test_phenotypes(tmp_path):
    path = tmp_path / "participants.tsv"
    path.write_text("participant_id\tage\tsex\nsub-01\t30\tF\nsub-002\t41\tM\n")
    table = read_phenotypes(path)
    assert table.columns == ["age", "sex"] and not table.by_run
    assert table.lookup("01", "1") == {"age": 30, "sex": "F"}
    assert table.lookup("3", "1") is None
    runs = tmp_path / "runs.csv"
    runs.write_text("eid,run,score\n7,1,0.5\n7,2,0.7\n")
    assert read_phenotypes(runs).lookup("7", "2") == {"score": 0.7}
    dup = tmp_path / "dup.csv"
    dup.write_text("subject,age\n1,2\n1,3\n")
    with pytest.raises(DataError, match="dup.csv: duplicate rows for 1"):
        read_phenotypes(dup)
    none = tmp_path / "none.csv"
    none.write_text("name,age\n1,2\n")
    with pytest.raises(DataError, match="none.csv: no subject column"):
        read_phenotypes(none)
    with pytest.raises(DataError, match="none.csv: no subject column 'who'"):
        read_phenotypes(none, subject_column="who")


def test_npz_tr_reaches_the_run_unless_a_tr_is_given(tmp_path):
    """The TR stored in an .npz is the run's TR (TR-aware windows and the store read it); dropped on the way from
    the file to the run, every such run would be stored without a TR."""
    ts = RNG.standard_normal((4, 9)).astype(np.float32)
    np.savez(tmp_path / "sub-01.npz", ts=ts, tr=np.float64(0.72))
    (source,) = find_sources([tmp_path / "sub-01.npz"])
    run = read_source(source, ReadOptions(orientation="rois-x-time"))
    assert run.tr == pytest.approx(0.72)
    np.testing.assert_array_equal(run.ts, ts)
    assert read_source(source, ReadOptions(orientation="rois-x-time", tr=2.0)).tr == 2.0


@pytest.mark.parametrize(
    ("path", "subject", "run"),
    [
        ("A/rest1.tsv.gz", "A", "rest1"),  # the whole double suffix is dropped from the run
        ("sub-/rest.npy", "sub-", "rest"),  # a bare "sub-" folder keeps its name (no empty subject id)
        ("sub-B/task-rest_run-3.npy", "B", "3"),
    ],
)
def test_parse_ids_from_subject_folders(path, subject, run):
    assert parse_ids(Path("/data") / path, Path("/data")) == (subject, run)


@pytest.mark.parametrize(
    ("name", "subject", "run"),
    [
        ("patient07_run-2.csv", "patient07", "2"),  # run-1 and run-2 of one person are one subject, not two
        ("01_task-rest_run-02_bold.npy", "01_task-rest_bold", "02"),
        ("p07_ses-b_run-1.npy", "p07", "b_1"),
        ("ses-1_run-1.npy", "ses-1_run-1", "1_1"),  # nothing left but the entities: the stem names the subject
    ],
)
def test_a_lone_file_with_a_run_entity_but_no_subject_keeps_the_run_out_of_the_subject(name, subject, run):
    """Without ``sub-`` or a subject folder the stem names the subject, less the ``ses-``/``run-`` entities that
    name the run: otherwise each run of a person would be a subject of its own, on both sides of a subject split."""
    assert parse_ids(Path("/data") / name) == (subject, run)


def test_lone_gzipped_table_is_named_by_its_stem():
    assert parse_ids(Path("/data/subject12.csv.gz")) == ("subject12", "1")
    assert parse_ids(Path("/data/rest.nii.gz")) == ("rest", "1")


def test_skipped_atlases_match_however_the_paths_are_written(tmp_path, monkeypatch):
    """`--atlas in/atlas.nii.gz` beside the images is not a run, whether the input folder or the atlas is given as
    a relative or an absolute path, or through a symbolic link to the folder."""
    (tmp_path / "in").mkdir()
    np.save(tmp_path / "in" / "sub-1.npy", RNG.standard_normal((4, 6)))
    (tmp_path / "in" / "atlas.nii.gz").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    for inputs, skip in (("in", tmp_path / "in" / "atlas.nii.gz"), (tmp_path / "in", "in/atlas.nii.gz"),
                         (tmp_path / "link", tmp_path / "in" / "atlas.nii.gz")):
        assert [s.path.name for s in find_sources([inputs], skip=[skip])] == ["sub-1.npy"], (inputs, skip)


def test_fmriprep_grayordinates_in_a_plain_folder_are_refused(tmp_path):
    (tmp_path / "sub-01" / "func").mkdir(parents=True)
    (tmp_path / "sub-01" / "func" / "sub-01_task-rest_space-fsLR_den-91k_bold.dtseries.nii").write_bytes(b"")
    with pytest.raises(DataError, match="holds fMRIPrep derivatives \\(sub-01_task-rest_.*dtseries.nii, ...\\)"):
        find_sources([tmp_path])


def test_broken_link_given_by_name_is_a_run_that_names_its_target(tmp_path):
    link = tmp_path / "rest.npy"
    link.symlink_to(tmp_path / "gone.npy")
    (source,) = find_sources([link])
    assert (source.kind, source.subject, source.run) == ("broken", "rest", "1")
    with pytest.raises(DataError, match="rest.npy: broken symbolic link \\(its target .*gone.npy does not exist\\)"):
        read_source(source)


@pytest.mark.parametrize("tr", [0.05, 0.72, 30.0])
def test_scanner_trs_at_the_ends_of_the_range_are_accepted(tr):
    assert check_tr(tr, "x.npz") == tr


@pytest.mark.parametrize("tr", [0.0, -2.0, float("inf"), float("nan")])
def test_a_tr_that_is_not_a_positive_number_is_refused_even_when_unusual_ones_are_allowed(tr):
    with pytest.raises(DataError, match="x.npz: TR must be a positive number of seconds"):
        check_tr(tr, "x.npz", allow_unusual=True)


def test_read_options_reach_the_table_reader(tmp_path):
    """`ReadOptions.index_col` (--index-col) settles a table through `read_source`, as `header` does."""
    whole = np.arange(24).reshape(6, 4) % 5
    path = tmp_path / "sub-1.csv"
    path.write_text("".join(f"{i}," + ",".join(map(str, row)) + "\n" for i, row in enumerate(whole)))
    (source,) = find_sources([path])
    with pytest.raises(DataError, match="index_col=True or False"):
        read_source(source, ReadOptions(num_rois=4))
    run = read_source(source, ReadOptions(num_rois=4, index_col=True))
    np.testing.assert_array_equal(run.ts, whole.T.astype(np.float32))
    run = read_source(source, ReadOptions(num_rois=5, index_col=False))
    np.testing.assert_array_equal(run.ts[1:], whole.T.astype(np.float32))


def test_read_options_refuse_an_unknown_orientation():
    with pytest.raises(DataError, match="orientation must be one of .*got 'rows'"):
        ReadOptions(orientation="rows")


def test_phenotype_subject_column_is_found_by_name_in_order_and_any_case(tmp_path):
    """SUBJECT_COLUMNS in their order of preference, whatever the case of the header; ids are stripped of spaces
    and of a leading ``sub-``."""
    path = tmp_path / "p.csv"
    path.write_text("id,Subject,age\n9,01,30\n8,02,40\n")  # "subject" is preferred to "id", wherever it stands
    table = read_phenotypes(path)
    assert table.keys == ("Subject",) and table.columns == ["id", "age"]
    assert table.lookup("01", "1") == {"id": 9, "age": 30}
    path.write_text("Participant_ID,age\n sub-01 ,30\n")
    assert read_phenotypes(path).lookup("01", "1") == {"age": 30}


def test_phenotype_text_values_are_stripped_of_stray_spaces(tmp_path):
    """A spreadsheet's ``"A "`` and ``" B"`` are the labels ``A`` and ``B``: kept as written, a two-class label
    would be probed as four classes. Numbers stay numbers."""
    path = tmp_path / "participants.tsv"
    path.write_text("participant_id\tgroup\tage\nsub-01\tA \t30\nsub-02\t B\t40\nsub-03\tA\t50\nsub-04\tB\t60\n")
    table = read_phenotypes(path)
    assert sorted({row["group"] for row in table.rows.values()}) == ["A", "B"]
    assert table.lookup("01", "1") == {"group": "A", "age": 30}


def test_phenotype_runs_compare_as_numbers(tmp_path):
    """A table's run ``01`` is the file's ``run-1`` (and ``1`` and ``01`` in one table are one run twice)."""
    path = tmp_path / "p.csv"
    path.write_text("subject,Run,age\n1,01,30\n1,02,31\n")
    table = read_phenotypes(path)
    assert table.by_run and table.lookup("1", "1") == {"age": 30} and table.lookup("1", "002") == {"age": 31}
    path.write_text("subject,run,age\n1,01,30\n1,1,31\n")
    with pytest.raises(DataError, match="p.csv: duplicate rows for 1"):
        read_phenotypes(path)


def test_phenotype_columns_that_clash_with_the_manifest_are_refused_when_read(tmp_path):
    """Refused by `read_phenotypes` itself, so that prepare stops before reading any run."""
    path = tmp_path / "p.csv"
    path.write_text("subject,age,offset\n1,30,5\n")
    with pytest.raises(DataError, match="p.csv: phenotype columns \\['offset'\\] clash with manifest columns"):
        read_phenotypes(path)


@pytest.mark.parametrize("key", ["tr", "TR", "t_r", "repetition_time"])
def test_npz_tr_under_any_of_its_names(tmp_path, key):
    ts = RNG.standard_normal((4, 9))
    np.savez(tmp_path / "a.npz", ts=ts, **{key: np.float64(2.0)})
    got, tr = read_numpy(tmp_path / "a.npz", num_rois=4)
    assert tr == 2.0
    np.testing.assert_array_equal(got, ts.astype(np.float32))


@pytest.mark.parametrize("key", ["Tr", "RepetitionTime", "REPETITION_TIME"])
def test_npz_tr_in_another_case_is_not_dropped(tmp_path, key):
    """``RepetitionTime`` (the BIDS sidecar's name) or ``Tr`` is the run's TR, not a scalar silently left out."""
    ts = RNG.standard_normal((4, 9))
    np.savez(tmp_path / "a.npz", ts=ts, **{key: np.float64(2.0)})
    assert read_numpy(tmp_path / "a.npz", num_rois=4)[1] == 2.0


def test_npz_with_two_trs_is_refused(tmp_path):
    np.savez(tmp_path / "a.npz", ts=RNG.standard_normal((4, 9)), tr=np.float64(2.0), RepetitionTime=np.float64(0.8))
    with pytest.raises(DataError, match="a.npz: two TRs, 'tr' and 'RepetitionTime'; keep one"):
        read_numpy(tmp_path / "a.npz", num_rois=4)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"ts": np.ones((4, 9)), "tr": np.array([2.0, 2.0])}, "'tr' must be one number \\(seconds\\), got float64"),
        ({"ts": np.ones((4, 9)), "tr": np.float64(np.inf)}, "'tr' must be a positive number of seconds, got inf"),
        ({"ts": np.zeros((0, 4))}, "empty array \\(shape \\(0, 4\\)\\)"),
    ],
)
def test_bad_npz_contents_are_named(tmp_path, arrays, message):
    np.savez(tmp_path / "a.npz", **arrays)
    with pytest.raises(DataError, match=f"a.npz: {message}"):
        read_numpy(tmp_path / "a.npz", num_rois=4)


def test_float32_extremes_are_kept(tmp_path):
    """The largest float32 value (and its negative) is in range; only beyond it is refused."""
    big = float(np.finfo(np.float32).max)
    values = np.array([[big, -big, 1.0], [0.5, 2.0, -1.0]])
    np.save(tmp_path / "a.npy", values)
    got, _ = read_numpy(tmp_path / "a.npy", orientation="rois-x-time")
    np.testing.assert_array_equal(got, values.astype(np.float32))
    assert np.isfinite(got).all()


def _image_and_atlas(tmp_path: Path, units: str = "sec", pixdim: float = 0.8) -> tuple[Path, Path]:
    """A 4-D image whose header says (`pixdim`, `units`) for time, and a 2-label atlas on its grid."""
    nib = pytest.importorskip("nibabel")
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    img = nib.Nifti1Image(RNG.standard_normal((4, 4, 3, 10)).astype(np.float32), affine)
    img.header.set_xyzt_units("mm", units)
    img.header.set_zooms((2.0, 2.0, 2.0, pixdim))
    nib.save(img, tmp_path / "sub-1_bold.nii.gz")
    atlas = np.ones((4, 4, 3), np.int16)
    atlas[:2] = 2
    nib.save(nib.Nifti1Image(atlas, affine), tmp_path / "atlas.nii.gz")
    return tmp_path / "sub-1_bold.nii.gz", tmp_path / "atlas.nii.gz"


@pytest.mark.parametrize(
    ("units", "pixdim", "tr"),
    [("usec", 720000.0, 0.72), ("unknown", 2.0, 2.0), ("sec", 0.0, None)],  # 0: the header has no TR
)
def test_nifti_tr_from_the_header_in_its_unit(tmp_path, units, pixdim, tr):
    image, atlas = _image_and_atlas(tmp_path, units, pixdim)
    (source,) = find_sources([image])
    run = read_source(source, ReadOptions(atlases=[atlas]))
    assert run.tr == (pytest.approx(tr) if tr is not None else None)
    assert read_source(source, ReadOptions(atlases=[atlas], tr=1.5)).tr == 1.5


def test_nifti_labels_named_by_the_atlas_table_and_4d_atlases_refused(tmp_path):
    nib = pytest.importorskip("nibabel")
    image, atlas = _image_and_atlas(tmp_path)
    (tmp_path / "atlas.tsv").write_text("index\tname\n1\tThalamus\n2\tCaudate\n")
    (source,) = find_sources([image])
    assert read_source(source, ReadOptions(atlases=[atlas])).roi_labels == ["Thalamus", "Caudate"]
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3, 2), np.int16), np.diag([2.0, 2.0, 2.0, 1.0])), tmp_path / "a4.nii.gz")
    with pytest.raises(DataError, match="a4.nii.gz: expected a 3-D label image, got shape \\(4, 4, 3, 2\\)"):
        read_source(source, ReadOptions(atlases=[tmp_path / "a4.nii.gz"]))


def test_an_atlas_label_table_beside_the_images_is_not_a_run(tmp_path):
    """An atlas next to the images is not read as a run, and neither is its label table ``<stem>.tsv`` (index,
    name), which names its ROIs and which `save_label_image` writes beside it: read as a time series, it stopped
    `prepare` (``atlas.tsv: row 2, column 2: non-numeric cell 'Thalamus'``). A table of another shape is a run."""
    from brainjepa.data.prepare import validate_paths

    image, atlas = _image_and_atlas(tmp_path)
    (tmp_path / "atlas.tsv").write_text("index\tname\n1\tThalamus\n2\tCaudate\n")
    assert [s.path.name for s in find_sources([tmp_path], skip=[atlas])] == [image.name]
    assert validate_paths([tmp_path], ReadOptions(atlases=[atlas])) == (1, [])
    (tmp_path / "atlas.tsv").write_text("a\tb\n1.5\t2.5\n")  # not a label table: a run, as any other table
    assert [s.path.name for s in find_sources([tmp_path], skip=[atlas])] == ["atlas.tsv", image.name]


def test_nifti_nan_voxels_inside_a_label_are_refused_and_outside_ignored(tmp_path):
    """nilearn replaces NaN voxels with zeros and averages them into the ROI mean (an SPM image NaN-masked outside
    the brain, under an atlas that reaches beyond the mask): a biased signal behind a warning that names no file.
    Inside a label it is one line naming the image, the atlas and the labels; outside every label it changes
    nothing, so the run is read, without nilearn's warning."""
    nib = pytest.importorskip("nibabel")
    image, atlas = _image_and_atlas(tmp_path)
    img = nib.load(image)
    data = img.get_fdata(dtype=np.float32)
    data[3, 3, 2, :] = np.nan  # label 1
    nib.save(nib.Nifti1Image(data, img.affine, img.header), image)
    (source,) = find_sources([image])
    with pytest.raises(DataError, match="sub-1_bold.nii.gz: 1 voxel\\(s\\) with NaN or Inf values inside atlas "
                       "atlas.nii.gz label\\(s\\) \\[1\\]"):
        read_source(source, ReadOptions(atlases=[atlas]))
    labels = np.asanyarray(nib.load(atlas).dataobj).copy()
    labels[3, 3, 2] = 0  # the NaN voxel now lies outside the atlas
    nib.save(nib.Nifti1Image(labels, img.affine), atlas)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = read_source(source, ReadOptions(atlases=[atlas]))
    keep = (labels == 1)[..., None].repeat(data.shape[3], axis=3)
    np.testing.assert_allclose(run.ts[0], np.where(keep, data, 0).sum((0, 1, 2)) / (labels == 1).sum(), rtol=1e-5)


@pytest.mark.filterwarnings("ignore:After resampling the label image")
def test_an_atlas_that_misses_the_image_is_named(tmp_path):
    """An atlas in another space (no voxel of it inside the image) is one line naming the image and the atlas."""
    nib = pytest.importorskip("nibabel")
    image, _ = _image_and_atlas(tmp_path)
    elsewhere = np.diag([2.0, 2.0, 2.0, 1.0])
    elsewhere[:3, 3] = 1000.0
    labels = np.ones((4, 4, 3), np.int16)
    labels[:2] = 2
    nib.save(nib.Nifti1Image(labels, elsewhere), tmp_path / "far.nii.gz")
    (source,) = find_sources([image])
    with pytest.raises(DataError, match="sub-1_bold.nii.gz: cannot apply atlas .*far.nii.gz \\(No label left"):
        read_source(source, ReadOptions(atlases=[tmp_path / "far.nii.gz"]))
