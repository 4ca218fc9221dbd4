"""One place that decides whether a run's time series is usable, alone and next to the runs before it.

`brainjepa validate`, `brainjepa prepare` (both through `brainjepa.data.prepare`) and `StoreWriter.add` all call
`check_timeseries`, so a run is judged the same way wherever it enters; every problem names its file (or subject)
and what is wrong. This layer reads through `brainjepa.data.readers` and knows nothing of stores.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from brainjepa.data.readers import DEFAULT_READ, ReadOptions, Run, Source, run_key
from brainjepa.errors import DataError, DownloadError

logger = logging.getLogger(__name__)

_MAX_LISTED = 5  # ROIs named per problem before "and N more"


@dataclass(frozen=True)
class Problem:
    """One reason a file or run is unusable; `str()` gives the line the CLI prints."""

    source: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


def _name_rois(idx: np.ndarray, roi_labels: Sequence[str] | None) -> str:
    names = [f"{i} ({roi_labels[i]})" if roi_labels is not None else str(i) for i in idx[:_MAX_LISTED]]
    more = f" and {len(idx) - _MAX_LISTED} more" if len(idx) > _MAX_LISTED else ""
    return ", ".join(names) + more


def check_timeseries(
    ts: np.ndarray,
    *,
    source: str,
    num_rois: int | None = None,
    min_frames: int = 1,
    roi_labels: Sequence[str] | None = None,
) -> list[Problem]:
    """List what is wrong with one run's [R, T] array (empty list: usable).

    Args:
        ts: [R, T] time series (ROIs x frames).
        source: file path or "subject X, run Y"; every problem names it.
        num_rois: expected R, or None to accept any.
        min_frames: fewest frames a run may have.
        roi_labels: names used when pointing at a bad ROI (index alone if None).
    """
    arr = np.asarray(ts)
    if arr.ndim != 2:
        return [Problem(source, f"expected a 2-D [ROIs, frames] array, got shape {arr.shape}")]
    if arr.size == 0:
        return [Problem(source, f"empty time series (shape {arr.shape})")]
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        return [Problem(source, f"non-numeric data (dtype {arr.dtype})")]
    if roi_labels is not None and len(roi_labels) != arr.shape[0]:
        roi_labels = None
    problems = []
    rois, frames = arr.shape
    if num_rois is not None and rois != num_rois:
        problems.append(Problem(source, f"wrong ROI count: {rois} (expected {num_rois})"))
    if frames < min_frames:
        problems.append(Problem(source, f"too few frames: {frames} (need at least {min_frames})"))
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int(arr.size - finite.sum() - n_nan)
        bad = np.flatnonzero(~finite.all(axis=1))
        problems.append(Problem(source, f"{n_nan} NaN and {n_inf} Inf values in ROI {_name_rois(bad, roi_labels)}"))
    if frames >= 2:
        constant = np.flatnonzero(finite.all(axis=1) & (arr.max(axis=1) == arr.min(axis=1)))
        if constant.size:
            problems.append(Problem(source, f"constant ROI {_name_rois(constant, roi_labels)}"))
    return problems


def raise_for_problems(problems: Sequence[Problem]) -> None:
    """Raise one DataError listing every problem (no-op when there are none)."""
    if problems:
        raise DataError("; ".join(str(p) for p in problems))


@dataclass(frozen=True)
class Checked:
    """Outcome of reading and checking one input unit (a file, a UKB pair, a NIfTI run)."""

    source: str
    run: Run | None  # None when it could not be read
    problems: list[Problem]


def check_source(source: Source, options: ReadOptions = DEFAULT_READ, *, min_frames: int = 1) -> Checked:
    """Read (as `options` say, by the source's own `read`) and check one source of any kind; reading errors
    (unreadable, missing UKB partner, ...) become problems."""
    label = source.label
    try:
        run = source.read(options)  # each source kind reads itself (fMRIPrep runs: parcellated and cleaned)
    except DownloadError:  # a named atlas that cannot be fetched: every run would fail alike, so stop once
        raise
    except DataError as err:
        return Checked(label, None, [Problem(label, str(err).removeprefix(f"{label}: "))])
    problems = check_timeseries(
        run.ts, source=label, num_rois=options.num_rois, min_frames=min_frames, roi_labels=run.roi_labels
    )
    return Checked(label, run, problems)


def check_inputs(
    sources: Sequence[Source],
    options: ReadOptions = DEFAULT_READ,
    *,
    min_frames: int = 1,
    workers: int = 1,
    progress: bool = False,
) -> Iterator[Checked]:
    """Every check of `sources` (from `find_sources`), read as `options` say, in input order, in `workers`
    processes.

    A run's problems are its own (`check_source`), or, when it has none, those relative to the runs accepted
    before it (`Consistency`: ROI count and labels, duplicate ids). Problems are reported, not raised, so a caller
    can list them all (validate) or skip them (prepare --skip-bad). Close the iterator (or exhaust it) to stop
    the worker processes.
    """
    from tqdm.auto import tqdm

    check = functools.partial(check_source, options=options, min_frames=min_frames)
    across = Consistency(options.num_rois)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        # Results come back in input order; a small chunk keeps every worker busy without hoarding memory.
        results = map(check, sources) if pool is None else pool.map(check, sources, chunksize=4)
        for checked in tqdm(results, total=len(sources), desc="reading", unit="run", disable=not progress):
            if checked.problems:
                yield checked
            else:
                yield Checked(checked.source, checked.run, across.check(checked.run, checked.source))
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class Consistency:
    """Checks across runs that must share one store: same ROI count and labels, unique (subject, run)."""

    def __init__(self, num_rois: int | None = None) -> None:
        self.num_rois = num_rois
        self.roi_labels: list[str] | None = None
        self._seen: dict[tuple[str, str], str] = {}

    def check(self, run: Run, source: str) -> list[Problem]:
        """Problems of `run` relative to the runs accepted so far; a run without problems is accepted."""
        problems = []
        rois = run.ts.shape[0]
        if self.num_rois is not None and rois != self.num_rois:
            problems.append(Problem(source, f"wrong ROI count: {rois} (the first run has {self.num_rois})"))
        if self.roi_labels is not None and run.roi_labels is not None and run.roi_labels != self.roi_labels:
            problems.append(Problem(source, "ROI labels differ from the first run's"))
        key = (run.subject, run_key(run.run))  # run-1 and run-01 are one run, as in BIDS
        if key in self._seen:
            problems.append(
                Problem(source, f"duplicate run: subject {key[0]}, run {run.run} is also in {self._seen[key]}")
            )
        if not problems:
            self._seen[key] = source
            self.num_rois = rois
            self.roi_labels = self.roi_labels or run.roi_labels
        return problems

