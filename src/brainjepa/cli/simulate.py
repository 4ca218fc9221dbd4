"""`brainjepa simulate`: write a ready store of simulated BOLD with known per-subject parameters."""

from __future__ import annotations

import argparse

from brainjepa.data.simulate import SimulationConfig, simulate_store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="write a store of simulated BOLD (Hopf oscillators + HRF) with known labels, to try the pipeline",
        description="Stuart-Landau oscillators on a modular connectome, convolved with a double-gamma HRF and "
        "sampled every TR. Phenotype columns: coupling (raises mean FC), group (0/1: module 0 crosses the Hopf "
        "bifurcation in group 1) and age (slows the oscillations).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="store directory to create")
    p.add_argument("--subjects", type=int, default=100, help="number of subjects, one run each (default 100)")
    p.add_argument("--rois", type=int, default=100, help="number of ROIs R (default 100)")
    p.add_argument("--frames", type=int, default=160, help="frames T per run (default 160)")
    p.add_argument("--tr", type=float, default=2.0, help="repetition time in seconds (default 2.0)")
    p.add_argument("--modules", type=int, default=4, help="number of network modules (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data (default 0)")
    p.add_argument("--batch-size", type=int, default=32, help="subjects integrated together (memory vs speed)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = SimulationConfig(
        subjects=args.subjects,
        rois=args.rois,
        frames=args.frames,
        tr=args.tr,
        modules=args.modules,
        seed=args.seed,
        batch_size=args.batch_size,
    )
    store = simulate_store(args.out, config, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"wrote {store.path}: {len(store)} runs x {store.num_rois} ROIs x {args.frames} frames "
          f"(phenotypes: coupling, group, age)")
    return 0
