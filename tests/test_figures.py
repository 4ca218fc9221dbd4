"""The commands' figures: each is written where its docs say, from the numbers the command computed, and with
matplotlib hidden the command still succeeds, draws nothing and says so in one warning line."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brainjepa.cli import align as align_cli
from brainjepa.cli import main
from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.report import figures
from brainjepa.report.qc import QC_DIR, qc_pages, run_qc
from conftest import tiny_model
from synthetic_derivatives import (
    CTX_NAMES,
    SUB_NAMES,
    cortical_volume,
    subcortical_volume,
    write_label_image,
    write_volume_run,
)

R, FRAMES, SUBJECTS = 8, 40, 16


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors, one thread


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Subject s adds a level z_s to every ROI: `group` (z_s > 0.5) and `score` (50 + 10 z_s) are learnable."""
    path = tmp_path_factory.mktemp("fig") / "store"
    rng = np.random.default_rng(0)
    with StoreWriter(path, R, roi_labels=[f"roi{i}" for i in range(R)]) as writer:
        for s in range(SUBJECTS):
            z = (s + rng.uniform()) / SUBJECTS
            writer.add(rng.standard_normal((R, FRAMES)) + 3.0 * z, subject=f"s{s}", run="1", tr=2.0,
                       phenotypes={"group": int(z > 0.5), "score": 50 + 10 * z})
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    net = tiny_model(R, patch_size=16)
    return str(net.save_pretrained(tmp_path_factory.mktemp("model") / "m"))


def _drawn(path, viz: bool, caplog) -> None:
    """With matplotlib: a real PNG at `path`, no warning. Without: no file, one warning naming the file and extra."""
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "brainjepa[viz]" in r.getMessage()]
    if viz:
        assert not warnings
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 300
    else:
        assert not path.exists()
        named = path.name if path.suffix else f"{path.name}/"  # a folder of pages
        assert len(warnings) == 1 and f"{named} not drawn" in warnings[0].getMessage()


@pytest.fixture(params=[True, False], ids=["viz", "no-viz"])
def viz(request, monkeypatch) -> bool:
    if not request.param:
        monkeypatch.setitem(sys.modules, "matplotlib", None)
    return request.param


# ------------------------------------------------------------------------------------------------------- probe
@pytest.mark.parametrize("label,task", [("group", "classification"), ("score", "regression")])
def test_probe_draws_out_of_fold_predictions_against_the_labels(store, model, tmp_path, viz, caplog, monkeypatch,
                                                                  label, task):
    drawn = {}
    monkeypatch.setattr("brainjepa.cli.probe.probe_figure",
                        lambda results, *a: drawn.update(results) or figures.probe_figure(results, *a))
    out = tmp_path / "probe"
    assert main(["probe", "--data", str(store), "--label", label, "--model", model, "--folds", "2", "--seeds", "2",
                 "--out", str(out), "--no-progress"]) == 0
    _drawn(out / "probe.png", viz, caplog)
    if viz:
        assert list(drawn) == ["brainjepa", "random-init", "FC"]
        truth, predictions = drawn["brainjepa"]
        np.testing.assert_array_equal(truth, RunStore(store).phenotype(label))  # every run, in store order
        assert predictions.shape == (2, SUBJECTS)
        if task == "classification":
            assert set(np.unique(predictions)) <= {0, 1}
        folds = pd.read_csv(out / "probe_folds.csv")
        first = folds[(folds["features"] == "FC") & (folds["seed"] == 0)]
        fc_truth, fc_pred = drawn["FC"]
        # the drawn predictions are the ones scored: seed 0's accuracy / MAE over its folds, weighted by fold size
        score = (fc_pred[0] == fc_truth).mean() if task == "classification" else np.abs(fc_pred[0] - fc_truth).mean()
        metric = "acc" if task == "classification" else "mae"
        assert score == pytest.approx(np.average(first[metric], weights=first["n_test"]))


# ---------------------------------------------------------------------------------------------------- finetune
def test_finetune_draws_its_curves(store, model, tmp_path, viz, caplog, monkeypatch):
    drawn = []
    monkeypatch.setattr("brainjepa.cli.finetune.finetune_figure",
                        lambda *a: drawn.append(a) or figures.finetune_figure(*a))
    out = tmp_path / "ft"
    assert main(["finetune", "--model", model, "--data", str(store), "--label", "group", "--out", str(out),
                 "--folds", "2", "--val-fraction", "0.25", "--epochs", "3", "--batch-size", "4",
                 "--no-checkpoints", "--no-progress"]) == 0
    _drawn(out / "finetune.png", viz, caplog)
    if viz:
        histories, best, task = drawn[0][:3]
        assert task == "classification" and len(histories) == 2
        for k, history in enumerate(histories):  # the curves are the saved history of each fold
            saved = pd.read_csv(out / f"history_fold{k + 1}.csv")
            np.testing.assert_allclose(saved["val_loss"], [row["val_loss"] for row in history])
            assert 1 <= best[k] <= len(history)


# --------------------------------------------------------------------------------------------------- gradients
def test_gradients_draws_beside_its_csv(store, tmp_path, viz, caplog):
    out = tmp_path / "g" / "grads.csv"
    out.parent.mkdir()
    assert main(["gradients", "--data", str(store), "--out", str(out), "--n-components", "3",
                 "--sparsity", "0.5", "--no-progress"]) == 0
    _drawn(tmp_path / "g" / "grads.png", viz, caplog)


def test_gradients_figure_with_fewer_than_three_gradients(tmp_path):
    g = np.random.default_rng(0).standard_normal((12, 2))
    assert figures.gradients_figure(g, tmp_path / "g2.png", [f"r{i}" for i in range(12)]).stat().st_size > 5000
    assert figures.gradients_figure(g[:, :1], tmp_path / "g1.png").stat().st_size > 5000


# ------------------------------------------------------------------------------------------------------- align
def test_align_draws_the_retrieval_curve(tmp_path, viz, caplog, monkeypatch):
    rng = np.random.default_rng(0)
    brain = rng.standard_normal((60, 12)).astype(np.float32)
    other = (brain @ rng.standard_normal((12, 8)) + 0.3 * rng.standard_normal((60, 8))).astype(np.float32)
    np.save(tmp_path / "brain.npy", brain)
    np.save(tmp_path / "other.npy", other)
    curves = {}
    monkeypatch.setattr("brainjepa.cli.align.retrieval_figure",
                        lambda c, path: curves.update(c) or figures.retrieval_figure(c, path))
    out = tmp_path / "al"
    assert main(["align", "--brain", str(tmp_path / "brain.npy"), "--other", str(tmp_path / "other.npy"),
                 "--out", str(out), "--epochs", "20", "--hidden-dim", "32", "--out-dim", "16", "--no-progress"]) == 0
    _drawn(out / "retrieval.png", viz, caplog)
    if viz:
        metrics = json.loads((out / "metrics.json").read_text())
        n = metrics["n_test"]
        for name, key in (("brain -> other", "brain_to_other"), ("other -> brain", "other_to_brain")):
            curve = curves[name]
            assert len(curve) == n and curve[-1] == 1.0 and (np.diff(curve) >= 0).all()
            for k in (1, 5, 10):  # the curve passes through the recalls the command reports
                assert curve[k - 1] == pytest.approx(metrics["recall"][key][str(k)])


def test_recall_curve_is_exact_on_a_known_pairing():
    """Partners identical, every other candidate orthogonal: recall@1 is 1 in both directions."""

    class Identity:
        def encode_brain(self, x):
            return x

        encode_other = encode_brain

    eye = np.eye(5, dtype=np.float32)
    result = type("R", (), {"test_rows": np.arange(5), "projectors": Identity()})()
    curves = align_cli.recall_curves(result, eye, eye)
    assert all((c == 1).all() for c in curves.values())
    shuffled = align_cli.recall_curves(result, eye, eye[[1, 0, 2, 3, 4]])  # rows 0 and 1 swapped partners
    # queries 0 and 1: one better candidate, the partner tied with 3 others -> in the top k with (k - 1) / 4
    np.testing.assert_allclose(shuffled["brain -> other"], [(3 + 2 * (k - 1) / 4) / 5 for k in range(1, 6)])


# ----------------------------------------------------------------------------------------------------- prepare
def _csv_inputs(folder, runs: int = 3) -> None:
    folder.mkdir()
    rng = np.random.default_rng(1)
    for s in range(runs):
        pd.DataFrame(rng.standard_normal((50, 6))).to_csv(folder / f"sub-{s:02d}.csv", index=False, header=False)


def test_prepare_draws_a_qc_page_per_run(tmp_path, viz, caplog, capsys):
    _csv_inputs(tmp_path / "in")
    store = tmp_path / "store"
    args = ["prepare", str(tmp_path / "in"), "--out", str(store), "--tr", "2", "--rois", "6", "--no-progress"]
    assert main(args) == 0
    pages = sorted(p.name for p in (store / QC_DIR).glob("*.png")) if viz else []
    manifest = RunStore(store).manifest
    if viz:
        assert pages == sorted(f"{s}_{r}.png" for s, r in zip(manifest["subject"], manifest["run"], strict=True))
        assert f"drew 3 QC pages in {store / QC_DIR}" in capsys.readouterr().out
        _drawn(store / QC_DIR / pages[0], True, caplog)
    else:
        _drawn(store / QC_DIR, False, caplog)
    assert main([*args, "--overwrite", "--no-qc"]) == 0
    assert not (store / QC_DIR).exists()  # a replaced store's pages are gone with it


@pytest.mark.parametrize(("flags", "bar"), [(["--no-progress"], False), (["--progress"], True)])
def test_prepare_qc_bar_follows_the_flags(flags, bar, tmp_path, capsys):
    _csv_inputs(tmp_path / "in", runs=2)
    assert main(["prepare", str(tmp_path / "in"), "--out", str(tmp_path / "s"), "--tr", "2", "--rois", "6",
                 *flags]) == 0
    assert ("QC pages: 100%" in capsys.readouterr().err) is bar


def test_qc_of_an_fmriprep_run_puts_censored_frames_back(tmp_path):
    atlases = [write_label_image(subcortical_volume(), tmp_path / "tian.nii.gz", SUB_NAMES),
               write_label_image(cortical_volume(), tmp_path / "schaefer.nii.gz", CTX_NAMES)]
    image = write_volume_run(tmp_path / "deriv", "01", "rest", frames=60, outliers=(10, 20), non_steady=2)
    store = tmp_path / "store"
    assert main(["prepare", str(tmp_path / "deriv"), "--fmriprep", "--out", str(store), "--confounds", "scrubbing",
                 *(a for atlas in atlases for a in ("--atlas", str(atlas))), "--no-progress"]) == 0
    data = RunStore(store)
    assert (store / QC_DIR / f"01_{data.manifest['run'][0]}.png").is_file()
    series, traces, censored = run_qc(data.run(0), data.manifest["source"][0], "scrubbing",
                                      int(data.manifest["frames_removed"][0]))
    assert np.flatnonzero(censored).tolist() == [0, 1, 10, 20]
    assert np.isnan(series[:, censored]).all() and np.isfinite(series[:, ~censored]).all()
    fd = pd.read_csv(str(image).replace("_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz",
                                        "_desc-confounds_timeseries.tsv"), sep="\t", na_values="n/a")
    np.testing.assert_array_equal(traces["FD (mm)"], fd["framewise_displacement"])
    assert traces["ROI DVARS (z)"].shape == (60,)
    np.testing.assert_allclose(series[:, ~censored].std(1), 1, rtol=1e-4)  # z-scored stored frames


def test_qc_pages_of_an_fmriprep_store_show_each_runs_own_censoring(tmp_path, monkeypatch, capsys):
    """Two runs of one subject (one censored, one not): each page gets its run's frames back on the original
    timeline, its own framewise displacement and the store's TR; prepare counts the censored frames per run."""
    atlases = [write_label_image(subcortical_volume(), tmp_path / "tian.nii.gz", SUB_NAMES),
               write_label_image(cortical_volume(), tmp_path / "schaefer.nii.gz", CTX_NAMES)]
    images = {"rest": write_volume_run(tmp_path / "deriv", "01", "rest", frames=40, seed=1, non_steady=0),
              "motor": write_volume_run(tmp_path / "deriv", "01", "motor", frames=40, seed=2, outliers=(10, 20),
                                        non_steady=2)}
    pages: list[tuple] = []
    monkeypatch.setattr("brainjepa.report.qc.qc_figure", lambda *a: pages.append(a) or a[4])  # what it would draw
    store = tmp_path / "store"
    assert main(["prepare", str(tmp_path / "deriv"), "--fmriprep", "--out", str(store), "--confounds", "scrubbing",
                 *(a for atlas in atlases for a in ("--atlas", str(atlas))), "--no-progress"]) == 0
    data = RunStore(store)
    removed = data.manifest["frames_removed"]
    assert sorted(removed) == [0, 4]
    assert "removed 4 censored frames in 1 of 2 runs" in capsys.readouterr().out
    assert len(pages) == 2
    for i, (series, traces, censored, tr, _, _) in enumerate(pages):
        image = images[data.manifest["task"][i]]
        assert censored.sum() == removed[i] and series.shape[1] == 40 and tr == data.tr(i) == 2.0
        assert np.isnan(series[:, censored]).all() and np.isfinite(series[:, ~censored]).all()
        fd = pd.read_csv(str(image).replace("_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz",
                                            "_desc-confounds_timeseries.tsv"), sep="\t", na_values="n/a")
        np.testing.assert_array_equal(traces["FD (mm)"], fd["framewise_displacement"])


def test_qc_pages_lie_in_the_qc_folder_whatever_the_ids(tmp_path):
    """A subject id with a space or a slash still gives one page directly in <store>/qc/."""
    with StoreWriter(tmp_path / "store", 3) as writer:
        writer.add(np.random.default_rng(0).standard_normal((3, 20)), subject="site A/007", run="1", tr=0.8)
    (page,) = qc_pages(RunStore(tmp_path / "store"), progress=False)
    assert page.parent == tmp_path / "store" / QC_DIR and page.is_file()


def test_qc_series_and_dvars_follow_their_definitions():
    """Each ROI z-scored (mean 0, std 1); ROI DVARS: root mean square over ROIs of the frame-to-frame change."""
    ts = np.array([[5.0, 7.0, 5.0, 7.0], [-2.0, 2.0, -2.0, 2.0], [0.0, 0.0, 3.0, 3.0]])
    series, traces, censored = run_qc(ts, "run.npy", None)
    np.testing.assert_allclose(series, [[-1, 1, -1, 1], [-1, 1, -1, 1], [-1, -1, 1, 1]], atol=1e-6)
    assert not censored.any() and list(traces) == ["ROI DVARS (z)"]
    np.testing.assert_allclose(traces["ROI DVARS (z)"], [np.nan, np.sqrt(8 / 3), np.sqrt(12 / 3), np.sqrt(8 / 3)],
                               rtol=1e-6)


# ------------------------------------------------------------------------------------------- what is drawn
@pytest.fixture
def kept(monkeypatch) -> list:
    """The figures drawn during a test, kept open instead of written so that their contents can be read."""
    found: list = []
    monkeypatch.setattr(figures, "_save", lambda fig, out: found.append(fig) or out)
    yield found
    import matplotlib.pyplot as plt

    for fig in found:
        plt.close(fig)


def test_a_written_figure_is_closed(tmp_path):
    """prepare draws a page per run: each figure is closed once written (matplotlib keeps open ones alive)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figures.retrieval_figure({"a -> b": np.array([0.5, 1.0])}, tmp_path / "r.png")
    assert (tmp_path / "r.png").is_file() and plt.get_fignums() == before


def test_gradients_figure_draws_g1_against_g2_coloured_by_g3(tmp_path, kept):
    g = np.random.default_rng(0).standard_normal((12, 4))
    labels = [f"roi{i}" for i in range(12)]
    figures.gradients_figure(g, tmp_path / "g.png", labels)
    scatter, image = kept[0].axes[:2]
    np.testing.assert_array_equal(scatter.collections[0].get_offsets(), g[:, :2])
    np.testing.assert_array_equal(scatter.collections[0].get_array(), g[:, 2])
    order = np.argsort(g[:, 0])
    assert sorted(t.get_text() for t in scatter.texts) == sorted(labels[i] for i in [*order[:3], *order[-3:]])
    np.testing.assert_array_equal(image.images[0].get_array(), g[order, :3].T)  # ROIs sorted by G1


def test_mask_figure_groups_the_rois_by_pattern(tmp_path, kept):
    grid = np.array([[1, 2, 0], [0, 0, 0], [1, 2, 0], [2, 2, 2], [0, 0, 0], [1, 2, 0]])
    figures.mask_figure(grid, tmp_path / "m.png", patch_size=16)
    rows = [tuple(r) for r in np.asarray(kept[0].axes[0].images[0].get_array())]
    assert sorted(rows) == sorted(map(tuple, grid))  # every ROI, once
    changes = sum(a != b for a, b in zip(rows[:-1], rows[1:], strict=True))
    assert changes == len(set(rows)) - 1  # each pattern in one block


def test_pca_figure_draws_each_class_on_the_standardised_components(tmp_path, kept):
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.standard_normal((30, 5)) * [1, 2, 3, 4, 5] + 10
    labels = np.repeat(["a", "b", "c"], [5, 10, 15])
    figures.pca_figure({"model": x}, labels, tmp_path / "p.png", "group")
    ax = kept[0].axes[0]
    expected = PCA(2).fit_transform(StandardScaler().fit_transform(x))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "c"]
    for points, c in zip(ax.collections, ["a", "b", "c"], strict=True):
        np.testing.assert_allclose(np.abs(points.get_offsets()), np.abs(expected[labels == c]), rtol=1e-5)


def test_probe_figure_draws_every_seeds_predictions(tmp_path, kept):
    """Classification: the confusion matrix over all seeds, each row as shares of its true class. Regression: each
    run's prediction averaged over seeds against its true value."""
    truth, predictions = np.array([0, 0, 1, 1, 1]), np.array([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]])
    figures.probe_figure({"FC": (truth, predictions)}, "classification", tmp_path / "c.png", "group")
    shares = pd.crosstab(np.tile(truth, 2), predictions.ravel(), normalize="index").to_numpy()
    np.testing.assert_allclose(kept[0].axes[0].images[0].get_array(), shares)
    y, predicted = np.array([1.0, 2.0, 3.0, 4.0]), np.array([[1.0, 2.0, 2.0, 5.0], [3.0, 2.0, 4.0, 3.0]])
    figures.probe_figure({"FC": (y, predicted)}, "regression", tmp_path / "r.png", "score")
    np.testing.assert_allclose(kept[1].axes[0].collections[0].get_offsets(), np.c_[y, predicted.mean(0)])


def test_finetune_figure_marks_the_kept_epoch_of_each_fold(tmp_path, kept):
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": 2 / e + (e == 2), "val_balanced_acc": 0.5 + e / 10}
               for e in (1, 2, 3)]
    figures.finetune_figure([history, history], [1, 3], "classification", tmp_path / "f.png")
    loss_ax, metric_ax = kept[0].axes
    for ax, key in ((loss_ax, "val_loss"), (metric_ax, "val_balanced_acc")):
        dots = [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "o"]
        assert dots == [(1, history[0][key]), (3, history[2][key])]


def test_retrieval_figure_draws_recall_at_k_from_one(tmp_path, kept):
    curves = {"brain -> other": np.array([0.25, 0.5, 1.0, 1.0]), "other -> brain": np.array([0.5, 0.5, 0.75, 1.0])}
    figures.retrieval_figure(curves, tmp_path / "r.png")
    lines = {line.get_label(): line for line in kept[0].axes[0].lines}
    for name, recall in curves.items():
        assert list(lines[name].get_xdata()) == [1, 2, 3, 4] and list(lines[name].get_ydata()) == list(recall)
    # chance: recall@k = k / N, from 1/N at k = 1 to 1 at k = N
    assert list(zip(lines["chance"].get_xdata(), lines["chance"].get_ydata(), strict=True)) == [(1, 0.25), (4, 1)]


def test_qc_figure_shades_the_censored_frames_in_every_panel(tmp_path, kept):
    rng = np.random.default_rng(0)
    censored = np.zeros(12, dtype=bool)
    censored[[0, 1, 5]] = True
    series = rng.standard_normal((4, 12))
    series[:, censored] = np.nan
    traces = {"FD (mm)": rng.uniform(0, 1, 12), "ROI DVARS (z)": rng.uniform(0, 2, 12)}
    figures.qc_figure(series, traces, censored, 2.5, tmp_path / "qc.png", "subject 1, run 1")
    axes = kept[0].axes
    assert len(axes) == 3
    for ax in axes:  # stretches [0, 1] and [5]: from half a frame before the first to half a frame after the last
        spans = sorted((p.get_x(), p.get_x() + p.get_width()) for p in ax.patches)
        assert spans == [(-0.5, 1.5), (4.5, 5.5)]
    for ax, values in zip(axes, traces.values(), strict=False):
        np.testing.assert_array_equal(ax.lines[0].get_ydata(), values)
    assert "3 of 12 frames censored" in axes[0].get_title() and "TR 2.5 s" in axes[-1].get_xlabel()
