"""`brainjepa quickstart`: the whole pipeline on real fMRI in minutes, with a report."""

from __future__ import annotations

import argparse
from typing import get_args

from brainjepa.bounds import check_value
from brainjepa.report.quickstart import MIN_EPOCHS, STUDY_STEPS, DataChoice, quickstart


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quickstart", help="fetch real fMRI, pretrain a small Brain-JEPA, evaluate it beside baselines, write a report",
        description="Runs data -> gradients -> pretraining -> embeddings -> the evaluation suite (brainjepa "
        "evaluate, on the tasks of the data) on the connattractor heat-pain sample (fetched from PyPI) or on "
        "simulated data, and writes OUT/report.md.",
    )
    p.add_argument("--out", default="runs/quickstart", help="output folder (default: runs/quickstart)")
    p.add_argument("--steps", type=int, default=STUDY_STEPS,
                   help=f"pretraining optimizer steps, rounded up to whole epochs, at least {MIN_EPOCHS} epochs "
                   f"(default {STUDY_STEPS}, the confirmatory study's budget; longer runs on the sample lost "
                   "effective rank, see benchmarks/RESULTS.md)")
    p.add_argument("--minutes", type=float, default=10.0,
                   help="upper bound on pretraining time in minutes: fewer steps when timed steps say --steps "
                   f"would not fit, down to {MIN_EPOCHS} epochs, which run even when they exceed it (default 10)")
    p.add_argument("--data", choices=get_args(DataChoice), default="connattractor",
                   help="real heat-pain task fMRI from PyPI (default) or simulated BOLD with known labels")
    p.add_argument("--cache", help="sample cache folder (default: $BRAINJEPA_CACHE/samples or "
                   "~/.cache/brainjepa/samples); the evaluation's GLM row reads the sample's event files there")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default 0)")
    p.add_argument("--folds", type=int, default=5, help="evaluation suite: subject-grouped folds (default 5)")
    p.add_argument("--seeds", type=int, default=1,
                   help="evaluation suite: repetitions with different splits (default 1, to keep it short)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars (log lines stay)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # A budget that cannot be meant is refused before anything is fetched (a report would state it).
    check_value("--steps", args.steps, integer=True, ge=1)
    check_value("--minutes", args.minutes, gt=0)
    check_value("--folds", args.folds, integer=True, ge=2)
    check_value("--seeds", args.seeds, integer=True, ge=1)
    result = quickstart(args.out, steps=args.steps, minutes=args.minutes, data=args.data, cache=args.cache,
                        seed=args.seed, folds=args.folds, seeds=args.seeds, progress=not args.no_progress)
    print(f"report: {result.report}")
    return 0
