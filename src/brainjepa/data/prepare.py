"""Input files -> one store: `brainjepa validate`, `brainjepa prepare`, and the store's robust-scaling statistics.

The only module that turns inputs into a store, on top of the data stack. `validate_paths` finds the runs under
the inputs (`brainjepa.data.readers`) and lists every problem (`brainjepa.data.validate`); `prepare_store` runs the
same discovery and checks while streaming the good runs into a `StoreWriter`, then fits the reference's robust
scaling and keeps it with the store (`save_robust_stats`, also what the quickstart calls for the stores it gets
from the samples or the simulator), where training and embedding pick it up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainjepa.data.fmriprep import FmriprepOptions, find_fmriprep_runs, options_record
from brainjepa.data.normalize import RobustScaler
from brainjepa.data.readers import (
    DEFAULT_READ,
    Phenotypes,
    ReadOptions,
    Source,
    find_sources,
    read_phenotypes,
    run_key,
)
from brainjepa.data.store import RunStore, StoreWriter, check_target, open_runs
from brainjepa.data.validate import Checked, Problem, check_inputs
from brainjepa.errors import ConfigError, DataError
from brainjepa.io import atomic_write

logger = logging.getLogger(__name__)

SKIPPED_FILE = "skipped.csv"


@dataclass(frozen=True)
class Prepared:
    """What `prepare_store` wrote."""

    store: RunStore
    skipped: list[Problem]  # problems of the runs left out (empty unless skip_bad)
    stats: RobustScaler | None  # statistics saved with the store; None when not asked for or not possible


def save_robust_stats(
    store: RunStore | str | Path, indices: Sequence[int] | np.ndarray | None = None, *, progress: bool = True
) -> RobustScaler:
    """Fit the reference's robust scaling on `indices` (None: all runs) and keep it in the store's metadata
    ("normalization"), where training and embedding pick it up."""
    store, idx = open_runs(store, indices)
    scaler = RobustScaler.fit(store, idx, progress=progress)
    store.set_metadata("normalization", scaler.to_dict())
    return scaler


def _checked_runs(
    inputs: Sequence[str | Path],
    options: ReadOptions,
    *,
    min_frames: int,
    workers: int,
    progress: bool,
    fmriprep: FmriprepOptions | None,
) -> tuple[list[Source], Iterator[Checked]]:
    """(the runs found under `inputs`, their checks in input order); raises when there is nothing to read, or when
    table settings come with fMRIPrep derivatives, whose runs are images they would not change."""
    if fmriprep is not None:
        tables = [name for name, unset in (("orientation", "auto"), ("header", None), ("index_col", None))
                  if getattr(options, name) != unset]
        if tables:
            flags = ", ".join(("--" if getattr(options, name) is not False else "--no-") + name.replace("_", "-")
                              for name in tables)
            raise ConfigError(f"{flags}: only for tables and arrays, and fMRIPrep derivatives are images; remove "
                              f"{'it' if len(tables) == 1 else 'them'} (Python: ReadOptions {', '.join(tables)})")
        sources = find_fmriprep_runs(inputs, fmriprep)
    else:
        sources = find_sources(inputs, skip=options.atlases)
    if not sources:
        raise DataError(f"no time series found in {', '.join(map(str, inputs))}")
    return sources, check_inputs(sources, options, min_frames=min_frames, workers=workers, progress=progress)


def _check_join(table: Phenotypes, sources: Sequence[Source], path: str | Path) -> None:
    """Refuse a phenotype table that matches none of the runs: its ids follow another convention (a prefix, a
    different subject column), and every phenotype would silently be empty."""
    keys = [(s.subject, run_key(s.run)) if table.by_run else (s.subject,) for s in sources]

    def few(ids: Sequence[tuple[str, ...]]) -> str:
        shown = list(dict.fromkeys("/".join(k) for k in ids))
        return ", ".join(shown[:4]) + (", ..." if len(shown) > 4 else "")

    if any(key in table.rows for key in keys):
        # Some match: the others would be left empty. Ids that differ only in leading zeros (01 vs 1, as a
        # spreadsheet rewrites them) are the same subjects written two ways, so that is refused, not warned.
        def unpadded(key: tuple[str, ...]) -> tuple[str, ...]:
            return (key[0].lstrip("0") or "0",) + key[1:]

        rows = {unpadded(k): k for k in table.rows}
        pairs = [(key, rows[unpadded(key)]) for key in keys if key not in table.rows and unpadded(key) in rows]
        if pairs:
            distinct = list(dict.fromkeys(pairs))
            shown = ", ".join(f"{'/'.join(run)} as {'/'.join(row)}" for run, row in distinct[:4])
            shown += ", ..." if len(distinct) > 4 else ""
            raise DataError(f"{path}: {len({p[0] for p in pairs})} run id(s) appear in the table only with other "
                            f"leading zeros ({shown}); write the table's ids as the runs' are (a spreadsheet drops "
                            "leading zeros: store the column as text)")
        return

    raise DataError(f"{path}: no phenotype row matches any run (joined on {' and '.join(table.keys)}); "
                    f"runs: {few(keys)}; table: {few(list(table.rows))}; fix the ids or give the subject column "
                    "(subject_column=, --subject-column)")


def validate_paths(
    inputs: Sequence[str | Path],
    options: ReadOptions = DEFAULT_READ,
    *,
    min_frames: int = 1,
    workers: int = 1,
    fmriprep: FmriprepOptions | None = None,
) -> tuple[int, list[Problem]]:
    """Check all runs under `inputs` as `prepare_store` would; returns (number of runs checked, all problems).

    Raises:
        DataError: an input does not exist or nothing readable-looking was found.
    """
    sources, checks = _checked_runs(inputs, options, min_frames=min_frames, workers=workers, progress=False,
                                    fmriprep=fmriprep)
    return len(sources), [problem for checked in checks for problem in checked.problems]


def prepare_store(
    inputs: Sequence[str | Path],
    out: str | Path,
    options: ReadOptions = DEFAULT_READ,
    *,
    min_frames: int = 1,
    phenotypes: str | Path | None = None,
    subject_column: str | None = None,
    skip_bad: bool = False,
    overwrite: bool = False,
    stats: bool = True,
    workers: int = 1,
    progress: bool = True,
    fmriprep: FmriprepOptions | None = None,
) -> Prepared:
    """Read every run under `inputs`, check it, write one store at `out` and fit its robust-scaling statistics.

    Args:
        inputs: files, folders or glob patterns (see `brainjepa.data.readers.find_sources`).
        out: store directory to create.
        options: how runs are read (`ReadOptions`: ROI count, orientation, header, index column, atlases, TR);
            without a ROI count the first good run sets it.
        min_frames: fewest frames a run may have.
        phenotypes: CSV/TSV joined on subject (and run, if it has a ``run`` column).
        subject_column: subject id column of `phenotypes` (default: found by name).
        skip_bad: leave bad runs out and list them in ``skipped.csv`` instead of stopping at the first.
        overwrite: replace an existing store at `out`.
        stats: fit the reference's robust scaling on all runs and keep it in the store (`save_robust_stats`);
            when it cannot be fitted (e.g. too few subjects for a non-zero IQR) a warning says why and the
            store is kept without it.
        workers: processes reading inputs in parallel (writing stays in this process, in input order).
        progress: show tqdm bars over the inputs and the statistics.
        fmriprep: read `inputs` as fMRIPrep derivatives with these options (`brainjepa.data.fmriprep`); their
            session, task, space and frames_removed become manifest columns.

    Raises:
        DataError: a bad run (without `skip_bad`), naming its file and problems; nothing is written then.
    """
    import pandas as pd

    if subject_column is not None and phenotypes is None:
        raise ConfigError("--subject-column names a column of --phenotypes, and none is given: add --phenotypes or "
                          "remove --subject-column")
    out = Path(out)
    check_target(out, overwrite=overwrite)
    table = read_phenotypes(phenotypes, subject_column=subject_column) if phenotypes is not None else None
    sources, checks = _checked_runs(inputs, options, min_frames=min_frames, workers=workers, progress=progress,
                                    fmriprep=fmriprep)
    if table is not None:
        _check_join(table, sources, phenotypes)  # before reading any run (the checks are lazy)
    writer: StoreWriter | None = None
    skipped: list[Problem] = []
    unmatched = 0
    try:
        for checked in checks:
            run = checked.run
            if checked.problems and not skip_bad:
                raise DataError(
                    "; ".join(map(str, checked.problems)) + " (nothing written; fix it, or leave bad runs out "
                    "(skip_bad=True, --skip-bad); `validate_paths` / `brainjepa validate` lists every problem)"
                )
            if checked.problems:
                skipped += checked.problems
                continue
            if writer is None:
                writer = StoreWriter(out, run.ts.shape[0], roi_labels=run.roi_labels, overwrite=overwrite,
                                     min_frames=min_frames, allow_unusual_tr=options.allow_unusual_tr)
            values = table.lookup(run.subject, run.run) if table is not None else None
            unmatched += table is not None and values is None
            extra = values if values is not None else dict.fromkeys(table.columns if table else [], None)
            extra = {**(run.info or {}), **extra}
            writer.add(run.ts, subject=run.subject, run=run.run, tr=run.tr, source=run.source, phenotypes=extra)
        if writer is None:
            raise DataError(f"no usable runs: all {len({p.source for p in skipped})} inputs had problems")
        writer.set_metadata(
            "prepare",
            {
                "inputs": [str(p) for p in inputs],
                "atlases": [str(a) for a in options.atlases],
                "orientation": options.orientation,
                "header": options.header,
                "index_col": options.index_col,
            },
        )
        if fmriprep is not None:
            writer.set_metadata("fmriprep", options_record(fmriprep))
        if table is not None:
            writer.set_metadata("phenotypes", {"file": str(phenotypes), "columns": table.columns,
                                               "joined_on": list(table.keys), "unmatched_runs": int(unmatched)})
        store = writer.close()
    except BaseException:
        checks.close()  # stop reading ahead in worker processes
        if writer is not None:
            writer.abort()
        raise
    (out / SKIPPED_FILE).unlink(missing_ok=True)
    if skip_bad:
        report = pd.DataFrame([{"source": p.source, "problem": p.message} for p in skipped],
                              columns=["source", "problem"])
        atomic_write(out / SKIPPED_FILE, lambda tmp: report.to_csv(tmp, index=False))
    if skipped:
        logger.warning(
            "skipped %d bad runs (%d problems); see %s",
            len({p.source for p in skipped}),
            len(skipped),
            out / SKIPPED_FILE,
        )
    if unmatched:
        logger.warning("%d of %d runs have no row in %s; their phenotype columns are empty (store metadata "
                       "'phenotypes' records the count)", unmatched, len(store), phenotypes)
    scaler = None
    if stats:
        try:
            scaler = save_robust_stats(store, progress=progress)
        except DataError as err:  # the store itself is fine; training fits (or refuses) its own statistics
            logger.warning("robust-scaling statistics not saved: %s", err)
    return Prepared(store, skipped, scaler)
