"""Figures of the commands and the quickstart report (matplotlib, the [viz] extra; Agg backend, PNG). Each function
writes one file atomically (a reader never sees half a PNG; a full disk leaves the old one) and returns it.
Commands ask `can_draw` first: without matplotlib they log one warning line and still succeed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainjepa.extras import install_hint, installed
from brainjepa.io import atomic_write

if TYPE_CHECKING:
    from brainjepa.evaluation.results import SuiteResult

logger = logging.getLogger(__name__)


def can_draw(what: str) -> bool:
    """True when matplotlib is installed; otherwise one warning line saying `what` is not drawn and how to get it."""
    if installed("matplotlib"):
        return True
    logger.warning("%s", install_hint(f"{what} not drawn", {"viz": ["matplotlib"]}))
    return False


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    """Write `fig` as PNG to `out` (its folder made if missing) through a temporary file, then close it."""
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        _plt().close(fig)
    return Path(out)


def gradients_figure(gradient: np.ndarray, out: Path, roi_labels: Sequence[str] | None = None) -> Path:
    """First three gradients (fewer if there are fewer): a G1-G2 scatter coloured by G3, with the ROIs at both ends
    of G1 named when `roi_labels` are given, and each gradient's ROI values sorted by G1."""
    plt = _plt()
    g = np.asarray(gradient)[:, :3]
    k = g.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    second = g[:, 1] if k > 1 else np.arange(len(g))
    colour = {"c": g[:, 2], "cmap": "coolwarm"} if k > 2 else {}
    sc = axes[0].scatter(g[:, 0], second, s=18, **colour)
    if colour:
        fig.colorbar(sc, ax=axes[0], label="gradient 3")
    axes[0].set(xlabel="gradient 1", ylabel="gradient 2" if k > 1 else "ROI", title=f"brain gradients of {len(g)} ROIs")
    order = np.argsort(g[:, 0])
    for i in [*order[:3], *order[-3:]] if roi_labels is not None else []:
        axes[0].annotate(str(roi_labels[i]), (g[i, 0], second[i]), fontsize=7)
    im = axes[1].imshow(g[order].T, aspect="auto", cmap="coolwarm", interpolation="nearest")
    axes[1].set(yticks=range(k), yticklabels=[f"G{i + 1}" for i in range(k)], xlabel="ROIs sorted by G1",
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


def _panels(n: int, width: float, height: float):
    """A figure with `n` panels side by side (a flat list of axes)."""
    fig, axes = _plt().subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, list(axes[0])


def probe_figure(results: Mapping[str, tuple[np.ndarray, np.ndarray]], task: str, out: Path, label: str) -> Path:
    """`brainjepa probe`'s figure, one panel per feature set from (true values [N], out-of-fold predictions
    [seeds, N]): a confusion matrix over all seeds, each row as shares of its true class (classification), or
    each run's prediction averaged over seeds against its true value, with the identity line (regression)."""
    fig, axes = _panels(len(results), 4.2, 4.0)
    for ax, (name, (truth, predictions)) in zip(axes, results.items(), strict=True):
        (_confusion if task == "classification" else _scatter)(ax, np.asarray(truth), np.asarray(predictions))
        ax.set_title(f"{name}: {label}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


def _confusion(ax, truth: np.ndarray, predictions: np.ndarray) -> None:
    classes = np.unique(truth)
    true_i = np.searchsorted(classes, np.broadcast_to(truth, predictions.shape).ravel())
    pred_i = np.searchsorted(classes, predictions.ravel())
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(counts, (true_i, pred_i), 1)
    shares = counts / counts.sum(1, keepdims=True)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        ax.text(j, i, f"{shares[i, j]:.2f}\n({n})", ha="center", va="center", fontsize=7,
                color="white" if shares[i, j] > 0.5 else "black")
    names = [str(c) for c in classes]
    ax.set(xticks=range(len(classes)), xticklabels=names, yticks=range(len(classes)), yticklabels=names,
           xlabel="predicted", ylabel="true")


def _scatter(ax, truth: np.ndarray, predictions: np.ndarray) -> None:
    y, pred = truth.astype(np.float64), predictions.astype(np.float64).mean(0)
    ax.scatter(y, pred, s=14, alpha=0.7)
    lo, hi = min(y.min(), pred.min()), max(y.max(), pred.max())
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=1)
    r = np.corrcoef(y, pred)[0, 1] if np.ptp(pred) > 0 else float("nan")
    ax.set(xlabel="true", ylabel=f"predicted (mean over {len(predictions)} seeds)")
    ax.text(0.03, 0.95, f"r = {r:.2f}", transform=ax.transAxes, va="top", fontsize=8)


def finetune_figure(histories: Sequence[Sequence[Mapping[str, float]]], best_epochs: Sequence[int], task: str,
                    out: Path) -> Path:
    """`brainjepa finetune`'s curves: training and validation loss per epoch and fold (one colour per fold, the
    kept epoch marked), and the validation metric (balanced accuracy or Pearson r)."""
    metric = "balanced_acc" if task == "classification" else "pearson_r"
    fig, (loss_ax, metric_ax) = _panels(2, 5.0, 3.8)
    for k, (history, best) in enumerate(zip(histories, best_epochs, strict=True)):
        colour, epochs = f"C{k % 10}", [row["epoch"] for row in history]
        loss_ax.plot(epochs, [row["train_loss"] for row in history], color=colour, label=f"fold {k + 1}")
        loss_ax.plot(epochs, [row["val_loss"] for row in history], color=colour, ls="--")
        metric_ax.plot(epochs, [row[f"val_{metric}"] for row in history], color=colour)
        for ax, key in ((loss_ax, "val_loss"), (metric_ax, f"val_{metric}")):
            ax.plot(best, history[best - 1][key], "o", color=colour)
    loss_ax.set(xlabel="epoch", ylabel="loss", title="training (solid) and validation (dashed) loss")
    metric_ax.set(xlabel="epoch", ylabel=f"validation {metric}", title="dot: epoch whose weights were kept")
    loss_ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def retrieval_figure(curves: Mapping[str, np.ndarray], out: Path) -> Path:
    """`brainjepa align`'s retrieval curve: recall@k for k = 1..N held-out rows, per direction, against chance
    (k / N)."""
    fig, (ax,) = _panels(1, 5.0, 4.0)
    for name, recall in curves.items():
        ax.plot(np.arange(1, len(recall) + 1), recall, label=name)
    n = len(next(iter(curves.values())))
    ax.plot([1, n], [1 / n, 1], ls="--", color="grey", label="chance")
    ax.set(xlabel="k", ylabel="recall@k", ylim=(0, 1.02), title=f"held-out retrieval ({n} rows)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)


def qc_figure(series: np.ndarray, traces: Mapping[str, np.ndarray], censored: np.ndarray, tr: float | None, out: Path,
              title: str) -> Path:
    """`brainjepa prepare`'s QC page of one run: each trace (framewise displacement, ROI DVARS) over the frames,
    then the carpet plot (ROIs x frames, each ROI z-scored); censored frames are shaded red and blank in the
    carpet. `series` [R, T] has NaN columns at the censored frames."""
    plt = _plt()
    fig, axes = plt.subplots(len(traces) + 1, 1, figsize=(10, 1.2 * len(traces) + 3.6), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [1] * len(traces) + [3]})
    axes = list(axes[:, 0])
    frames = np.arange(series.shape[1])
    for ax, (name, values) in zip(axes[:-1], traces.items(), strict=True):
        ax.plot(frames, values, lw=0.8, color="k")
        ax.set_ylabel(name, fontsize=8)
    z = (series - np.nanmean(series, 1, keepdims=True)) / (np.nanstd(series, 1, keepdims=True) + 1e-8)
    axes[-1].imshow(z, aspect="auto", cmap="gray", vmin=-2, vmax=2, interpolation="nearest")
    axes[-1].set(ylabel="ROI", xlabel="frame" + (f" (TR {tr:g} s)" if tr else ""))
    edges = np.diff(np.r_[0, censored.astype(np.int8), 0])  # +1 where a censored stretch starts, -1 after it ends
    for start, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        for ax in axes:
            ax.axvspan(start - 0.5, stop - 0.5, color="red", alpha=0.3, lw=0)
    axes[0].set_title(f"{title}: {int(censored.sum())} of {len(censored)} frames censored", fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.94, bottom=0.1, hspace=0.1)  # tight_layout: 1/3 of the time
    return _save(fig, out)
