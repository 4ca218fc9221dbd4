"""Figures for the quickstart report and `brainjepa evaluate` (matplotlib, Agg backend, PNG). Each function writes
one file atomically (a reader never sees half a PNG; a full disk leaves the old one) and returns it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainjepa.io import atomic_write

if TYPE_CHECKING:
    from brainjepa.evaluation.results import SuiteResult


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    """Write `fig` as PNG to `out` through a temporary file, then close it."""
    try:
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        _plt().close(fig)
    return Path(out)


def gradients_figure(gradient: np.ndarray, out: Path, roi_labels: list[str] | None = None) -> Path:
    """First three gradients: a G1-G2 scatter coloured by G3, and each gradient's ROI values sorted by G1."""
    plt = _plt()
    g = np.asarray(gradient)[:, :3]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    sc = axes[0].scatter(g[:, 0], g[:, 1], c=g[:, 2], cmap="coolwarm", s=18)
    fig.colorbar(sc, ax=axes[0], label="gradient 3")
    axes[0].set(xlabel="gradient 1", ylabel="gradient 2", title=f"brain gradients of {len(g)} ROIs")
    order = np.argsort(g[:, 0])
    im = axes[1].imshow(g[order].T, aspect="auto", cmap="coolwarm", interpolation="nearest")
    axes[1].set(yticks=[0, 1, 2], yticklabels=["G1", "G2", "G3"], xlabel="ROIs sorted by G1",
                title="gradient values per ROI")
    fig.colorbar(im, ax=axes[1])
    fig.tight_layout()
    return _save(fig, out)


def mask_figure(grid: np.ndarray, out: Path, patch_size: int) -> Path:
    """One sample's masks on the ROI x time-patch grid: context, target, neither.

    ROIs are drawn grouped by their pattern (context ROIs together, Cross-ROI target ROIs together), which makes
    the blocks visible; the ROI order itself carries no information for the masks.
    """
    plt = _plt()
    grid = np.asarray(grid)
    grid = grid[np.lexsort(grid.T[::-1])]
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colors = ["#eeeeee", "#3b75af", "#e1812c"]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(grid, aspect="auto", cmap=ListedColormap(colors), vmin=0, vmax=2, interpolation="nearest")
    ax.set(xlabel=f"time patch ({patch_size} frames each)", ylabel="ROIs (grouped by mask pattern)",
           title="one sample's masks")
    ax.legend(handles=[Patch(color=c, label=n) for c, n in zip(colors, ["neither", "context", "target"],
                                                                strict=True)],
              loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=3)
    fig.tight_layout()
    return _save(fig, out)


def pca_figure(embeddings: dict[str, np.ndarray], labels: np.ndarray, out: Path, label_name: str) -> Path:
    """First two principal components of each embedding set, points coloured by label."""
    plt = _plt()
    classes = sorted(set(labels.tolist()))
    fig, axes = plt.subplots(1, len(embeddings), figsize=(4.6 * len(embeddings), 4.2), squeeze=False)
    for ax, (name, x) in zip(axes[0], embeddings.items(), strict=True):
        z = (x - x.mean(0)) / (x.std(0) + 1e-8)
        u, s, _ = np.linalg.svd(z, full_matrices=False)
        pcs = u[:, :2] * s[:2]
        share = s[:2] ** 2 / (s**2).sum()
        for c in classes:
            sel = labels == c
            ax.scatter(pcs[sel, 0], pcs[sel, 1], s=16, label=str(c), alpha=0.8)
        ax.set(title=name, xlabel=f"PC1 ({share[0]:.0%})", ylabel=f"PC2 ({share[1]:.0%})")
    axes[0][0].legend(title=label_name, fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def suite_figure(result: SuiteResult, out: Path) -> Path:
    """`brainjepa evaluate`'s figure: per task, every row's score with its interval (filled: above chance, i.e.
    clearing its permutation null), the null's mean to 95th percentile as a grey bar, and the nominal chance level
    as a dashed line."""
    plt = _plt()
    done = [r for r in result.results if not r.skipped]
    fig, axes = plt.subplots(1, len(done), figsize=(max(3.6, 0.42 * _max_rows(done)) * len(done), 4.4),
                             squeeze=False)
    for ax, res in zip(axes[0], done, strict=True):
        st = result.stats[res.task.name]
        names = list(st.scores)
        for i, name in enumerate(names):
            d = st.scores[name]
            if name in st.nulls:
                null = st.nulls[name]
                ax.plot([i, i], [null.mean, null.high], color="0.75", lw=6, solid_capstyle="butt", zorder=1)
            err = [[d.mean - d.low], [d.high - d.mean]] if np.isfinite(d.low) else None
            ax.errorbar([i], [d.mean], yerr=err, fmt="o", capsize=3, color="k", zorder=2,
                        markerfacecolor="k" if st.above_chance(name) else "white")
        ax.axhline(res.chance, ls="--", color="grey", lw=1)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
        ax.set_title(res.task.name, fontsize=9)
        ax.set_ylabel(res.metric)
    fig.text(0.01, 0.01, "filled: above chance (clears its permutation null); grey bar: null mean to 95th "
             "percentile; dashed: nominal chance", fontsize=7)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return _save(fig, out)


def _max_rows(done: list) -> int:
    return max(len(r.predictions) for r in done)
