"""GLM betas: each ROI's response to a task's events, the first-order standard of task fMRI.

Per run window (the frames an encoder sees) and ROI, ordinary least squares of the signal on a design of

* one regressor per event type (`EVENT_TYPES`: the connattractor sample's ``heat`` and ``rating`` blocks): a
  boxcar over each event's [onset, onset + duration) convolved with the canonical double-gamma haemodynamic
  response (`canonical_hrf`: peak at 6 s, undershoot at 16 s, ratio 1/6, as SPM's), sampled at the window's frame
  times;
* an intercept and a linear drift over the window.

The betas of the event regressors, [R, event types], are the features. Event onsets are in seconds from the run
start (the sample's ``onset_run`` column); frame t of a run is acquired t * TR s after its start.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainjepa.data.samples import default_cache_dir
from brainjepa.errors import DataError

if TYPE_CHECKING:
    import pandas

    from brainjepa.data.store import RunStore

EVENT_TYPES = ("heat", "rating")
HRF_SECONDS = 32.0
_DT = 0.1  # seconds: resolution of the boxcars before sampling at the frames


def canonical_hrf(dt: float = _DT, length: float = HRF_SECONDS) -> np.ndarray:
    """The canonical double-gamma haemodynamic response sampled every `dt` s over `length` s, summing to 1:
    gamma(6) - gamma(16) / 6 (shape parameters in seconds, unit scale)."""
    from scipy.stats import gamma

    t = np.arange(0.0, length, dt)
    h = gamma.pdf(t, 6.0) - gamma.pdf(t, 16.0) / 6.0
    return h / h.sum()


def event_regressors(events: pandas.DataFrame, times: np.ndarray, types: Sequence[str] = EVENT_TYPES, *,
                     onset: str = "onset_run") -> np.ndarray:
    """HRF-convolved boxcars of each event type, sampled at `times` (seconds from the run start): [len(times),
    len(types)]. An event type absent from the table gives a column of zeros.

    Raises:
        DataError: the table lacks the onset, ``duration`` or ``trial_type`` column.
    """
    missing = [c for c in (onset, "duration", "trial_type") if c not in events.columns]
    if missing:
        raise DataError(f"events: no columns {missing} (have {list(events.columns)})")
    times = np.asarray(times, dtype=np.float64)
    hrf = canonical_hrf()
    grid = np.arange(0.0, max(float(times.max(initial=0.0)), 0.0) + HRF_SECONDS + _DT, _DT)
    columns = []
    for kind in types:
        box = np.zeros(len(grid))
        rows = events[events["trial_type"].astype(str) == kind][[onset, "duration"]].dropna()
        for start, duration in rows.itertuples(index=False):
            box[(grid >= start) & (grid < start + duration)] = 1.0
        response = np.convolve(box, hrf)[: len(grid)]
        columns.append(np.interp(times, grid, response))
    return np.stack(columns, axis=1)


def glm_betas(window: np.ndarray, times: np.ndarray, events: pandas.DataFrame,
              types: Sequence[str] = EVENT_TYPES) -> np.ndarray:
    """Betas [R, len(types)] of the event regressors for a window [R, F] whose frames were acquired at `times`
    [F] (seconds from the run start), with an intercept and a linear drift in the design."""
    x = event_regressors(events, times, types)
    drift = (times - times.mean()) / max(float(np.ptp(times)), 1e-12)
    design = np.column_stack([x, np.ones(len(times)), drift])
    betas, *_ = np.linalg.lstsq(design, np.asarray(window, dtype=np.float64).T, rcond=None)
    return betas[: len(types)].T


def sample_events(store: RunStore, cache: str | Path | None = None) -> list[pandas.DataFrame]:
    """The event table of every run of a store prepared from a sample (`brainjepa samples prepare`), read from
    the sample's extracted folder in the cache (``CACHE/<sample>/events/sub-<s>_run-<r>_events.tsv``).

    Raises:
        DataError: the store was not prepared from a sample, or a run's event file is missing (the message names
            it: run `brainjepa samples download <name>` to extract the sample into the cache).
    """
    import pandas as pd

    sample = store.metadata.get("sample") or {}
    if not sample.get("name"):
        raise DataError(f"{store.path}: not prepared from a sample, so it has no event files")
    folder = Path(cache or default_cache_dir()) / str(sample["name"]) / "events"
    tables = []
    for s, r in zip(store.manifest["subject"].astype(str), store.manifest["run"].astype(str), strict=True):
        path = folder / f"sub-{s}_run-{r}_events.tsv"
        if not path.is_file():
            raise DataError(f"no event file {path} (run `brainjepa samples download {sample['name']}` to extract "
                            "the sample's events into the cache)")
        tables.append(pd.read_csv(path, sep="\t", na_values=["n/a"]))
    return tables


__all__ = ["EVENT_TYPES", "canonical_hrf", "event_regressors", "glm_betas", "sample_events"]
