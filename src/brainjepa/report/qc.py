"""`brainjepa prepare`'s QC pages: one PNG per run in ``<store>/qc/``, to look at before training on a store.

Each page shows the run's stored ROI series as a carpet plot (ROIs x frames, each ROI z-scored) with its ROI DVARS
(root mean square over ROIs of the frame-to-frame change of the z-scored series) above it. For fMRIPrep runs it
adds the framewise displacement from the run's confounds file, and puts the stored frames back on the run's
original timeline: the frames the confound strategy censored are blank columns, shaded red in every panel.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from brainjepa.data.fmriprep import RUN_ENTITIES, bids_entities, fmriprep_confounds
from brainjepa.data.store import RunStore
from brainjepa.report.figures import qc_figure

QC_DIR = "qc"


def qc_pages(store: RunStore, *, progress: bool = True) -> list[Path]:
    """Write ``<store>/qc/<subject>_<run>.png`` for every run of `store` and return the paths."""
    from tqdm.auto import tqdm

    strategy = (store.metadata.get("fmriprep") or {}).get("confounds")
    manifest = store.manifest
    pages = []
    for i in tqdm(range(len(store)), desc="QC pages", unit="run", disable=not progress):
        row = manifest.iloc[i]
        removed = int(row["frames_removed"]) if "frames_removed" in row else 0
        series, traces, censored = run_qc(store.run(i), row["source"], strategy, removed)
        name = re.sub(r"[^\w.-]+", "_", f"{row['subject']}_{row['run']}")
        pages.append(qc_figure(series, traces, censored, store.tr(i), store.path / QC_DIR / f"{name}.png",
                               f"subject {row['subject']}, run {row['run']}"))
    return pages


def run_qc(ts: np.ndarray, source: str, strategy: str | None, removed: int = 0
           ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(series [R, T] on the original frames, z-scored, NaN where censored; traces over T; censored [T] bools) of
    one stored run `ts` [R, T - removed]. `strategy` is the store's fMRIPrep confound strategy (None: not an
    fMRIPrep store), `removed` the frames it censored (manifest column frames_removed)."""
    traces: dict[str, np.ndarray] = {}
    kept = None
    if strategy is not None:
        fd = framewise_displacement(Path(source))
        if fd is not None:
            traces["FD (mm)"] = fd
        kept = fmriprep_confounds(Path(source), strategy)[1]
    frames = ts.shape[1] + removed
    kept = np.arange(frames) if kept is None else kept
    series = np.full((ts.shape[0], frames), np.nan)
    series[:, kept] = (ts - ts.mean(1, keepdims=True)) / (ts.std(1, keepdims=True) + 1e-8)
    censored = np.ones(frames, dtype=bool)
    censored[kept] = False
    traces["ROI DVARS (z)"] = np.r_[np.nan, np.sqrt(np.mean(np.diff(series, axis=1) ** 2, axis=0))]
    return series, traces, censored


def confounds_file(image: Path) -> Path | None:
    """The fMRIPrep confounds table of `image`: same folder, same subject and run entities (None if missing)."""
    want = bids_entities(image.name)
    for candidate in sorted(image.parent.glob("*_desc-confounds_*.tsv")):  # _timeseries (or _regressors before 20.2)
        have = bids_entities(candidate.name)
        if all(have.get(key) == want.get(key) for key in ("sub", *RUN_ENTITIES)):
            return candidate
    return None


def framewise_displacement(image: Path) -> np.ndarray | None:
    """The ``framewise_displacement`` column of the run's confounds table (NaN for its first frame's n/a)."""
    import pandas as pd

    table = confounds_file(image)
    if table is None:
        return None
    columns = pd.read_csv(table, sep="\t", na_values="n/a")
    return columns["framewise_displacement"].to_numpy(np.float64) if "framewise_displacement" in columns else None
