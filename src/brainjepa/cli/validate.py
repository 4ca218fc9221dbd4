"""`brainjepa validate`: list every problem in a set of time-series files, one line each."""

from __future__ import annotations

import argparse
import math
from typing import Any

from brainjepa.cli.arguments import intermixed
from brainjepa.data.fmriprep import CONFOUND_STRATEGIES, FmriprepOptions
from brainjepa.data.prepare import validate_paths
from brainjepa.data.readers import ReadOptions, check_tr
from brainjepa.data.tables import ORIENTATIONS
from brainjepa.errors import ConfigError


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
        choices=ORIENTATIONS,
        default="auto",
        help="layout of tables/arrays: rows are ROIs or rows are frames (default: infer from a "
        "label column, a header of ROI names, or --rois)",
    )
    p.add_argument(
        "--header",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tables: the first row is (--header) or is not (--no-header) a header of names or numbers "
        "(default: decide from the evidence, refuse when it is ambiguous)",
    )
    p.add_argument(
        "--index-col",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="tables: the first column is (--index-col) or is not (--no-index-col) an index or ROI names "
        "(default: decide from the evidence, refuse when it is ambiguous)",
    )
    p.add_argument(
        "--atlas",
        action="append",
        default=[],
        metavar="FILE|NAME",
        help="label atlas for NIfTI inputs (a .dlabel.nii for CIFTI runs); repeat to join several in order (e.g. "
        "Tian S3, then Schaefer 400); with --fmriprep also a name fetched once for the runs' space: "
        "schaefer400_tians3 (the official 450-ROI order), schaefer400, schaefer400_7n, tians3, ...",
    )
    p.add_argument(
        "--tr",
        type=float,
        default=None,
        metavar="SEC",
        help="TR in seconds for inputs without one; overrides a NIfTI header or .npz value",
    )
    p.add_argument(
        "--allow-unusual-tr",
        action="store_true",
        help="accept TRs outside what scanners use (0.05-30 s), which are refused as likely milliseconds given "
        "as seconds",
    )
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes reading inputs in parallel (default 1)"
    )
    add_fmriprep_arguments(p)


def add_fmriprep_arguments(p: argparse.ArgumentParser) -> None:
    """fMRIPrep derivatives as input (`brainjepa.data.fmriprep`); the other flags of the group need --fmriprep."""
    g = p.add_argument_group("fMRIPrep derivatives")
    g.add_argument("--fmriprep", action="store_true",
                   help="read the inputs as fMRIPrep derivatives folders: *_desc-preproc_bold.nii.gz with a NIfTI "
                   "--atlas, *_bold.dtseries.nii with a .dlabel.nii --atlas; ids from the BIDS names, TR from each "
                   "JSON sidecar (else --tr)")
    g.add_argument("--task", default=None, help="only runs of this BIDS task (e.g. rest)")
    g.add_argument("--space", default=None,
                   help="only runs in this output space (e.g. MNI152NLin2009cAsym, fsLR; add _res-2 where a space "
                   "has several resolutions); required when the derivatives hold several")
    g.add_argument("--session", default=None, help="only runs of this BIDS session")
    g.add_argument("--confounds", choices=CONFOUND_STRATEGIES, default=None,
                   help="nilearn fMRIPrep denoising strategy applied to each run (default simple); scrubbing "
                   "removes high-motion frames, every strategy removes non-steady-state frames; none: no cleaning")
    g.add_argument("--high-pass", type=float, default=None, metavar="HZ",
                   help="Butterworth high-pass cut-off in Hz (default: none beyond the strategy's cosine terms)")
    g.add_argument("--detrend", action=argparse.BooleanOptionalAction, default=None,
                   help="remove each ROI's linear trend and mean (default --no-detrend)")


FMRIPREP_FLAGS = ("task", "space", "session", "confounds", "high_pass", "detrend")  # the group's flags but --fmriprep


def fmriprep_options(args: argparse.Namespace) -> FmriprepOptions | None:
    """FmriprepOptions when --fmriprep is given, else None; a group flag without --fmriprep is refused."""
    values = {name: getattr(args, name) for name in FMRIPREP_FLAGS}
    given = {k: v for k, v in values.items() if v is not None}
    if not args.fmriprep:
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise ConfigError(f"{flags}: only for fMRIPrep derivatives; add --fmriprep")
        return None
    return FmriprepOptions(**given)


def input_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of `validate_paths` / `prepare_store` that `add_input_arguments` collected (ranges checked
    before any file is read)."""
    for flag, value in (("--rois", args.rois), ("--frames", args.frames), ("--workers", args.workers)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    if args.tr is not None and not (math.isfinite(args.tr) and args.tr > 0):
        raise ConfigError(f"--tr must be a positive number of seconds, got {args.tr}")
    if args.tr is not None:
        check_tr(args.tr, "--tr", allow_unusual=args.allow_unusual_tr)
    options = ReadOptions(num_rois=args.rois, orientation=args.orientation, header=args.header,
                          index_col=args.index_col, atlases=args.atlas, tr=args.tr,
                          allow_unusual_tr=args.allow_unusual_tr)
    return {"options": options, "min_frames": args.frames, "workers": args.workers,
            "fmriprep": fmriprep_options(args)}


def register(sub: argparse._SubParsersAction) -> None:
    p = intermixed(sub.add_parser(
        "validate", help="check ROI time series (NaN/Inf, constant ROIs, ROI count, frames, ...)"))
    p.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or glob patterns to check")
    add_input_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    n, problems = validate_paths(args.paths, **input_options(args))
    for problem in problems:
        print(problem)
    if problems:
        bad = len({p.source for p in problems})
        print(f"{len(problems)} problem{'s' * (len(problems) != 1)} in {bad} of {n} runs")
        return 1
    print(f"{n} runs checked: all good")
    return 0
