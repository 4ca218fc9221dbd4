"""Simulated BOLD: determinism, store contents, and that the generative labels are recoverable from FC."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainjepa.cli import main
from brainjepa.data.simulate import (
    DEFAULT_FC_JITTER,
    SimulationConfig,
    StoreStatistics,
    Surrogate,
    SurrogateConfig,
    double_gamma_hrf,
    event_design,
    find_events,
    fit_store_statistics,
    modular_connectome,
    roi_labels,
    simulate_bold,
    simulate_store,
    surrogate_bold,
    surrogate_jitter,
    surrogate_store,
)
from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.errors import ConfigError, DataError
from conftest import cli_call


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


def test_the_seed_sets_the_shared_connectome(cohort):
    """All subjects of one seed share one network, and another seed draws another: the group FC of two halves of a
    cohort agree far more than either half with the same subjects' indices under another seed."""
    bold, _ = cohort
    other, _ = _simulate(subjects=40, rois=16, frames=120, seed=1)
    first, second, reseeded = (_fc_features(b).mean(0) for b in (bold[:20], bold[20:], other[20:]))
    same, across = np.corrcoef(first, second)[0, 1], np.corrcoef(first, reseeded)[0, 1]
    assert same > 0.9 and across < same - 0.3, (same, across)


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
        ({"coupling_min": 0.5, "coupling_max": 0.2}, r"simulation\.coupling_max must be >= coupling_min \(0\.5\)"),
        ({"age_min": 60.0, "age_max": 30.0}, r"simulation\.age_max must be >= age_min \(60\.0\)"),
    ],
)
def test_bad_config(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        next(simulate_bold(SimulationConfig(**kwargs), progress=False))


def test_integration_step_and_transient_are_whole_steps_and_frames():
    """dt is shrunk only when TR is not already a whole number of steps (1.8 / 0.12 is 15 up to rounding), and the
    discarded transient is the fewest whole TRs covering `transient` seconds."""
    cfg = SimulationConfig(tr=1.8, dt=0.12)
    assert cfg.steps_per_tr == 15 and cfg.step == pytest.approx(0.12)
    for tr in (0.72, 0.7, 2.0):
        cfg = SimulationConfig(tr=tr)
        assert (cfg.transient_frames - 1) * tr < cfg.transient <= cfg.transient_frames * tr + 1e-9, tr


def test_hrf_is_the_spm_canonical_shape_at_bin_centres():
    """The HRF is SPM's difference of gamma densities (peak shape 6, undershoot shape 16, ratio 1/6), sampled at the
    centres of `dt` bins: an independent scipy reference."""
    from scipy.stats import gamma

    for dt in (0.1, 0.5):
        t = (np.arange(round(32 / dt)) + 0.5) * dt
        reference = gamma.pdf(t, 6) - gamma.pdf(t, 16) / 6
        np.testing.assert_allclose(double_gamma_hrf(dt), reference / reference.sum(), rtol=1e-9, atol=1e-15)


def test_a_network_without_connections_stays_zero():
    conn, module = modular_connectome(6, 2, p_within=0.0, p_between=0.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(conn, np.zeros((6, 6), np.float32))
    assert list(module) == [0, 0, 0, 1, 1, 1]


def test_group_shift_acts_on_module_0(cohort):
    """In group 1, module 0 crosses the Hopf bifurcation: its ROIs oscillate with a larger amplitude relative to the
    other modules than in group 0."""
    bold, pheno = cohort
    labels = roi_labels(SimulationConfig(subjects=40, rois=16, frames=120, seed=0))
    mod0 = np.array([label.startswith("mod0_") for label in labels])
    sd = bold.std(axis=2)
    relative = sd[:, mod0].mean(axis=1) / sd[:, ~mod0].mean(axis=1)
    group = pheno["group"] == 1
    assert relative[group].mean() > 1.5 * relative[~group].mean(), (relative[group], relative[~group])


def test_bold_scale_does_not_depend_on_the_integration_step():
    """dt is a numerical choice: halving it (Euler-Maruyama noise ~ sqrt(dt), records averaged over their steps)
    keeps the BOLD amplitude of the same subjects. No group shift: every ROI is noise-driven (a self-sustained
    oscillation's amplitude would not depend on the noise)."""
    common = {"subjects": 16, "rois": 8, "frames": 100, "modules": 2, "seed": 0, "group_shift": 0.0}
    coarse, _ = _simulate(**common, dt=0.2)
    fine, _ = _simulate(**common, dt=0.1)
    ratio = fine.std(axis=2).mean() / coarse.std(axis=2).mean()
    assert 0.85 < ratio < 1.15, ratio


# ---------------------------------------------------------------------------------------------- surrogates (--like)
_R, _FRAMES, _TR = 16, 180, 2.0


def _fake_events(frames: int, tr: float, shift: float) -> pd.DataFrame:
    """Alternating heat (12 s) and rating (10 s) blocks every ~36 s, starting at `shift` s."""
    onsets = np.arange(shift, frames * tr - 20, 36.0)
    rows = [(o, 12.0, "heat") for o in onsets] + [(o + 18, 10.0, "rating") for o in onsets]
    return pd.DataFrame(rows, columns=["onset", "duration", "trial_type"]).sort_values("onset")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> tuple[Path, Path]:
    """A store of 12 subjects x 2 runs: subject-specific mixing of per-ROI AR(1) noise (so each subject has its own
    FC), plus heat/rating responses with subject-specific per-ROI betas, demeaned and in units of about 500; and its
    events folder."""
    root = tmp_path_factory.mktemp("surrogate_source")
    rng = np.random.default_rng(0)
    phi = np.linspace(0.3, 0.8, _R)
    base = rng.standard_normal((_R, 4))
    beta = rng.normal(0, 0.8, (2, _R))
    (root / "events").mkdir()
    with StoreWriter(root / "store", _R, roi_labels=[f"roi{i}" for i in range(_R)]) as writer:
        for s in range(12):
            mix = base + 0.6 * rng.standard_normal((_R, 4))
            beta_s = beta + 0.5 * rng.standard_normal((2, _R))
            for run in ("1", "2"):
                events = _fake_events(_FRAMES, _TR, 8.0 + 3 * int(run))
                events.to_csv(root / "events" / f"sub-{s:02d}_task-x_run-{run}_events.tsv", sep="\t", index=False)
                e = rng.standard_normal((_FRAMES, _R)) @ np.eye(_R) + rng.standard_normal((_FRAMES, 4)) @ mix.T
                x = np.zeros_like(e)
                x[0] = e[0]
                for t in range(1, _FRAMES):
                    x[t] = phi * x[t - 1] + e[t]
                x += event_design(events, _FRAMES, _TR, ["heat", "rating"]) @ beta_s * x.std(axis=0)
                x = 500 * (x - x.mean(axis=0))
                writer.add(x.T.astype(np.float32), subject=f"{s:02d}", run=run, tr=_TR)
    return root / "store", root / "events"


def _residuals(x: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GLM of [T, R] on the design + intercept + trend: (betas [K, R], residuals [T, R])."""
    t = len(x)
    full = np.column_stack([design, np.ones(t), np.linspace(-1, 1, t)])
    coef, *_ = np.linalg.lstsq(full, x, rcond=None)
    return coef[: design.shape[1]], x - full @ coef


def _ar1(residuals: list[np.ndarray]) -> np.ndarray:
    return sum((e[1:] * e[:-1]).sum(0) for e in residuals) / sum((e**2).sum(0) for e in residuals)


@pytest.fixture(scope="module")
def surrogates(source) -> tuple[StoreStatistics, list[Surrogate]]:
    stats = fit_store_statistics(source[0], events=source[1], progress=False)
    return stats, list(surrogate_bold(stats, SurrogateConfig(subjects=64, frames=_FRAMES, seed=1), progress=False))


def test_surrogates_match_the_source_fc_ar1_and_scale(source, surrogates):
    stats, subs = surrogates
    store = RunStore(source[0])
    iu = np.triu_indices(_R, 1)
    src_fc = np.mean([np.corrcoef(store.run(i)) for i in range(len(store))], axis=0)
    sur_fc = np.mean([np.corrcoef(s.bold) for s in subs], axis=0)
    assert np.corrcoef(src_fc[iu], sur_fc[iu])[0, 1] > 0.8
    design = stats.design(_FRAMES)
    assert stats.regressors == ["heat", "rating"] and design.shape == (_FRAMES, 2) and stats.runs_with_events == 24
    ar1 = _ar1([_residuals(s.bold.T.astype(np.float64), design)[1] for s in subs])
    np.testing.assert_allclose(ar1, stats.ar1_measured, atol=0.05)
    assert np.corrcoef(ar1, stats.ar1_measured)[0, 1] > 0.9  # the ROI-to-ROI differences (0.3 ... 0.8) are kept
    src_sd = np.sqrt(np.mean([store.run(i).astype(np.float64).var(axis=1) for i in range(len(store))], axis=0))
    sur_sd = np.sqrt(np.mean([s.bold.astype(np.float64).var(axis=1) for s in subs], axis=0))
    np.testing.assert_allclose(sur_sd / src_sd, 1, atol=0.15)
    assert stats.demeaned and np.abs(np.array([s.bold.mean(axis=1) for s in subs])).max() < 1e-2 * src_sd.min()


def test_surrogate_subjects_have_their_own_fc(surrogates):
    """Each surrogate subject has its own FC: the two halves of its run identify it far above chance (1/64)."""
    stats, subs = surrogates
    iu = np.triu_indices(_R, 1)
    half = _FRAMES // 2
    a = np.array([np.arctanh(np.corrcoef(s.bold[:, :half])[iu]) for s in subs])
    b = np.array([np.arctanh(np.corrcoef(s.bold[:, half:])[iu]) for s in subs])
    a, b = a - a.mean(0), b - b.mean(0)
    sim = np.corrcoef(a, b)[: len(subs), len(subs):]
    assert np.mean(sim.argmax(axis=1) == np.arange(len(subs))) > 0.5
    # the auto jitter matches the source's between-subject FC variance
    fcs = np.array([s.fc for s in subs])
    z = np.arctanh(np.clip(fcs[:, iu[0], iu[1]], -0.999999, 0.999999))
    spread = ((z - z.mean(0)) ** 2).mean()
    assert stats.fc_between > 0 and spread == pytest.approx(stats.fc_between, rel=0.3)


def test_surrogate_evoked_betas_are_recovered(surrogates):
    stats, subs = surrogates
    design = stats.design(_FRAMES)
    got = np.array([_residuals(s.bold.T.astype(np.float64), design)[0] for s in subs])  # [S, K, R]
    planted = np.array([s.betas for s in subs])
    assert all(s.evoked == 1 for s in subs)
    assert np.corrcoef(got.ravel(), planted.ravel())[0, 1] > 0.9
    dev_got, dev_planted = got - got.mean(0), planted - planted.mean(0)  # the subject-specific part too
    assert np.corrcoef(dev_got.ravel(), dev_planted.ravel())[0, 1] > 0.5
    group = stats.beta * stats.sd
    assert np.corrcoef(planted.mean(0).ravel(), group.ravel())[0, 1] > 0.95


def test_surrogate_store_is_reproducible_and_labelled(source, tmp_path):
    cfg = SurrogateConfig(subjects=5, frames=40, seed=3, evoked_share=0.5)
    a = surrogate_store(tmp_path / "a", source[0], cfg, events=source[1], progress=False)
    b = surrogate_store(tmp_path / "b", source[0], cfg, events=source[1], progress=False)
    assert (a.path / "data.f32").read_bytes() == (b.path / "data.f32").read_bytes()
    assert a.metadata == b.metadata and a.manifest.equals(b.manifest)
    c = surrogate_store(tmp_path / "c", source[0], dataclasses.replace(cfg, subjects=3), events=source[1],
                        progress=False)
    np.testing.assert_array_equal(c.run(2), a.run(2))  # a subject's data do not depend on how many are drawn
    d = surrogate_store(tmp_path / "d", source[0], dataclasses.replace(cfg, seed=4), events=source[1],
                        progress=False)
    assert not np.array_equal(d.run(0), a.run(0))
    src = RunStore(source[0])
    assert a.num_rois == _R and a.roi_labels == src.roi_labels and {a.tr(i) for i in range(5)} == {_TR}
    assert list(a.manifest["subject"]) == [f"sur{i:04d}" for i in range(5)] and set(a.phenotype("evoked")) <= {0, 1}
    meta = a.metadata["surrogate"]
    assert meta["surrogates"] is True and meta["source_store"] == str(source[0].resolve())
    assert meta["seed"] == 3 and "AR(1)" in meta["method"] and meta["events"]["regressors"] == ["heat", "rating"]
    assert meta["events"]["design_run"] == "sub-00 run-1" and np.shape(meta["events"]["design"]) == (40, 2)


def test_surrogate_events_from_the_sample_cache(source, tmp_path, monkeypatch):
    """A store from `samples prepare` (metadata "sample") finds CACHE/samples/<name>/events by itself."""
    import shutil

    store = tmp_path / "sample_store"
    src = RunStore(source[0])
    with StoreWriter(store, _R) as writer:
        for i in range(4):
            writer.add(src.run(i), subject=src.manifest["subject"].iat[i], run=src.manifest["run"].iat[i], tr=_TR)
        writer.set_metadata("sample", {"name": "fake"})
    assert fit_store_statistics(store, progress=False).regressors == []  # no cache: no events, no evoked part
    shutil.copytree(source[1], tmp_path / "cache" / "samples" / "fake" / "events")
    monkeypatch.setenv("BRAINJEPA_CACHE", str(tmp_path / "cache"))
    stats = fit_store_statistics(store, progress=False)
    assert stats.regressors == ["heat", "rating"] and stats.runs_with_events == 4


def _simulate_parser():
    from brainjepa.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["simulate"]


def test_cli_simulate_like(source, tmp_path, capsys):
    parser = _simulate_parser()
    text = parser.format_help()
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, action.option_strings  # every flag has help text
    for flag in ("--like", "--events", "--fc-jitter", "--evoked-share", "--components", "--frames", "--seed"):
        assert flag in text
    out = tmp_path / "sur"
    argv = ["simulate", "--like", str(source[0]), "--events", str(source[1]), "--subjects", "6", "--out", str(out),
            "--frames", "50", "--no-progress"]
    assert main(argv) == 0
    assert "6 surrogate runs x 16 ROIs x 50 frames" in capsys.readouterr().out
    assert RunStore(out).metadata["surrogate"]["subjects"] == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--like", "MISSING"], "no such store directory"),
        (["--subjects", "0"], "--subjects must be an integer >= 1, got 0"),
        (["--rois", "5"], "--rois cannot be used with --like"),
        (["--events", "MISSING"], "no such events folder"),
        (["--fc-jitter", "-1"], "--fc-jitter must be auto or a number >= 0"),
    ],
)
def test_cli_simulate_like_bad_input(source, tmp_path, capsys, extra, message):
    argv = ["simulate", "--like", str(source[0]), "--out", str(tmp_path / "x"), "--no-progress", *extra]
    argv = [str(tmp_path / a) if a == "MISSING" else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_cli_hopf_flags_reach_the_simulation_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--modules, --batch-size and --seed must reach SimulationConfig: a lost one gives the default data silently."""
    config = cli_call(monkeypatch, "brainjepa.cli.simulate.simulate_store",
                      ["simulate", "--out", str(tmp_path / "sim"), "--subjects", "3", "--modules", "3", "--batch-size",
                       "7", "--seed", "9", "--no-progress"])["config"]
    assert (config.subjects, config.modules, config.batch_size, config.seed) == (3, 3, 7, 9)


def test_cli_like_flags_and_defaults_reach_the_surrogate_config(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """With --like, --evoked-share reaches SurrogateConfig, and frames default to 200 (the help's promise), not
    the Hopf model's 160."""
    given, default = (cli_call(monkeypatch, "brainjepa.cli.simulate.surrogate_store",
                               ["simulate", "--like", "src", "--out", str(tmp_path / "s"), "--no-progress", *extra]
                               )["config"] for extra in (["--evoked-share", "0.4"], []))
    assert given.evoked_share == 0.4 and default.evoked_share == 1.0
    assert default.frames == 200


@pytest.mark.parametrize("flag", ["--components", "--fc-jitter", "--evoked-share", "--events"])
def test_cli_like_only_flags_are_refused_without_like(flag: str, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A --like-only flag given to the Hopf model could not take effect: refused in one line, nothing simulated."""
    monkeypatch.setattr("brainjepa.cli.simulate.simulate_store", lambda *a, **k: pytest.fail("simulated anyway"))
    value = {"--events": str(tmp_path)}.get(flag, "2")
    assert main(["simulate", "--out", str(tmp_path / "sim"), flag, value, "--no-progress"]) == 2
    assert f"{flag} only apply with --like STORE" in capsys.readouterr().err


def _noise_store(path: Path, runs: list[tuple[str, str, float]], *, rois: int = 4, frames: int = 60, seed: int = 0,
                 offset_sd: float = 0.0) -> RunStore:
    """A store of (subject, run, tr) runs: the same mixed white noise for everyone (no subject effect), plus a
    random per-run, per-ROI offset of SD `offset_sd` around 10."""
    rng = np.random.default_rng(seed)
    mix = np.eye(rois) + 0.5 * rng.standard_normal((rois, rois))
    with StoreWriter(path, rois) as writer:
        for subject, run, tr in runs:
            x = mix @ rng.standard_normal((rois, frames)) + 10 + offset_sd * rng.standard_normal((rois, 1))
            writer.add(x.astype(np.float32), subject=subject, run=run, tr=tr)
    return RunStore(path)


@pytest.mark.parametrize("jitter", [float("inf"), float("nan"), True, -0.5, "0.5"])
def test_surrogate_config_refuses_a_bad_fc_jitter(jitter):
    with pytest.raises(ConfigError, match=r"surrogate\.fc_jitter must be auto or a number >= 0"):
        SurrogateConfig(fc_jitter=jitter).validate()


def test_fit_store_statistics_refuses_unusable_stores(tmp_path):
    with StoreWriter(tmp_path / "empty", 4):
        pass
    with pytest.raises(DataError, match=r"empty: the store has no runs to draw surrogates from"):
        fit_store_statistics(tmp_path / "empty", progress=False)
    mixed = _noise_store(tmp_path / "mixed", [("1", "1", 2.0), ("2", "1", 1.0)])
    with pytest.raises(DataError, match=r"surrogates need one known TR for every run, got \[1\.0, 2\.0\]"):
        fit_store_statistics(mixed, progress=False)
    store = _noise_store(tmp_path / "store", [("1", "1", 2.0), ("2", "1", 2.0)])
    (tmp_path / "other").mkdir()
    _fake_events(60, 2.0, 4.0).to_csv(tmp_path / "other" / "sub-7_run-1_events.tsv", sep="\t", index=False)
    with pytest.raises(DataError, match=r"other: no events file matches a run of .*sub-1_run-1_events\.tsv"):
        fit_store_statistics(store, events=tmp_path / "other", progress=False)
    (tmp_path / "untyped").mkdir()
    _fake_events(60, 2.0, 4.0).assign(trial_type="n/a").to_csv(tmp_path / "untyped" / "sub-1_run-1_events.tsv",
                                                                sep="\t", index=False)
    with pytest.raises(DataError, match=r"untyped: the events files have no trial_type values to model"):
        fit_store_statistics(store, events=tmp_path / "untyped", progress=False)


def test_events_files_match_runs_whatever_the_zero_padding(tmp_path):
    """BIDS ids compare without leading zeros: store subject "1" run "1" is the file sub-01_task-x_run-01."""
    store = _noise_store(tmp_path / "store", [("1", "1", 2.0), ("2", "03", 2.0)])
    (tmp_path / "events").mkdir()
    for name in ("sub-01_task-x_run-01_events.tsv", "sub-002_run-3_events.tsv"):
        _fake_events(60, 2.0, 4.0).to_csv(tmp_path / "events" / name, sep="\t", index=False)
    folder, tables = find_events(store, tmp_path / "events")
    assert folder == tmp_path / "events" and sorted(tables) == [0, 1]


def test_event_design_uses_run_onsets_and_clips_events_before_the_run():
    """`onset_run` (run time) wins over `onset` (session time); an event starting before the run counts from 0."""
    frames, tr = 40, 2.0
    plain = pd.DataFrame({"onset": [3.0, 40.0], "duration": [6.0, 8.0], "trial_type": ["heat", "heat"]})
    expected = event_design(plain, frames, tr, ["heat"])
    assert expected.max() > 0.5
    session = plain.assign(onset_run=plain["onset"], onset=plain["onset"] + 300.0)
    np.testing.assert_array_equal(event_design(session, frames, tr, ["heat"]), expected)
    early = pd.DataFrame({"onset": [-3.0, 40.0], "duration": [9.0, 8.0], "trial_type": ["heat", "heat"]})
    clipped = pd.DataFrame({"onset": [0.0, 40.0], "duration": [6.0, 8.0], "trial_type": ["heat", "heat"]})
    np.testing.assert_array_equal(event_design(early, frames, tr, ["heat"]),
                                  event_design(clipped, frames, tr, ["heat"]))


def test_surrogate_fc_is_a_correlation_matrix(surrogates):
    for sub in surrogates[1][:8]:
        np.testing.assert_allclose(np.diag(sub.fc), 1.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(sub.fc, sub.fc.T, rtol=0, atol=1e-12)
        assert np.linalg.eigvalsh(sub.fc).min() > -1e-9 and np.abs(sub.fc).max() <= 1 + 1e-12


def test_auto_jitter_matches_the_between_subject_variance_it_is_given(surrogates):
    """Whatever the source's between-subject FC variance, the auto jitter draws subjects whose FCs spread that much;
    a smaller variance gives a smaller jitter."""
    stats, _ = surrogates
    iu = np.triu_indices(_R, 1)
    config = SurrogateConfig(subjects=64, frames=3, seed=1)
    jitters = []
    for share in (0.25, 0.5, 1.0):
        target = dataclasses.replace(stats, fc_between=share * stats.fc_between)
        jitters.append(surrogate_jitter(target, config))
        fcs = np.array([s.fc for s in surrogate_bold(target, config, progress=False, jitter=jitters[-1])])
        z = np.arctanh(np.clip(fcs[:, iu[0], iu[1]], -0.999999, 0.999999))
        assert ((z - z.mean(0)) ** 2).mean() == pytest.approx(target.fc_between, rel=0.15), share
    assert jitters[0] < jitters[1] < jitters[2]


def test_fc_between_measures_what_subjects_share_not_run_noise(tmp_path):
    """Runs all drawn from one process (no subject effect): the between-subject FC variance, from pairs of runs of
    the same subject, is about 0, far below the run-to-run FC variance."""
    store = _noise_store(tmp_path / "s", [(f"{s}", run, 2.0) for s in range(8) for run in ("1", "2")], frames=100)
    stats = fit_store_statistics(store, progress=False)
    iu = np.triu_indices(store.num_rois, 1)
    z = np.array([np.arctanh(np.corrcoef(store.run(i))[iu]) for i in range(len(store))])
    run_variance = ((z - z.mean(0)) ** 2).mean()
    assert abs(stats.fc_between) < 0.3 * run_variance, (stats.fc_between, run_variance)


def test_surrogates_of_a_store_with_one_run_per_subject_and_no_events(tmp_path):
    """No subject with two runs: the default jitter is used; no events: no subject is evoked; the atlas is kept."""
    store = tmp_path / "src"
    rng = np.random.default_rng(3)
    with StoreWriter(store, 4) as writer:
        for s in range(6):
            writer.add(rng.standard_normal((4, 50)).astype(np.float32), subject=f"{s}", tr=2.0)
        writer.set_metadata("atlas", {"name": "toy", "rois": 4})
    sur = surrogate_store(tmp_path / "sur", store, SurrogateConfig(subjects=5, frames=30), progress=False)
    meta = sur.metadata["surrogate"]
    assert meta["fc_between_source"] is None and meta["fc_jitter_used"] == DEFAULT_FC_JITTER
    assert meta["events"] is None and list(sur.phenotype("evoked")) == [0] * 5
    assert sur.metadata["atlas"] == {"name": "toy", "rois": 4}


def test_only_evoked_surrogates_carry_betas(surrogates):
    stats, _ = surrogates
    subs = list(surrogate_bold(stats, SurrogateConfig(subjects=24, frames=40, seed=2, evoked_share=0.5),
                               progress=False))
    evoked = np.array([s.evoked for s in subs])
    assert 0 < evoked.sum() < len(subs)
    assert all(np.abs(s.betas).min() > 0 if s.evoked else not s.betas.any() for s in subs)


def test_surrogates_of_a_non_demeaned_store_scatter_their_run_means_like_the_source(tmp_path):
    store = _noise_store(tmp_path / "s", [(f"{s}", "1", 2.0) for s in range(16)], offset_sd=5.0)
    stats = fit_store_statistics(store, progress=False)
    assert not stats.demeaned
    means = np.array([s.bold.mean(axis=1) for s in surrogate_bold(stats, SurrogateConfig(subjects=64, frames=60),
                                                                   progress=False)])
    np.testing.assert_allclose(means.mean(axis=0), stats.mean, atol=3.0)
    ratio = means.std(axis=0).mean() / stats.mean_sd.mean()
    assert 0.7 < ratio < 1.3, ratio
