"""`brainjepa probe`: linear probe of a store label on Brain-JEPA embeddings beside random-init and FC."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainjepa.cli.embed import add_embed_arguments, embed_options
from brainjepa.errors import ConfigError
from brainjepa.evaluation.probe import BASELINES, HEADS, POOLINGS_FOR_HEAD, TASK_KINDS, probe_store
from brainjepa.models.encoder import POOLINGS
from brainjepa.report.figures import can_draw, probe_figure

# Flags that act on embedding with a model; with --embeddings they could not take effect, so they are refused.
MODEL_ONLY = ("gradient", "pooling", "random_init_seed", "encoder", "layer", "windows", "sampling_rate", "target_tr",
              "pad", "normalization", "masked_views", "mask_keep", "seed", "batch_size", "device", "precision",
              "ignore_roi_labels")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "probe", help="probe a label: brainjepa vs random-init encoder vs FC",
        description="Standardised features + logistic/ridge regression (C/alpha by inner grouped CV; or "
        "--head attentive: a learned-query attention probe over the tokens), outer folds grouped by subject, "
        "repeated over seeds; prints mean ± std per metric for brainjepa, random-init and FC, and saves probe.csv / "
        "probe.md / probe_folds.csv and probe.png (confusion matrices or predicted vs true values of the out-of-fold "
        "predictions; with the [viz] extra) in --out. Example: brainjepa probe --data sim --label group --model "
        "runs/small --out probe_group",
    )
    p.add_argument("--data", required=True, help="store directory holding the runs and the label column")
    p.add_argument("--label", required=True, help="phenotype column to predict")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", help="model to embed with: save_pretrained / run folder or official .pth.tar")
    src.add_argument("--embeddings", help="embeddings file from `brainjepa embed` (.npy + index or .parquet); "
                     "the random-init baseline is skipped then")
    p.add_argument("--gradient", help="gradient CSV for an official .pth.tar --model")
    p.add_argument("--task", choices=TASK_KINDS, default=None,
                   help="default: inferred (text or <= 10 integer values -> classification)")
    p.add_argument("--groups", default="subject", help="column kept on one side of every split (default subject)")
    p.add_argument("--folds", type=int, default=5, help="outer CV folds (default 5)")
    p.add_argument("--seeds", type=int, default=3, help="repetitions with different splits (default 3)")
    p.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES),
                   help="baselines to probe beside brainjepa (default both; give none to skip)")
    p.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="for brainjepa and random-init: with --head linear "
                   f"({' / '.join(POOLINGS_FOR_HEAD['linear'])}), roi (per-ROI means flattened to R*D features; "
                   "default, chosen in-sample by the recipe study, benchmarks/RESULTS.md), mean over all tokens "
                   "(the reference's downstream pooling) or tokenfc (token FC: Fisher-z ROI x ROI correlation "
                   "of each ROI's centred token trajectory, R(R-1)/2 features); with --head attentive "
                   f"({' / '.join(POOLINGS_FOR_HEAD['attentive'])}), tokens (all R*P tokens, default) or roi "
                   "(R per-ROI tokens)")
    p.add_argument("--head", choices=HEADS, default="linear",
                   help="linear: standardise + logistic/ridge regression (default); attentive: learned-query "
                   "cross-attention over the tokens, then a linear layer, its learning rate, weight decay and "
                   "epochs chosen on held-out training subjects (FC keeps the linear probe)")
    p.add_argument("--random-init-seed", type=int, default=0, help="weight seed of the random-init encoder")
    p.add_argument("--out", default=None, help="folder for probe.csv, probe.md, probe_folds.csv and probe.png")
    add_embed_arguments(p, scored=True)
    p.set_defaults(func=run, model_only={dest: p.get_default(dest) for dest in MODEL_ONLY})


def run(args: argparse.Namespace) -> int:
    if args.embeddings:
        given = [f"--{dest.replace('_', '-')}" for dest, default in args.model_only.items()
                 if getattr(args, dest) != default]
        if given:
            raise ConfigError(f"{' '.join(given)} {'need' if len(given) > 1 else 'needs'} --model: --embeddings gives "
                              "finished embeddings")
    table = probe_store(
        args.data, args.label, model=args.model, embeddings=args.embeddings, gradient=args.gradient,
        task=args.task, groups=args.groups, folds=args.folds, seeds=args.seeds, baselines=args.baselines,
        pooling=args.pooling, options=None if args.embeddings else embed_options(args),
        random_init_seed=args.random_init_seed, head=args.head, out=args.out, progress=not args.no_progress,
    )
    print(f"probe of {args.label!r} ({table.task}), mean ± std over {args.seeds} seeds x {args.folds} folds\n")
    print(table.to_markdown())
    if args.out:
        saved = "probe.csv, probe.md and probe_folds.csv"
        if can_draw("probe.png"):
            probe_figure({name: (res.truth, res.predictions) for name, res in table.results.items()}, table.task,
                         Path(args.out) / "probe.png", args.label)
            saved = "probe.csv, probe.md, probe_folds.csv and probe.png"
        print(f"\nsaved {saved} in {args.out}")
    return 0
