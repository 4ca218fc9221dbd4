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
from brainjepa.report.qc import QC_DIR, run_qc
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
