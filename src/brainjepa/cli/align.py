"""`brainjepa align`: contrastive projectors between brain embeddings and another modality's, with held-out
retrieval recall."""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import numpy as np

from brainjepa.errors import DataError
from brainjepa.evaluation.embed import index_path
from brainjepa.evaluation.multimodal import AlignConfig, AlignResult, align, retrieval_recall
from brainjepa.io import read_matrix
from brainjepa.report.figures import can_draw, retrieval_figure

logger = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "align",
        help="train projectors aligning brain embeddings with another modality (symmetric InfoNCE)",
        description="Rows of --brain and --other are paired (same subject). Trains one projector per side "
        "with a symmetric InfoNCE loss, holds out whole subjects, and reports retrieval recall@1/5/10 in both "
        "directions against a measured null (the held-out partners shuffled) and chance (k / N_test). Writes "
        "projectors.safetensors, projectors.json, metrics.json and retrieval.png (recall@k for every k on the "
        "held-out rows; with the [viz] extra) to --out.",
    )
    p.add_argument("--brain", required=True, metavar="FILE",
                   help="brain embeddings [N, D] (.npy, or a headerless CSV/TSV)")
    p.add_argument("--other", required=True, metavar="FILE",
                   help="other-modality embeddings [N, D'] (.npy, or a headerless CSV/TSV)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--subjects", metavar="FILE",
                   help="text file with one subject id per row, to keep a subject's rows together "
                   "(default: the subject column of <brain>.index.csv, which `brainjepa embed` writes beside a .npy; "
                   "without one, every row is its own subject)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of subjects held out (default 0.2)")
    p.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    p.add_argument("--batch-size", type=int, default=128, help="rows per batch = InfoNCE candidates (default 128)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    p.add_argument("--hidden-dim", type=int, default=1024, help="projector hidden width (default 1024)")
    p.add_argument("--out-dim", type=int, default=512, help="shared-space width (default 512)")
    p.add_argument("--dropout", type=float, default=0.1, help="projector dropout (default 0.1)")
    p.add_argument("--temperature", type=float, default=0.07, help="initial InfoNCE temperature (default 0.07)")
    p.add_argument("--fixed-temperature", action="store_true", help="keep the temperature fixed instead of learning it")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, init and batch order (default 0)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = AlignConfig(
        hidden_dim=args.hidden_dim, out_dim=args.out_dim, dropout=args.dropout, temperature=args.temperature,
        learn_temperature=not args.fixed_temperature, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, test_fraction=args.test_fraction, seed=args.seed,
    )
    brain, other = _load("--brain", args.brain), _load("--other", args.other)
    subjects = _subjects(args.subjects) if args.subjects is not None else _embed_subjects(args.brain, len(brain))
    result = align(brain, other, subjects=subjects, config=cfg, device=args.device, out=args.out,
                   progress=not args.no_progress)
    m = result.metrics
    print(f"held-out retrieval on {m['n_test']} rows (trained on {m['n_train']}; temperature {m['temperature']:.4f})")
    print("recall@k; its null (the partners shuffled): mean / 95th percentile, and the one-sided p")
    print("| k | brain -> other | its null (p) | other -> brain | its null (p) | nominal chance |")
    print("|---|---|---|---|---|---|")
    for k, chance in m["chance"].items():
        cells = [f"{m['recall'][side][k]:.3f} | {m['null'][side][k]['mean']:.3f} / {m['null'][side][k]['high']:.3f} "
                 f"(p = {m['null'][side][k]['p']:.3f})" for side in ("brain_to_other", "other_to_brain")]
        print(f"| {k} | {' | '.join(cells)} | {chance:.3f} |")
    if can_draw("retrieval.png"):
        retrieval_figure(recall_curves(result, brain, other), Path(args.out) / "retrieval.png")
    print(f"wrote {args.out}")
    return 0


def recall_curves(result: AlignResult, brain: np.ndarray, other: np.ndarray) -> dict[str, np.ndarray]:
    """Held-out recall@k for k = 1..N_test in both directions, from the trained projectors."""
    import torch

    rows = result.test_rows
    with torch.no_grad():
        zb = result.projectors.encode_brain(torch.as_tensor(brain[rows], dtype=torch.float32))
        zo = result.projectors.encode_other(torch.as_tensor(other[rows], dtype=torch.float32))
    ks = tuple(range(1, len(rows) + 1))
    return {name: np.array(list(retrieval_recall(a, b, ks).values()))
            for name, (a, b) in {"brain -> other": (zb, zo), "other -> brain": (zo, zb)}.items()}


def _load(flag: str, path: str) -> np.ndarray:
    """A numeric [N, D] matrix (`brainjepa.io.read_matrix`); errors name the flag and the file."""
    try:
        return read_matrix(path)
    except DataError as err:
        raise DataError(f"{flag}: {err}") from None


def _embed_subjects(brain: str, rows: int) -> np.ndarray | None:
    """The subject ids of the index sidecar `brainjepa embed` writes beside its .npy (``<brain>.index.csv``), one per
    row, or None without one: a subject's runs then stay on one side of the split, as with --subjects."""
    sidecar = index_path(Path(brain))
    if not sidecar.is_file():
        return None
    try:
        with open(sidecar, newline="", encoding="utf-8") as fh:
            ids = [row["subject"] for row in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, KeyError, csv.Error) as err:
        raise DataError(f"--brain: {sidecar}: cannot read its subject column ({err.__class__.__name__}: {err}); "
                        "give --subjects") from None
    if len(ids) != rows:
        raise DataError(f"--brain: {sidecar} has {len(ids)} subject ids for {rows} rows of {brain}; give --subjects "
                        "(one id per row)")
    logger.info("keeping each subject's rows on one side of the split: %d subjects from %s (--subjects overrides)",
                len(set(ids)), sidecar.name)
    return np.array(ids)


def _subjects(path: str) -> np.ndarray:
    try:
        return np.array(Path(path).read_text().split())
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"--subjects: {path}: cannot read it as a text file of subject ids ({err.__class__.__name__})"
                        ) from None
