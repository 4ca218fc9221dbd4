"""`brainjepa validate`: list every problem in a set of time-series files, one line each."""

from __future__ import annotations

import argparse


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `validate` and `prepare`: what to read and what a good run looks like."""
    p.add_argument(
        "--rois",
        type=int,
        default=None,
        metavar="R",
        help="expected ROI count (also orients tables without labels); default: the first run's",
    )
    p.add_argument("--frames", type=int, default=1, metavar="T", help="fewest frames a run may have (default 1)")
    p.add_argument(
        "--orientation",
        choices=("auto", "rois-x-time", "time-x-rois"),
        default="auto",
        help="layout of tables/arrays: rows are ROIs or rows are frames (default: infer from a "
        "label column, a header of ROI names, or --rois)",
    )
    p.add_argument(
        "--atlas",
        action="append",
        default=[],
        metavar="FILE",
        help="label atlas for NIfTI inputs; repeat to join several in order (e.g. Tian S3, then Schaefer 400)",
    )
    p.add_argument(
        "--tr",
        type=float,
        default=None,
        metavar="SEC",
        help="TR in seconds for inputs without one; overrides a NIfTI header or .npz value",
    )
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes reading inputs in parallel (default 1)"
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check ROI time series (NaN/Inf, constant ROIs, ROI count, frames, ...)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or glob patterns to check")
    add_input_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from brainjepa.data.validate import validate_paths

    n, problems = validate_paths(
        args.paths,
        num_rois=args.rois,
        min_frames=args.frames,
        orientation=args.orientation,
        atlases=args.atlas,
        tr=args.tr,
        workers=args.workers,
    )
    for problem in problems:
        print(problem)
    if problems:
        bad = len({p.source for p in problems})
        print(f"{len(problems)} problem{'s' * (len(problems) != 1)} in {bad} of {n} runs")
        return 1
    print(f"{n} runs checked: all good")
    return 0
