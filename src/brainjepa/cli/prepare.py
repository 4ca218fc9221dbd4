"""`brainjepa prepare`: read ROI time series and write one memory-mapped dataset store."""

from __future__ import annotations

import argparse
import shutil
import time

from brainjepa.cli.arguments import intermixed
from brainjepa.cli.validate import add_input_arguments, input_options
from brainjepa.data.prepare import SKIPPED_FILE, prepare_store
from brainjepa.report.figures import can_draw
from brainjepa.report.qc import QC_DIR, qc_pages


def register(sub: argparse._SubParsersAction) -> None:
    p = intermixed(sub.add_parser("prepare", help="read time series (csv/tsv/npy/npz/UKB/NIfTI) into a dataset store"))
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or glob patterns to read")
    p.add_argument("--out", required=True, metavar="DIR", help="store directory to create")
    add_input_arguments(p)
    p.add_argument(
        "--phenotypes",
        default=None,
        metavar="CSV",
        help="CSV/TSV joined on subject (and run, if it has a 'run' column) into the manifest",
    )
    p.add_argument(
        "--subject-column",
        default=None,
        metavar="COL",
        help="subject id column of --phenotypes (default: subject, participant_id, eid, ...)",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave bad runs out and list them in DIR/skipped.csv instead of stopping",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store in DIR")
    p.add_argument(
        "--no-stats",
        action="store_true",
        help="do not fit the reference's robust-scaling statistics (median / IQR of subject ROI means, over all "
        "runs) into the store; training then fits them itself",
    )
    p.add_argument(
        "--no-qc",
        action="store_true",
        help="do not draw the QC page of each run (DIR/qc/<subject>_<run>.png: carpet plot, ROI DVARS, and for "
        "fMRIPrep runs framewise displacement and censored frames; 0.4-0.75 s per run measured on a busy 2-core CPU; "
        "needs the [viz] extra)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prepared = prepare_store(
        args.inputs,
        args.out,
        **input_options(args),
        phenotypes=args.phenotypes,
        subject_column=args.subject_column,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
        stats=not args.no_stats,
        progress=not args.no_progress,
    )
    store = prepared.store
    print(f"wrote {len(store)} runs ({store.total_frames} frames x {store.num_rois} ROIs) to {store.path}")
    if prepared.stats is not None:
        print("saved robust-scaling statistics (store metadata 'normalization')")
    if "frames_removed" in store.manifest.columns:
        removed = store.manifest["frames_removed"]
        print(f"removed {int(removed.sum())} censored frames in {int((removed > 0).sum())} of {len(store)} runs "
              f"(confounds '{store.metadata['fmriprep']['confounds']}'; per run: manifest column frames_removed)")
    if prepared.skipped:
        print(f"skipped {len({p.source for p in prepared.skipped})} bad runs; see {store.path / SKIPPED_FILE}")
    shutil.rmtree(store.path / QC_DIR, ignore_errors=True)  # pages of a replaced store would describe other data
    if not args.no_qc and can_draw(f"QC pages {QC_DIR}/"):
        start = time.perf_counter()
        qc_pages(store, progress=not args.no_progress)
        print(f"drew {len(store)} QC pages in {store.path / QC_DIR} ({time.perf_counter() - start:.1f} s; --no-qc "
              "skips them)")
    return 0
