"""Simulated BOLD: determinism, store contents, and that the generative labels are recoverable from FC."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from brainjepa.cli import main
from brainjepa.data.simulate import (
    SimulationConfig,
    double_gamma_hrf,
    modular_connectome,
    roi_labels,
    simulate_bold,
    simulate_store,
)
from brainjepa.data.store import RunStore
from brainjepa.errors import ConfigError


def _simulate(**kwargs) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    out = list(simulate_bold(SimulationConfig(**kwargs), progress=False))
    bold = np.stack([b for b, _ in out])
    pheno = {k: np.array([p[k] for _, p in out]) for k in out[0][1]}
    return bold, pheno


@pytest.fixture(scope="module")
def cohort() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return _simulate(subjects=40, rois=16, frames=120, seed=0)


def _fc_features(bold: np.ndarray) -> np.ndarray:
    iu = np.triu_indices(bold.shape[1], 1)
    return np.stack([np.arctanh(np.corrcoef(b)[iu]) for b in bold])


def test_group_is_learnable_from_fc(cohort):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    bold, pheno = cohort
    assert 12 <= pheno["group"].sum() <= 28  # both classes present
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1))
    acc = cross_val_score(clf, _fc_features(bold), pheno["group"], cv=StratifiedKFold(5, shuffle=True, random_state=0))
    assert acc.mean() >= 0.8, acc


def test_coupling_raises_mean_fc_and_age_slows_rhythm(cohort):
    bold, pheno = cohort
    mean_fc = np.tanh(_fc_features(bold)).mean(axis=1)
    assert np.corrcoef(pheno["coupling"], mean_fc)[0, 1] > 0.5
    centred = bold - bold.mean(axis=2, keepdims=True)
    power = (np.abs(np.fft.rfft(centred, axis=2)) ** 2).mean(axis=1)
    freqs = np.fft.rfftfreq(bold.shape[2], d=2.0)
    centroid = (power * freqs).sum(axis=1) / power.sum(axis=1)
    assert np.corrcoef(pheno["age"], centroid)[0, 1] < -0.5
    lo, hi = SimulationConfig.coupling_min, SimulationConfig.coupling_max
    assert lo <= pheno["coupling"].min() and pheno["coupling"].max() <= hi


def test_same_seed_same_data_whatever_the_batching():
    a, pa = _simulate(subjects=5, rois=8, frames=30, seed=3, batch_size=2)
    b, pb = _simulate(subjects=5, rois=8, frames=30, seed=3, batch_size=5)
    c, _ = _simulate(subjects=3, rois=8, frames=30, seed=3)  # a subject's data does not depend on the cohort size
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a[:3], c, rtol=1e-4, atol=1e-6)
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    d, _ = _simulate(subjects=5, rois=8, frames=30, seed=4)
    assert not np.allclose(a, d)
    assert a.shape == (5, 8, 30) and a.dtype == np.float32 and np.isfinite(a).all()


def test_store_contents(tmp_path):
    cfg = SimulationConfig(subjects=3, rois=10, frames=25, tr=0.72, modules=3, seed=1)
    store = simulate_store(tmp_path / "sim", cfg, progress=False)
    assert isinstance(store, RunStore) and len(store) == 3 and store.num_rois == 10
    assert store.roi_labels == roi_labels(cfg)
    assert store.roi_labels[:5] == ["mod0_roi0", "mod0_roi1", "mod0_roi2", "mod0_roi3", "mod1_roi0"]
    assert list(store.manifest["subject"]) == ["sim0000", "sim0001", "sim0002"]
    assert [store.frames(i) for i in range(3)] == [25, 25, 25] and store.tr(0) == 0.72
    bold, pheno = _simulate(**dataclasses.asdict(cfg))
    np.testing.assert_array_equal(store.run(2), bold[2])
    np.testing.assert_array_equal(store.phenotype("group"), pheno["group"])
    np.testing.assert_allclose(store.phenotype("coupling"), pheno["coupling"])
    meta = store.metadata["simulation"]
    assert meta["seed"] == 1 and meta["tr"] == 0.72 and meta["group_shift"] == cfg.group_shift
    assert meta["step_used"] == pytest.approx(0.72 / 4)  # dt 0.2 shrunk so that TR is a whole number of steps


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["simulate", "--out", str(out), "--subjects", "4", "--rois", "6", "--frames", "20", "--modules", "2",
            "--no-progress"]
    assert main(argv) == 0
    assert "4 runs x 6 ROIs x 20 frames" in capsys.readouterr().out
    assert RunStore(out).phenotype("age").shape == (4,)
    assert main(argv) == 2  # refuses to overwrite without --overwrite
    assert "already exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--seed", "5"]) == 0


def test_hrf_and_connectome():
    h = double_gamma_hrf(0.1)
    assert h.sum() == pytest.approx(1.0)
    assert 4.5 < (np.argmax(h) + 0.5) * 0.1 < 5.5 and h.min() < 0  # peak near 5 s, then an undershoot
    conn, module = modular_connectome(30, 3, p_within=0.8, p_between=0.05, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(conn, conn.T)
    assert conn.sum(axis=1).mean() == pytest.approx(1.0, rel=1e-5) and np.all(np.diag(conn) == 0)
    same = module[:, None] == module[None, :]
    assert conn[same].mean() > 5 * conn[~same].mean()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rois": 0}, r"simulation\.rois must be an integer >= 1, got 0"),
        ({"frames": 10.5}, r"simulation\.frames must be an integer >= 1, got 10\.5"),
        ({"seed": -1}, r"simulation\.seed must be an integer >= 0, got -1"),
        ({"rois": 3, "modules": 4}, r"simulation\.modules must be at most rois \(3\)"),
        ({"tr": -1.0}, r"simulation\.tr must be a number > 0, got -1\.0"),
        ({"dt": 3.0}, r"simulation\.dt must be at most tr"),
        ({"coupling_max": 5.0}, r"simulation\.dt must be <= 0\.25 / coupling_max"),
        ({"p_within": 1.5}, r"simulation\.p_within must be a number >= 0 and <= 1, got 1\.5"),
        ({"age_slowing": 0.1}, r"simulation\.age_slowing must be < 1 / 30"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        next(simulate_bold(SimulationConfig(**kwargs), progress=False))
