"""`brainjepa evaluate`: the evaluation suite (real and simulated tasks) for a model beside its baselines."""

from __future__ import annotations

import argparse

from brainjepa.cli.embed import add_embed_arguments, add_model_arguments, embed_options
from brainjepa.errors import ConfigError
from brainjepa.evaluation.suite import DATASETS, TASKS, SuiteOptions, evaluate


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="does pretraining help? score a model beside random-init and FC baselines on a task suite",
        description="Scores the model's frozen embeddings, the same architecture at random init, FC (Fisher-z "
        "correlations) and tangent-space connectivity on every task whose data the model can read: connattractor "
        "(real heat-pain fMRI from PyPI: subject identification, regulation condition, mean pain rating) and a "
        "simulation made to the model's shape (group, coupling). Subject-grouped folds x seeds, paired "
        "differences, intervals from a subject-level bootstrap of the out-of-fold predictions; writes "
        "evaluate.csv, evaluate.md, evaluate_units.csv and evaluate.png into --out. Tasks that cannot run are "
        "skipped with the reason. Example: brainjepa evaluate --model runs/quickstart --out runs/quickstart/evaluate",
    )
    add_model_arguments(p, required=True)
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS), metavar="TASK",
                   help=f"tasks to run (default all: {', '.join(TASKS)})")
    p.add_argument("--out", default="runs/evaluate",
                   help="folder for the table, figure and the suite's stores (default runs/evaluate)")
    p.add_argument("--folds", type=int, default=5, help="outer subject-grouped CV folds (default 5)")
    p.add_argument("--seeds", type=int, default=3, help="repetitions with different splits (default 3)")
    p.add_argument("--head", choices=("linear", "attentive"), default="linear",
                   help="probe of the brainjepa and random-init rows: linear (logistic/ridge regression, default) "
                   "or attentive (learned-query attention over tokens); FC rows always use the linear probe")
    p.add_argument("--pooling", choices=("mean", "roi", "tokens"), default=None,
                   help="pooling of the encoder rows: linear head roi (default, best measured) or mean; attentive "
                   "head tokens (default) or roi")
    p.add_argument("--random-init-seed", type=int, default=0, help="weight seed of the random-init encoder")
    p.add_argument("--confidence", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="subject resamples of the bootstrap behind every interval: subjects are drawn with "
                   "replacement with all their runs, and each score is recomputed (default 2000, at least 100)")
    p.add_argument("--store", action="append", default=[], metavar="NAME=DIR",
                   help=f"use an already prepared store for a data set ({', '.join(DATASETS)}) instead of "
                   "fetching or simulating it; repeatable")
    p.add_argument("--cache", default=None,
                   help="sample cache folder (default: $BRAINJEPA_CACHE/samples or ~/.cache/brainjepa/samples)")
    p.add_argument("--sim-subjects", type=int, default=60,
                   help="subjects of the simulated data set, one run each (default 60)")
    add_embed_arguments(p)
    p.set_defaults(func=run)


def _stores(items: list[str]) -> dict[str, str]:
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ConfigError(f"--store takes NAME=DIR, got {bad[0]!r}")
    return dict(item.split("=", 1) for item in items)


def run(args: argparse.Namespace) -> int:
    options = SuiteOptions(
        tasks=tuple(args.tasks), folds=args.folds, seeds=args.seeds, head=args.head, pooling=args.pooling,
        embed=embed_options(args), random_init_seed=args.random_init_seed, confidence=args.confidence,
        bootstrap=args.bootstrap, sim_subjects=args.sim_subjects, stores=_stores(args.store), cache=args.cache,
    )
    result = evaluate(args.model, args.out, options, gradient=args.gradient, progress=not args.no_progress)
    print(result.to_markdown())
    for res in result.results:
        if res.skipped:
            print(f"skipped {res.task.name}: {res.reason}")
    print(f"\nsaved {args.out}/evaluate.csv, evaluate.md, evaluate_units.csv and evaluate.png")
    return 0
