"""`brainjepa embed`: frozen Brain-JEPA embeddings of every run of a store, or of files read directly (tables,
arrays, NIfTI or fMRIPrep runs with an atlas), to .npy or .parquet."""

from __future__ import annotations

import argparse
import typing
from typing import Any

from brainjepa.cli.validate import FMRIPREP_FLAGS, add_fmriprep_arguments, fmriprep_options
from brainjepa.data.tables import ORIENTATIONS
from brainjepa.errors import ConfigError
from brainjepa.evaluation.embed import (
    SCORING_PRECISION,
    SCORING_PRECISION_HELP,
    EmbedOptions,
    check_embeddings_path,
    embed_files,
    embed_store,
    save_embeddings,
)
from brainjepa.evaluation.options import option_choices, option_fields
from brainjepa.models import BrainJEPA
from brainjepa.models.encoder import POOLINGS
from brainjepa.runtime import resolve_device


def add_model_arguments(p: argparse.ArgumentParser, *, required: bool) -> None:
    """--model / --gradient (shared with `brainjepa probe` and `brainjepa finetune`)."""
    p.add_argument("--model", required=required,
                   help="save_pretrained folder, pretraining run folder, or official jepa-ep*.pth.tar")
    p.add_argument("--gradient", help="gradient CSV (ROIs x components) for an official .pth.tar checkpoint")


def add_option_arguments(group: argparse._ActionsContainer, options: type,
                         defaults: dict[str, tuple[Any, str]] | None = None) -> None:
    """One flag per setting of the options dataclass `options` (its fields declared with
    `brainjepa.evaluation.options.option`): ``--sampling-rate`` for `sampling_rate`, with the field's default,
    help, metavar and choices and its type's converter; a bool is a switch. `EncoderOptions` gives the flags
    `embed`, `probe` and `finetune` share; `EmbedOptions` adds embedding's own. `defaults`: field -> (default,
    help) where a command's default differs from the dataclass's."""
    hints, choices = typing.get_type_hints(options), option_choices(options)
    for f in option_fields(options):
        flag, kind = f"--{f.name.replace('_', '-')}", _converter(hints[f.name])
        default, text = (defaults or {}).get(f.name, (f.default, f.metadata["help"]))
        if kind is bool:
            group.add_argument(flag, action="store_true", help=text)
        else:
            group.add_argument(flag, type=kind, default=default, choices=choices.get(f.name),
                               metavar=f.metadata["metavar"], help=text)


def option_values(args: argparse.Namespace, options: type) -> dict[str, Any]:
    """The values of the flags `add_option_arguments(group, options)` added, by field name; --device checked."""
    return {f.name: device_option(args.device) if f.name == "device" else getattr(args, f.name)
            for f in option_fields(options)}


def _converter(hint: Any) -> type | None:
    """What argparse converts a flag's text with: int, float or bool from the field's type (optional or not);
    None (the text itself) for a string or a Literal of strings."""
    kinds = [a for a in (typing.get_args(hint) or (hint,)) if a is not type(None)]
    return kinds[0] if len(kinds) == 1 and kinds[0] in (int, float, bool) else None


def add_embed_arguments(p: argparse.ArgumentParser, *, scored: bool = False) -> None:
    """How embeddings are computed (shared with `brainjepa probe` and `evaluate`): the flags of `EmbedOptions`;
    `scored`: the command scores them, so its precision defaults to `scoring_options`' (fp32)."""
    g = p.add_argument_group("embedding")
    add_option_arguments(g, EmbedOptions,
                         {"precision": (SCORING_PRECISION, SCORING_PRECISION_HELP)} if scored else None)
    g.add_argument("--ignore-roi-labels", action="store_true",
                   help="embed even when the data's ROI labels differ from those the model was trained with "
                   "(default: refuse, naming the first differing ROI)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def embed_options(args: argparse.Namespace) -> EmbedOptions:
    """EmbedOptions from the parsed flags."""
    return EmbedOptions(**option_values(args, EmbedOptions), check_roi_labels=not args.ignore_roi_labels)


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
    files.add_argument("--orientation", choices=ORIENTATIONS, default="auto",
                       help="layout of --file tables/arrays: rows are ROIs or rows are frames (default: infer from "
                       "ROI names or the model's ROI count; a square one is refused)")
    files.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                       help="--file tables: the first row is (--header) or is not (--no-header) a header (default: "
                       "decide from the evidence, refuse when it is ambiguous)")
    files.add_argument("--index-col", action=argparse.BooleanOptionalAction, default=None,
                       help="--file tables: the first column is (--index-col) or is not (--no-index-col) an index "
                       "or ROI names (default: decide from the evidence, refuse when it is ambiguous)")
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
    if args.data:  # every reading flag belongs to --file, whichever of them is given
        given = [flag for flag, value in (("--atlas", args.atlas), ("--tr", args.tr is not None),
                                          ("--orientation", args.orientation != "auto"),
                                          ("--header/--no-header", args.header is not None),
                                          ("--index-col/--no-index-col", args.index_col is not None),
                                          ("--fmriprep", args.fmriprep)) if value]
        given += [f"--{k.replace('_', '-')}" for k in FMRIPREP_FLAGS if getattr(args, k) is not None]
        if given:
            raise ConfigError(f"{', '.join(given)}: for --file inputs; a store (--data) is already prepared, with "
                              "its ROIs, TRs and cleaning")
    fmriprep = fmriprep_options(args)
    model = BrainJEPA.load(args.model, gradient=args.gradient)
    if args.file:
        result = embed_files(model, args.file, atlases=args.atlas, tr=args.tr, fmriprep=fmriprep,
                             orientation=args.orientation, header=args.header, index_col=args.index_col,
                             pooling=args.pooling, options=options, progress=not args.no_progress)
    else:
        result = embed_store(model, args.data, pooling=args.pooling, options=options, progress=not args.no_progress)
    out = save_embeddings(result, args.out)
    print(f"embeddings {list(result.embeddings.shape)} -> {out}")
    return 0
