"""`brainjepa embed`: frozen Brain-JEPA embeddings of every run of a store, or of files read directly (tables,
arrays, NIfTI or fMRIPrep runs with an atlas), to .npy or .parquet."""

from __future__ import annotations

import argparse
from typing import Any

from brainjepa.cli.validate import add_fmriprep_arguments, fmriprep_options
from brainjepa.errors import ConfigError
from brainjepa.evaluation.embed import (
    NORMALIZATIONS,
    EmbedOptions,
    check_embeddings_path,
    embed_files,
    embed_store,
    load_model,
    save_embeddings,
)
from brainjepa.models.encoder import POOLINGS
from brainjepa.precision import PRECISIONS
from brainjepa.runtime import resolve_device


def add_model_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    """--model / --gradient (shared with `brainjepa probe` and `brainjepa finetune`)."""
    p.add_argument("--model", required=required,
                   help="save_pretrained folder, pretraining run folder, or official jepa-ep*.pth.tar")
    p.add_argument("--gradient", help="gradient CSV (ROIs x components) for an official .pth.tar checkpoint")


def add_window_arguments(g: argparse._ActionsContainer, defaults: Any) -> None:
    """Which encoder and how a run becomes its input windows (shared with `brainjepa probe` and `finetune`):
    --encoder, --sampling-rate, --target-tr, --pad, --normalization, with the defaults of `defaults` (the
    `EmbedOptions` or `FinetuneConfig` whose fields they set)."""
    g.add_argument("--encoder", choices=("target", "context"), default=defaults.encoder,
                   help="EMA target encoder (the reference's downstream choice) or the context encoder "
                   f"(default {defaults.encoder})")
    g.add_argument("--sampling-rate", type=int, default=defaults.sampling_rate,
                   help=f"frame stride inside a window (default {defaults.sampling_rate}; the reference's UKB "
                   "setting is 3)")
    g.add_argument("--target-tr", type=float, default=defaults.target_tr, metavar="SECONDS",
                   help="resample each run to this TR instead of a fixed stride (needs the runs' TR)")
    g.add_argument("--pad", action="store_true",
                   help="repeat the last frame of runs shorter than one window (default: error naming the run)")
    g.add_argument("--normalization", choices=NORMALIZATIONS, default=defaults.normalization,
                   help="per-window normalisation: model (the model's stored normaliser; a per-sample z-score if "
                   f"it has none) or an explicit one (default {defaults.normalization})")


def add_precision_argument(g: argparse._ActionsContainer) -> None:
    """--precision (shared with `brainjepa probe` and `finetune`); see `brainjepa.precision.choose_precision`."""
    g.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="autocast dtype. auto (default): bf16 where it is faster (a GPU with bf16, a CPU with native "
                   "bf16), else fp32; the choice and its reason are logged")


def add_embed_arguments(p: argparse.ArgumentParser) -> None:
    """How embeddings are computed (shared with `brainjepa probe`); see `EmbedOptions`."""
    g = p.add_argument_group("embedding")
    add_window_arguments(g, EmbedOptions())
    g.add_argument("--layer", type=int, default=-1, metavar="BLOCK",
                   help="encoder block whose tokens are pooled, negative from the end (default -1: the last "
                   "block); every block's output gets the final LayerNorm")
    g.add_argument("--windows", type=int, default=1, metavar="K",
                   help="average K evenly spaced windows per run (default 1: the centre window)")
    g.add_argument("--masked-views", type=int, default=0, metavar="V",
                   help="average V random masked views (default 0: the full input)")
    g.add_argument("--mask-keep", type=float, default=0.85,
                   help="fraction of each ROI's time patches a masked view keeps (default 0.85)")
    g.add_argument("--seed", type=int, default=0, help="seed of the masked views (default 0)")
    g.add_argument("--batch-size", type=int, default=32, help="windows per forward pass (default 32)")
    g.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_precision_argument(g)
    g.add_argument("--ignore-roi-labels", action="store_true",
                   help="embed even when the data's ROI labels differ from those the model was trained with "
                   "(default: refuse, naming the first differing ROI)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def embed_options(args: argparse.Namespace) -> EmbedOptions:
    """EmbedOptions from the parsed flags."""
    return EmbedOptions(
        encoder=args.encoder, layer=args.layer, windows=args.windows, sampling_rate=args.sampling_rate,
        target_tr=args.target_tr, pad=args.pad, normalization=args.normalization, masked_views=args.masked_views,
        mask_keep=args.mask_keep, seed=args.seed, batch_size=args.batch_size, device=device_option(args.device),
        precision=args.precision, check_roi_labels=not args.ignore_roi_labels,
    )


def device_option(device: str | None) -> str:
    """--device checked before any work (default: cuda if available, else cpu): a CUDA device this machine does
    not have is refused by the flag's name (`brainjepa.runtime.resolve_device`) instead of failing deep in torch."""
    return str(resolve_device(device, setting="--device"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed", help="embed every run of a store, or files directly, with a pretrained model (.npy or .parquet)",
        description="Embed the runs of a store (--data), or files read directly (--file: CSV/TSV/NPY ROI time "
        "series, a NIfTI run with --atlas, an fMRIPrep run). .npy holds the array plus <out>.index.csv (subject, "
        "run, phenotypes or source, one row per embedding row); .parquet holds those columns plus "
        "emb_0..emb_{D-1}. Example: brainjepa embed --model runs/small --data sim --out emb.npy",
    )
    add_model_arguments(p, required=True)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="store directory (from `brainjepa prepare` or `simulate`)")
    source.add_argument("--file", nargs="+", metavar="PATH",
                        help="files, folders or glob patterns read without a store: tables (CSV/TSV, ROI names in a "
                        "header or first column are compared with the model's), .npy/.npz, 4-D NIfTI (with "
                        "--atlas), fMRIPrep *_desc-preproc_bold.nii.gz / *_bold.dtseries.nii runs (cleaned as the "
                        "fMRIPrep flags say)")
    files = p.add_argument_group("--file inputs")
    files.add_argument("--atlas", action="append", default=[], metavar="FILE|NAME",
                       help="label atlas for NIfTI / fMRIPrep --file runs; repeat to join several in order; names "
                       "such as schaefer400_tians3 (the official 450-ROI order) are fetched once")
    files.add_argument("--tr", type=float, default=None, metavar="SEC",
                       help="TR in seconds of --file runs that carry none (needed with --target-tr)")
    add_fmriprep_arguments(p)
    p.add_argument("--out", required=True, help="output file, .npy or .parquet (parquet needs pyarrow)")
    p.add_argument("--pooling", choices=POOLINGS, default="mean",
                   help="mean over all tokens -> [N, D] (default), per ROI -> [N, R, D], all tokens [N, R*P, D] "
                   "(roi/tokens need .npy), or tokenfc (token FC: Fisher-z ROI x ROI correlation of each ROI's "
                   "centred token trajectory) -> [N, R(R-1)/2]")
    add_embed_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_embeddings_path(args.out, args.pooling)  # before any work
    options = embed_options(args)
    if args.data and (args.atlas or args.tr is not None):
        raise ConfigError("--atlas and --tr are for --file inputs; a store (--data) has its ROIs and TRs already")
    fmriprep = fmriprep_options(args)
    if args.data and fmriprep is not None:
        raise ConfigError("--fmriprep is for --file inputs; a store (--data) is already prepared")
    model = load_model(args.model, gradient=args.gradient)
    if args.file:
        result = embed_files(model, args.file, atlases=args.atlas, tr=args.tr, fmriprep=fmriprep,
                             pooling=args.pooling, options=options, progress=not args.no_progress)
    else:
        result = embed_store(model, args.data, pooling=args.pooling, options=options, progress=not args.no_progress)
    out = save_embeddings(result, args.out)
    print(f"embeddings {list(result.embeddings.shape)} -> {out}")
    return 0
