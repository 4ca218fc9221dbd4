"""`brainjepa prepare`: read ROI time series and write one memory-mapped dataset store."""

from __future__ import annotations

import argparse

from brainjepa.cli.validate import add_input_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="read time series (csv/tsv/npy/npz/UKB/NIfTI) into a dataset store")
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
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainjepa.data.store import SKIPPED_FILE, prepare_store

    store, skipped = prepare_store(
        args.inputs,
        args.out,
        num_rois=args.rois,
        min_frames=args.frames,
        orientation=args.orientation,
        atlases=args.atlas,
        tr=args.tr,
        phenotypes=args.phenotypes,
        subject_column=args.subject_column,
        skip_bad=args.skip_bad,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=not args.no_progress,
    )
    print(f"wrote {len(store)} runs ({store.total_frames} frames x {store.num_rois} ROIs) to {store.path}")
    if not args.no_stats:
        from brainjepa.data.normalize import save_robust_stats
        from brainjepa.errors import DataError

        try:
            save_robust_stats(store, progress=not args.no_progress)
            print("saved robust-scaling statistics (store metadata 'normalization')")
        except DataError as err:  # e.g. too few subjects for a non-zero IQR: the store itself is fine
            print(f"robust-scaling statistics not saved: {err}")
    if skipped:
        print(f"skipped {len({p.source for p in skipped})} bad runs; see {store.path / SKIPPED_FILE}")
    return 0
