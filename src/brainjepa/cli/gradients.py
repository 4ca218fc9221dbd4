"""`brainjepa gradients`: group FC (from a store or a matrix) -> diffusion-map gradients -> headerless CSV."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainjepa.data.gradients import APPROACHES, KERNELS, gradients_file
from brainjepa.data.store import RunStore
from brainjepa.report.figures import can_draw, gradients_figure


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gradients",
        help="compute the [ROIs, gradients] CSV used for gradient positioning",
        description="Group FC (Fisher-z mean of per-run Pearson FC) from a store, or a given symmetric FC matrix, "
        "embedded as BrainSpace's GradientMaps does (diffusion map, same numbers; numpy and scipy only); writes a "
        "headerless CSV with one row per ROI, and beside it a PNG of the first three gradients on the ROIs (same name, "
        ".png; with the [viz] extra).",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="DIR", help="store directory whose runs give the group FC")
    src.add_argument("--fc", metavar="FILE",
                     help="precomputed [R, R] FC matrix (.csv/.tsv/.txt without header, or .npy)")
    p.add_argument("--out", required=True, metavar="FILE", help="output CSV (or .npy), e.g. gradients.csv")
    p.add_argument("--n-components", type=int, default=30, help="number of gradients G (default 30)")
    p.add_argument("--kernel", choices=KERNELS, default="cosine", help="affinity kernel (default cosine)")
    p.add_argument("--sparsity", type=float, default=0.9,
                   help="fraction of smallest entries zeroed per row before the kernel (default 0.9)")
    p.add_argument("--alpha", type=float, default=0.5, help="diffusion-map anisotropy in [0, 1] (default 0.5)")
    p.add_argument("--approach", choices=APPROACHES, default="dm",
                   help="embedding: dm (diffusion map), le (Laplacian eigenmaps) or pca (default dm)")
    p.add_argument("--diffusion-time", type=float, default=0,
                   help="dm only: 0 = multi-scale eigenvalues l / (1 - l) (default), t > 0 = l ** t")
    p.add_argument("--seed", type=int, default=0, help="random state of the eigensolver (default 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    grads = gradients_file(
        args.out,
        store=args.data,
        fc=args.fc,
        n_components=args.n_components,
        kernel=args.kernel,
        sparsity=args.sparsity,
        alpha=args.alpha,
        approach=args.approach,
        diffusion_time=args.diffusion_time,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(f"wrote {args.out}: {grads.shape[0]} ROIs x {grads.shape[1]} gradients")
    figure = Path(args.out).with_suffix(".png")
    if can_draw(figure.name):
        labels = RunStore(args.data).roi_labels if args.data else None
        print(f"drew {gradients_figure(grads, figure, labels)}")
    return 0
