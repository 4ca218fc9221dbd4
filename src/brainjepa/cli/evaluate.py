"""`brainjepa evaluate`: the evaluation suite (real and simulated tasks) for a model beside its baselines."""

from __future__ import annotations

import argparse

from brainjepa.cli.embed import add_embed_arguments, embed_options
from brainjepa.errors import ConfigError
from brainjepa.evaluation.probe import HEADS
from brainjepa.evaluation.suite import DATASETS, DEFAULT_TASKS, SPLITS, TASKS, SuiteOptions, evaluate
from brainjepa.models.encoder import POOLINGS
from brainjepa.report.tables import suite_tables


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="does pretraining help? score a model beside random-init, raw, GLM and FC baselines on a "
        "task suite, against permutation nulls",
        description="Scores the model's frozen embeddings (per ROI and as token FC), the same architecture at "
        "random init (several weight seeds), a no-learning patch embedding, the raw window, GLM betas, FC and "
        "tangent-space connectivity, all on the frames the encoders see, on every task whose data the model can "
        "read: connattractor (real heat-pain fMRI from PyPI: subject identification, up- vs down-regulation, "
        "within-subject rating) and a simulation made to the model's shape (group, coupling). Subject-grouped "
        "folds x seeds, a permutation null per row, intervals from a subject (and seed) bootstrap; writes "
        "evaluate.csv, evaluate.md, evaluate_units.csv and evaluate.png into --out. Tasks and rows that cannot run "
        "are skipped with the reason. Example: brainjepa evaluate --model runs/quickstart --out "
        "runs/quickstart/evaluate",
    )
    p.add_argument("--model", required=True, nargs="+", action="extend", metavar="MODEL",
                   help="save_pretrained folder, pretraining run folder, or official jepa-ep*.pth.tar; several "
                   "(repeat --model, or list them) are pretraining seeds of one recipe, averaged with intervals "
                   "over them")
    p.add_argument("--gradient", help="gradient CSV (ROIs x components) for an official .pth.tar checkpoint")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(DEFAULT_TASKS), metavar="TASK",
                   help=f"tasks to run (default: {', '.join(DEFAULT_TASKS)}; connattractor/condition is "
                   "confounded with run 1 and runs only when named)")
    p.add_argument("--out", default="runs/evaluate",
                   help="folder for the table, figure and the suite's stores (default runs/evaluate)")
    p.add_argument("--folds", type=int, default=5, help="outer subject-grouped CV folds (default 5)")
    p.add_argument("--seeds", type=int, default=3, help="repetitions with different splits (default 3)")
    p.add_argument("--head", choices=HEADS, default="linear",
                   help="probe of the encoder token rows: linear (ridge, default) or attentive (learned-query "
                   "attention over tokens, early-stopped on held-out training subjects); other rows are linear")
    p.add_argument("--pooling", nargs="+", choices=POOLINGS, default=None,
                   help="readouts of the encoder rows, one row each: linear head roi (ROI mean) and tokenfc "
                   "(token FC) by default, or mean; attentive head tokens (default) or roi")
    p.add_argument("--random-init-seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                   help="weight seeds of the random-init encoders (default 0 1 2)")
    p.add_argument("--random-init-seed", type=int, default=None, help=argparse.SUPPRESS)  # older single-seed flag
    p.add_argument("--confidence", type=float, default=0.95, help="coverage of the intervals (default 0.95)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="N",
                   help="resamples of the bootstrap behind every interval: subjects (and model seeds) are drawn "
                   "with replacement, and each score is recomputed (default 2000, at least 100)")
    p.add_argument("--permutations", type=int, default=200, metavar="N",
                   help="label permutations of every row's null, the same pipeline refitted on each (default "
                   "200, at least 100)")
    p.add_argument("--split", choices=SPLITS, default="all",
                   help="all subjects (default), or one fixed half: choose settings on 'selection', report them "
                   "on 'report'")
    p.add_argument("--store", action="append", default=[], metavar="NAME=DIR",
                   help=f"use an already prepared store for a data set ({', '.join(DATASETS)}) instead of "
                   "fetching or simulating it; repeatable")
    p.add_argument("--cache", default=None,
                   help="sample cache folder (default: $BRAINJEPA_CACHE/samples or ~/.cache/brainjepa/samples); "
                   "the GLM row reads the sample's event files there")
    p.add_argument("--sim-subjects", type=int, default=60,
                   help="subjects of the simulated data set, one run each (default 60)")
    add_embed_arguments(p, scored=True)
    p.set_defaults(func=run)


def _stores(items: list[str]) -> dict[str, str]:
    bad = [item for item in items if "=" not in item]
    if bad:
        raise ConfigError(f"--store takes NAME=DIR, got {bad[0]!r}")
    return dict(item.split("=", 1) for item in items)


def run(args: argparse.Namespace) -> int:
    options = SuiteOptions(
        tasks=tuple(args.tasks), folds=args.folds, seeds=args.seeds, head=args.head,
        pooling=tuple(args.pooling) if args.pooling else None, embed=embed_options(args),
        random_init_seeds=tuple(args.random_init_seeds), random_init_seed=args.random_init_seed,
        confidence=args.confidence, bootstrap=args.bootstrap, permutations=args.permutations, split=args.split,
        sim_subjects=args.sim_subjects, stores=_stores(args.store), cache=args.cache,
    )
    models = args.model if len(args.model) > 1 else args.model[0]
    result = evaluate(models, args.out, options, gradient=args.gradient, progress=not args.no_progress)
    print(suite_tables(result))
    for res in result.results:
        if res.skipped:
            print(f"skipped {res.task.name}: {res.reason}")
    print(f"\nsaved {args.out}/evaluate.csv, evaluate.md, evaluate_units.csv and evaluate.png")
    return 0
