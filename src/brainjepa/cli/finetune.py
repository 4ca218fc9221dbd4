"""`brainjepa finetune`: fine-tune a pretrained encoder on one phenotype column, in subject-grouped folds."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainjepa.cli.embed import add_model_arguments, add_option_arguments, device_option
from brainjepa.evaluation.finetune import FINETUNE_TASKS, FinetuneConfig, finetune
from brainjepa.evaluation.options import EncoderOptions
from brainjepa.report.figures import can_draw, finetune_figure


def register(sub: argparse._SubParsersAction) -> None:
    d = FinetuneConfig()
    p = sub.add_parser(
        "finetune",
        help="fine-tune a pretrained model on a store's phenotype column (k subject-grouped folds)",
        description="Encoder -> mean pool -> LayerNorm -> linear head, trained end to end with AdamW, layer-wise "
        "LR decay, drop path, warmup + cosine and early stopping on a validation split of the training subjects. "
        "Prints mean ± std of the test metrics over folds and writes finetune.csv, finetune.md, "
        "history_fold<k>.csv, fold<k>/ checkpoints and finetune.png (training and validation curves per fold; with "
        "the [viz] extra) to --out.",
    )
    add_model_arguments(p, required=True)
    p.add_argument("--data", required=True, metavar="DIR", help="store directory (brainjepa prepare / simulate)")
    p.add_argument("--label", required=True, metavar="COLUMN", help="phenotype column of the manifest to predict")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--task", choices=FINETUNE_TASKS, default=d.task,
                   help="auto: text or <= 10 integer values are classes, else regression (default auto)")
    p.add_argument("--folds", type=int, default=d.folds, help=f"subject-grouped folds (default {d.folds})")
    p.add_argument("--val-fraction", type=float, default=d.val_fraction,
                   help=f"share of training subjects used for validation / early stopping (default {d.val_fraction})")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"maximum epochs per fold (default {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    p.add_argument("--blr", type=float, default=d.blr,
                   help=f"base LR; peak LR = blr * batch_size / 256 (reference rule; default {d.blr})")
    p.add_argument("--lr", type=float, help="peak learning rate (overrides --blr)")
    p.add_argument("--min-lr", type=float, default=d.min_lr, help=f"final LR of the cosine (default {d.min_lr})")
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs,
                   help=f"linear warmup epochs (default {d.warmup_epochs})")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay,
                   help=f"AdamW weight decay (default {d.weight_decay})")
    p.add_argument("--layer-decay", type=float, default=d.layer_decay,
                   help=f"layer-wise LR decay, 1 = off (default {d.layer_decay})")
    p.add_argument("--drop-path", type=float, default=d.drop_path,
                   help=f"stochastic depth of the last block (default {d.drop_path})")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing,
                   help=f"cross-entropy label smoothing, classification only (default {d.label_smoothing})")
    p.add_argument("--patience", type=int, default=d.patience,
                   help=f"epochs without a better validation loss before stopping, 0 = never (default {d.patience})")
    add_option_arguments(p, EncoderOptions)
    p.add_argument("--grad-checkpointing", action="store_true", help="recompute activations in backward (less memory)")
    p.add_argument("--num-workers", type=int, default=d.num_workers,
                   help="DataLoader workers (default: what the machine has: 0 or 1 on a CPU, CPUs - 1 up to 8 on a "
                   "GPU)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of splits, init, windows and order (default 0)")
    p.add_argument("--no-checkpoints", action="store_true", help="do not write the per-fold best weights")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = FinetuneConfig(
        task=args.task, folds=args.folds, val_fraction=args.val_fraction, epochs=args.epochs,
        batch_size=args.batch_size, blr=args.blr, lr=args.lr, min_lr=args.min_lr, warmup_epochs=args.warmup_epochs,
        weight_decay=args.weight_decay, layer_decay=args.layer_decay, drop_path=args.drop_path,
        label_smoothing=args.label_smoothing, patience=args.patience, encoder=args.encoder,
        sampling_rate=args.sampling_rate, target_tr=args.target_tr, pad=args.pad, normalization=args.normalization,
        precision=args.precision, grad_checkpointing=args.grad_checkpointing, num_workers=args.num_workers,
        seed=args.seed, device=device_option(args.device),
    )
    result = finetune(args.model, args.data, args.label, config=cfg, gradient=args.gradient, out=args.out,
                      save_checkpoints=not args.no_checkpoints, progress=not args.no_progress)
    print(f"fine-tuning {args.label!r} ({result.task}), test metrics over {len(result.folds)} folds:")
    print(result.table())
    wrote = "finetune.csv, finetune.md and history_fold<k>.csv"
    if can_draw("finetune.png"):
        finetune_figure(result.histories, result.best_epochs, result.task, Path(args.out) / "finetune.png")
        wrote = "finetune.csv, finetune.md, history_fold<k>.csv and finetune.png"
    print(f"wrote {wrote} in {args.out}")
    return 0
