"""Dataset store: exact round trip, manifest, metadata, validation on add, pickling, corrupt stores."""

from __future__ import annotations

import json
import multiprocessing
import pickle
import re

import numpy as np
import pandas as pd
import pytest

from brainjepa.data.store import RunStore, StoreWriter, check_num_rois, open_runs
from brainjepa.errors import DataError


def _runs(rng: np.random.Generator, rois: int = 6) -> list[np.ndarray]:
    return [rng.standard_normal((rois, t)).astype(np.float32) for t in (20, 35, 12)]


def _write(path, runs, **kwargs) -> RunStore:
    with StoreWriter(path, runs[0].shape[0], **kwargs) as w:
        for k, ts in enumerate(runs):
            w.add(
                ts,
                subject=f"{k:03d}",
                run=str(k % 2 + 1),
                tr=0.5 + k,
                source=f"f{k}.csv",
                phenotypes={"age": 20 + k, "sex": "MF"[k % 2]},
            )
        w.set_metadata("normalization", {"median": np.arange(3.0)})
    return RunStore(path)


def test_round_trip_exact(tmp_path):
    runs = _runs(np.random.default_rng(0))
    store = _write(tmp_path / "s", runs, roi_labels=[f"roi{i}" for i in range(6)])
    assert len(store) == 3 and store.num_rois == 6
    assert store.roi_labels == [f"roi{i}" for i in range(6)]
    for i, ts in enumerate(runs):
        np.testing.assert_array_equal(store.run(i), ts)
        assert store.frames(i) == ts.shape[1]
        assert store.tr(i) == 0.5 + i
        np.testing.assert_array_equal(store.window(i, 3, 7), ts[:, 3:10])
    idx = np.array([0, 3, 6, 9])
    np.testing.assert_array_equal(store.take(1, idx), runs[1][:, idx])
    assert store.run(-1).shape == (6, 12)
    assert store.window(0, 0, 20).flags["C_CONTIGUOUS"]


def test_manifest_and_metadata(tmp_path):
    store = _write(tmp_path / "s", _runs(np.random.default_rng(1)))
    m = store.manifest
    assert list(m.columns[:6]) == ["subject", "run", "offset", "frames", "tr", "source"]
    assert list(m["subject"]) == ["000", "001", "002"]  # ids stay text, leading zeros kept
    assert list(m["offset"]) == [0, 20, 55]
    assert list(store.phenotype("age")) == [20, 21, 22]
    assert list(store.phenotype("sex")) == ["M", "F", "M"]
    assert store.metadata["normalization"] == {"median": [0.0, 1.0, 2.0]}
    meta = json.loads((tmp_path / "s" / "store.json").read_text())
    assert meta["format"] == "brainjepa-store" and meta["version"] == 1 and meta["total_frames"] == 67
    assert (tmp_path / "s" / "data.f32").stat().st_size == 67 * 6 * 4
    store.set_metadata("atlas", "Tian S3 + Schaefer 400")
    assert RunStore(tmp_path / "s").metadata == {
        "normalization": {"median": [0.0, 1.0, 2.0]},
        "atlas": "Tian S3 + Schaefer 400",
    }


def test_unknown_tr_and_missing_phenotypes(tmp_path):
    rng = np.random.default_rng(2)
    with StoreWriter(tmp_path / "s", 4) as w:
        w.add(rng.standard_normal((4, 5)), subject="NA")
        w.add(rng.standard_normal((4, 5)), subject="b", tr=2.0, phenotypes={"score": 1.5})
    store = RunStore(tmp_path / "s")
    assert store.tr(0) is None and store.tr(1) == 2.0
    assert store.manifest["subject"].iat[0] == "NA"
    assert np.isnan(store.phenotype("score")[0]) and store.phenotype("score")[1] == 1.5
    with pytest.raises(DataError, match="no phenotype column 'age'"):
        store.phenotype("age")


@pytest.mark.parametrize(
    ("ts", "message"),
    [
        (np.full((4, 5), np.nan), "sub7.csv .*NaN"),
        (np.ones((3, 5)), "wrong ROI count: 3 \\(expected 4\\)"),
        (np.r_[np.ones((1, 5)), np.random.default_rng(0).standard_normal((3, 5))], "constant ROI 0 \\(a\\)"),
        (np.zeros((4, 0)), "empty"),
    ],
)
def test_add_rejects_bad_runs(tmp_path, ts, message):
    with StoreWriter(tmp_path / "s", 4, roi_labels=list("abcd")) as w:
        with pytest.raises(DataError, match=message):
            w.add(ts, subject="7", source="sub7.csv")
        assert len(w) == 0


def test_add_rejects_duplicates_bad_tr_and_short_runs(tmp_path):
    rng = np.random.default_rng(3)
    with StoreWriter(tmp_path / "s", 2, min_frames=4) as w:
        w.add(rng.standard_normal((2, 5)), subject="a")
        with pytest.raises(DataError, match="subject a, run 1: duplicate run"):
            w.add(rng.standard_normal((2, 5)), subject="a")
        with pytest.raises(DataError, match="TR must be a positive"):
            w.add(rng.standard_normal((2, 5)), subject="b", tr=0.0)
        with pytest.raises(DataError, match="too few frames: 3 \\(need at least 4\\)"):
            w.add(rng.standard_normal((2, 3)), subject="c")
        with pytest.raises(DataError, match="clash with manifest columns"):
            w.add(rng.standard_normal((2, 5)), subject="d", phenotypes={"frames": 1})
    assert len(RunStore(tmp_path / "s")) == 1


def test_exception_leaves_no_store(tmp_path):
    with pytest.raises(RuntimeError), StoreWriter(tmp_path / "s", 2) as w:
        w.add(np.random.default_rng(0).standard_normal((2, 5)), subject="a")
        raise RuntimeError("boom")
    assert not (tmp_path / "s").exists()  # the writer made the folder, so it removes it
    with pytest.raises(DataError, match="s: no such store directory"):
        RunStore(tmp_path / "s")
    with pytest.raises(DataError, match="not a brainjepa store"):
        RunStore(tmp_path)


def test_refuses_existing_store_unless_overwrite(tmp_path):
    runs = _runs(np.random.default_rng(4))
    _write(tmp_path / "s", runs)
    with pytest.raises(DataError, match="a store already exists"):
        StoreWriter(tmp_path / "s", 6)
    store = _write(tmp_path / "s", runs[:1], overwrite=True)
    assert len(store) == 1


def test_pickle_does_not_carry_data(tmp_path):
    runs = [np.random.default_rng(5).standard_normal((8, 400)).astype(np.float32)]
    store = _write(tmp_path / "s", runs)
    store.run(0)  # open the memmap
    blob = pickle.dumps(store)
    assert len(blob) < runs[0].nbytes / 2
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.window(0, 100, 50), runs[0][:, 100:150])


def test_readable_from_spawned_workers(tmp_path):
    # DataLoader workers started with "spawn" receive the store by pickle and map the file themselves.
    runs = _runs(np.random.default_rng(8))
    store = _write(tmp_path / "s", runs)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        windows = pool.starmap(RunStore.window, [(store, i, 2, 10) for i in range(3)])
    for ts, window in zip(runs, windows, strict=True):
        np.testing.assert_array_equal(window, ts[:, 2:12])


def test_window_bounds(tmp_path):
    store = _write(tmp_path / "s", _runs(np.random.default_rng(6)))
    with pytest.raises(DataError, match="window \\[15, 25\\) is outside run 0"):
        store.window(0, 15, 10)
    with pytest.raises(DataError, match="outside run 2"):
        store.take(2, np.array([0, 12]))
    with pytest.raises(IndexError):
        store.run(3)


def test_open_runs_opens_paths_and_checks_indices(tmp_path):
    store = _write(tmp_path / "s", _runs(np.random.default_rng(8)))
    opened, idx = open_runs(tmp_path / "s", None)
    assert isinstance(opened, RunStore) and idx.tolist() == [0, 1, 2] and idx.dtype == np.int64
    assert open_runs(store, [2, 0])[0] is store
    with pytest.raises(DataError, match=r"run index 3 out of range \(store has 3 runs\)"):
        open_runs(store, [0, 3])
    with pytest.raises(DataError, match="run indices must be a 1-D list of integers"):
        open_runs(store, [[0, 1]])
    with pytest.raises(DataError, match="no such store directory"):
        open_runs(tmp_path / "nope", None)


def test_corrupt_store_messages(tmp_path):
    _write(tmp_path / "s", _runs(np.random.default_rng(7)))
    data = tmp_path / "s" / "data.f32"
    data.write_bytes(data.read_bytes()[:-4])
    with pytest.raises(DataError, match="data.f32: size .* does not match 67 frames x 6 ROIs"):
        RunStore(tmp_path / "s")
    data.write_bytes(data.read_bytes() + b"\0\0\0\0")
    manifest = tmp_path / "s" / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",55,12,", ",56,12,"))
    with pytest.raises(DataError, match="manifest.csv: run 2 \\(offset 56, 12 frames\\) lies outside the 67 frames"):
        RunStore(tmp_path / "s")
    (tmp_path / "s" / "store.json").write_text("{not json")
    with pytest.raises(DataError, match="store.json: unreadable store metadata"):
        RunStore(tmp_path / "s")


def test_empty_store(tmp_path):
    with StoreWriter(tmp_path / "s", 3):
        pass
    store = RunStore(tmp_path / "s")
    assert len(store) == 0 and store.data.shape == (0, 3)


def test_window_ending_one_frame_past_the_run_is_refused(tmp_path):
    """A window may end on a run's last frame but not one beyond it: that frame is the next subject's first one,
    so an off-by-one in the bound would silently mix two subjects in one sample."""
    runs = _runs(np.random.default_rng(9))
    store = _write(tmp_path / "s", runs)
    n = runs[0].shape[1]
    np.testing.assert_array_equal(store.window(0, n - 10, 10), runs[0][:, n - 10 :])
    with pytest.raises(DataError, match=f"window \\[{n - 9}, {n + 1}\\) is outside run 0"):
        store.window(0, n - 9, 10)


def test_negative_run_indices_are_refused(tmp_path):
    """A negative run index is a mistake in a subset (e.g. a split), not Python's count from the end: taken as one
    it would quietly train or evaluate on another run than the one meant."""
    store = _write(tmp_path / "s", _runs(np.random.default_rng(10)))
    with pytest.raises(DataError, match=r"run index -1 out of range \(store has 3 runs\)"):
        open_runs(store, [0, -1])


def test_writer_duplicate_runs_compare_as_numbers(tmp_path):
    """Run "01" and run "1" of one subject are one run (BIDS compares run indices as numbers); the writer must not
    store the same run twice under two spellings."""
    rng = np.random.default_rng(11)
    with StoreWriter(tmp_path / "s", 2) as w:
        w.add(rng.standard_normal((2, 5)), subject="a", run="1")
        with pytest.raises(DataError, match="duplicate run"):
            w.add(rng.standard_normal((2, 5)), subject="a", run="01")
    assert len(RunStore(tmp_path / "s")) == 1


def test_data_file_longer_than_the_manifest_says_is_refused(tmp_path):
    """Extra bytes in data.f32 mean the manifest and the data do not belong together (a partial overwrite, a
    different ROI count); opening such a store would read frames at the wrong offsets."""
    runs = _runs(np.random.default_rng(12))
    _write(tmp_path / "s", runs)
    data = tmp_path / "s" / "data.f32"
    data.write_bytes(data.read_bytes() + b"\0" * 4 * runs[0].shape[0])
    total = sum(ts.shape[1] for ts in runs)
    with pytest.raises(DataError, match=f"data.f32: size .* does not match {total} frames x 6 ROIs"):
        RunStore(tmp_path / "s")


def test_unknown_store_version_is_refused(tmp_path):
    """A store written in another format version may lay its data out differently; reading it as version 1 would
    give wrong numbers without any error."""
    _write(tmp_path / "s", _runs(np.random.default_rng(13)))
    meta_path = tmp_path / "s" / "store.json"
    meta = json.loads(meta_path.read_text())
    meta["version"] += 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=f"store version {meta['version']} is not supported"):
        RunStore(tmp_path / "s")


@pytest.mark.parametrize(("key", "value", "named"), [
    ("num_rois", None, "num_rois None"), ("num_rois", "6", "num_rois '6'"), ("num_rois", 0, "num_rois 0"),
    ("total_frames", -1, "total_frames -1"), ("total_frames", 67.5, "total_frames 67.5"),
    ("roi_labels", ["a"], "roi_labels: 1 for 6 ROIs"), ("roi_labels", "abc", "roi_labels: str for 6 ROIs")])
def test_damaged_store_metadata_is_refused_naming_the_key(tmp_path, key, value, named):
    """A hand-edited or damaged store.json is refused in one line naming the file and the key, not a KeyError or
    ValueError from int(), and not a store whose labels do not match its ROIs."""
    _write(tmp_path / "s", _runs(np.random.default_rng(13)))
    meta_path = tmp_path / "s" / "store.json"
    meta = json.loads(meta_path.read_text())
    assert meta["num_rois"] == 6
    if value is None:
        del meta[key]
    else:
        meta[key] = value
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataError, match=f"store.json: damaged store metadata \\({re.escape(named)}"):
        RunStore(tmp_path / "s")


@pytest.mark.parametrize(("column", "cell"), [("offset", "x"), ("frames", ""), ("frames", "12.5"), ("tr", "fast")])
def test_a_damaged_manifest_cell_is_refused_naming_the_file(tmp_path, column, cell):
    """A hand-edited manifest.csv cell that is not a number is refused naming the file; an empty frames cell used
    to be cast to a garbage integer (-2**63 frames)."""
    _write(tmp_path / "s", _runs(np.random.default_rng(13)))
    manifest = pd.read_csv(tmp_path / "s" / "manifest.csv", dtype=str, keep_default_na=False)
    manifest.loc[1, column] = cell
    manifest.to_csv(tmp_path / "s" / "manifest.csv", index=False)
    with pytest.raises(DataError, match="manifest.csv: damaged manifest, offset / frames / tr must be numbers"):
        RunStore(tmp_path / "s")


def test_writer_refuses_zero_rois_and_wrong_label_count(tmp_path):
    """A store of 0 ROIs holds no data at all, and ROI labels must match the ROIs one to one; both are refused
    before anything is written."""
    with pytest.raises(DataError, match="num_rois must be positive, got 0"):
        StoreWriter(tmp_path / "a", 0)
    with pytest.raises(DataError, match="2 ROI labels given for 3 ROIs"):
        StoreWriter(tmp_path / "b", 3, roi_labels=["x", "y"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_writer_refuses_millisecond_trs_unless_allowed(tmp_path):
    """A TR of 720 is 720 ms given as seconds: the writer refuses it unless the caller confirms it is meant."""
    rng = np.random.default_rng(14)
    with StoreWriter(tmp_path / "s", 2) as w:
        with pytest.raises(DataError, match=r"TR 720 s is outside what scanners use"):
            w.add(rng.standard_normal((2, 5)), subject="a", tr=720)
    with StoreWriter(tmp_path / "t", 2, allow_unusual_tr=True) as w:
        w.add(rng.standard_normal((2, 5)), subject="a", tr=720)
    assert RunStore(tmp_path / "t").tr(0) == 720.0


def test_abort_keeps_a_directory_that_existed_before(tmp_path):
    """An aborted write removes only what it created: an empty directory the user made beforehand stays."""
    target = tmp_path / "mine"
    target.mkdir()
    with pytest.raises(RuntimeError), StoreWriter(target, 2) as w:
        w.add(np.random.default_rng(15).standard_normal((2, 5)), subject="a")
        raise RuntimeError("interrupted")
    assert target.is_dir() and not any(target.iterdir())


def test_manifest_run_without_frames_is_refused(tmp_path):
    """A manifest row with 0 frames describes no data (a corrupt or hand-edited manifest): opening must fail."""
    _write(tmp_path / "s", _runs(np.random.default_rng(16)))
    manifest = tmp_path / "s" / "manifest.csv"
    manifest.write_text(manifest.read_text().replace(",55,12,", ",55,0,"))
    with pytest.raises(DataError, match=r"manifest.csv: run 2 \(offset 55, 0 frames\) lies outside"):
        RunStore(tmp_path / "s")


def test_run_accessors_count_back_over_the_whole_store(tmp_path):
    """RunStore's own accessors take Python indices: -len is the first run, -len - 1 is out of range."""
    runs = _runs(np.random.default_rng(17))
    store = _write(tmp_path / "s", runs)
    n = len(runs)
    assert store.frames(-n) == runs[0].shape[1] and store.tr(-n) == store.tr(0)
    np.testing.assert_array_equal(store.run(-n), runs[0])
    with pytest.raises(IndexError, match=f"run index {-n - 1} out of range"):
        store.frames(-n - 1)


def test_empty_window_is_refused(tmp_path):
    """A window of 0 frames is a caller's mistake (an empty sample downstream), refused with the run named."""
    store = _write(tmp_path / "s", _runs(np.random.default_rng(18)))
    with pytest.raises(DataError, match=r"window \[5, 5\) is outside run 0"):
        store.window(0, 5, 0)


def test_open_runs_refuses_fractional_indices(tmp_path):
    """Float run indices (e.g. from a pandas column with NaNs) must not be truncated to other runs silently."""
    store = _write(tmp_path / "s", _runs(np.random.default_rng(19)))
    with pytest.raises(DataError, match="run indices must be a 1-D list of integers"):
        open_runs(store, [0.5, 1.0])
    assert open_runs(store, np.array([], dtype=np.float64))[1].size == 0  # an empty subset of any dtype is fine


def test_unpickled_copy_does_not_share_the_open_file(tmp_path):
    """A pickled store (a DataLoader worker's copy) opens its own file: closing the copy must not close the file
    the original is reading through."""
    runs = _runs(np.random.default_rng(20))
    store = _write(tmp_path / "s", runs)
    np.testing.assert_array_equal(store.run(0), runs[0])  # opens the original's file descriptor
    copy = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(copy.run(2), runs[2])
    copy.close()
    del copy
    np.testing.assert_array_equal(store.run(1), runs[1])


@pytest.mark.parametrize("expected", [5, 7])
def test_check_num_rois_refuses_more_or_fewer_rois(tmp_path, expected):
    """A model has one embedding per ROI: a store with more ROIs than the model is as wrong as one with fewer."""
    store = _write(tmp_path / "s", _runs(np.random.default_rng(21)))
    check_num_rois(store, 6)
    with pytest.raises(DataError, match=f"store has 6 ROIs but the model expects {expected}"):
        check_num_rois(store, expected)


def test_writer_refuses_a_file_as_store_path(tmp_path):
    """Writing a store where a file is gives one DataError naming the path, and leaves the file alone."""
    target = tmp_path / "data.csv"
    target.write_text("a,b\n")
    with pytest.raises(DataError, match="data.csv: exists and is not a directory"):
        StoreWriter(target, 2)
    assert target.read_text() == "a,b\n"


@pytest.mark.parametrize("column", ["subject", "run", "offset", "frames", "tr", "source"])
def test_every_manifest_column_is_protected_from_phenotypes(tmp_path, column):
    """A phenotype named like a manifest column would overwrite it (a run's offset, its source file): refused."""
    with StoreWriter(tmp_path / "s", 2) as w, pytest.raises(DataError, match=f"phenotype columns \\['{column}'\\]"):
        w.add(np.random.default_rng(22).standard_normal((2, 5)), subject="a", source="a.csv",
              phenotypes={column: "x"})


def test_manifest_without_source_column_is_refused(tmp_path):
    """The manifest's columns are part of the format: a manifest missing `source` is not a store's."""
    _write(tmp_path / "s", _runs(np.random.default_rng(23)))
    manifest = tmp_path / "s" / "manifest.csv"
    import pandas as pd

    pd.read_csv(manifest, dtype=str).drop(columns="source").to_csv(manifest, index=False)
    with pytest.raises(DataError, match=r"manifest lacks columns \['source'\]"):
        RunStore(tmp_path / "s")
