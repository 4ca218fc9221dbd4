"""One place that decides whether a run's time series is usable.

`brainjepa validate`, `brainjepa prepare` and `StoreWriter.add` all call `check_timeseries`, so a run is judged
the same way wherever it enters; every problem names its file (or subject) and what is wrong.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainjepa.errors import DataError

if TYPE_CHECKING:
    from brainjepa.data.readers import Run, Source

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


def check_source(
    source: Source,
    *,
    num_rois: int | None = None,
    min_frames: int = 1,
    orientation: str = "auto",
    atlases: Sequence[str | Path] = (),
    tr: float | None = None,
) -> Checked:
    """Read and check one source; reading errors (unreadable, missing UKB partner, ...) become problems."""
    from brainjepa.data.readers import read_source

    label = source.label
    try:
        run = read_source(source, num_rois=num_rois, orientation=orientation, atlases=atlases, tr=tr)
    except DataError as err:
        return Checked(label, None, [Problem(label, str(err).removeprefix(f"{label}: "))])
    problems = check_timeseries(
        run.ts, source=label, num_rois=num_rois, min_frames=min_frames, roi_labels=run.roi_labels
    )
    return Checked(label, run, problems)


def check_inputs(
    sources: Sequence[Source],
    *,
    num_rois: int | None = None,
    min_frames: int = 1,
    orientation: str = "auto",
    atlases: Sequence[str | Path] = (),
    tr: float | None = None,
    workers: int = 1,
    progress: bool = False,
) -> Iterator[Checked]:
    """`check_source` over `sources` (from `find_sources`), in order, in `workers` processes.

    Problems are reported, not raised, so a caller can list them all (validate) or skip them (prepare
    --skip-bad). Close the iterator (or exhaust it) to stop the worker processes.
    """
    from tqdm.auto import tqdm

    check = functools.partial(
        check_source, num_rois=num_rois, min_frames=min_frames, orientation=orientation, atlases=atlases, tr=tr
    )
    bar = functools.partial(tqdm, total=len(sources), desc="reading", unit="run", disable=not progress)
    if workers <= 1:
        yield from bar(map(check, sources))
        return
    pool = ProcessPoolExecutor(workers)
    try:
        # Results come back in input order; a small chunk keeps every worker busy without hoarding memory.
        yield from bar(pool.map(check, sources, chunksize=4))
    finally:
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
        key = (run.subject, run.run)
        if key in self._seen:
            problems.append(
                Problem(source, f"duplicate run: subject {key[0]}, run {key[1]} is also in {self._seen[key]}")
            )
        if not problems:
            self._seen[key] = source
            self.num_rois = rois
            self.roi_labels = self.roi_labels or run.roi_labels
        return problems


def validate_paths(
    inputs: Sequence[str | Path],
    *,
    num_rois: int | None = None,
    min_frames: int = 1,
    orientation: str = "auto",
    atlases: Sequence[str | Path] = (),
    tr: float | None = None,
    workers: int = 1,
) -> tuple[int, list[Problem]]:
    """Check all runs under `inputs` as `prepare` would; returns (number of runs checked, all problems).

    Raises:
        DataError: an input does not exist or nothing readable-looking was found.
    """
    from brainjepa.data.readers import find_sources

    sources = find_sources(inputs, skip=atlases)
    if not sources:
        raise DataError(f"no time series found in {', '.join(map(str, inputs))}")
    problems: list[Problem] = []
    across = Consistency(num_rois)
    checks = check_inputs(
        sources,
        num_rois=num_rois,
        min_frames=min_frames,
        orientation=orientation,
        atlases=atlases,
        tr=tr,
        workers=workers,
    )
    for checked in checks:
        problems.extend(checked.problems)
        if checked.run is not None and not checked.problems:
            problems.extend(across.check(checked.run, checked.source))
    return len(sources), problems
