"""Gradients: group FC recipe, the numpy/scipy port of BrainSpace's embedding (equal to BrainSpace, on real HCP
FC), gradient file I/O and its errors, CLI."""

from __future__ import annotations

import importlib.util
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from brainjepa.cli import main
from brainjepa.data.gradients import (
    compute_gradients,
    compute_group_fc,
    gradient_affinity,
    gradients_file,
    load_fc,
)
from brainjepa.data.store import StoreWriter
from brainjepa.errors import ConfigError, DataError
from brainjepa.io import load_gradient, save_gradient
from conftest import cli_call

# Schaefer-400 7-network order: parcels per network, left hemisphere then right (CBIG's 400-parcel LUT).
NETWORKS = ["Vis", "SomMot", "DorsAttn", "SalVentAttn", "Limbic", "Cont", "Default"]
COUNTS = [31, 37, 23, 22, 13, 22, 52, 30, 40, 23, 25, 13, 30, 39]


def _hcp_fc(group: str) -> np.ndarray:
    """HCP group FC for Schaefer-400 shipped inside the brainspace wheel (read as a file; brainspace is a test
    dependency only, in [dev])."""
    spec = importlib.util.find_spec("brainspace")
    if spec is None or spec.origin is None:
        pytest.skip("brainspace (the [dev] extra) is not installed")
    matrices = Path(spec.origin).parent / "datasets" / "matrices"
    return load_fc(matrices / group / "schaefer_400_mean_connectivity_matrix.csv")


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Separation of two groups by a score, independent of the score's sign (0.5 = none, 1 = perfect)."""
    from sklearn.metrics import roc_auc_score

    auc = roc_auc_score(positive, scores)
    return max(auc, 1 - auc)


@pytest.fixture(scope="module")
def hcp_gradients() -> tuple[np.ndarray, np.ndarray]:
    return compute_gradients(_hcp_fc("main_group")), compute_gradients(_hcp_fc("holdout_group"))


def test_hcp_gradients_reproducible_and_ordered(hcp_gradients):
    main_g, holdout_g = hcp_gradients
    assert main_g.shape == (400, 30) and holdout_g.shape == (400, 30)
    for k in range(3):
        r = np.corrcoef(main_g[:, k], holdout_g[:, k])[0, 1]
        assert abs(r) >= 0.95, f"G{k + 1}: main vs holdout r = {r:.3f}"
    # Diffusion-map columns are eigenvectors scaled by their eigenvalue, largest first.
    spread = main_g.std(axis=0)
    assert np.all(np.diff(spread[:10]) < 0)


def test_hcp_first_gradients_are_the_known_axes(hcp_gradients):
    g = hcp_gradients[0]
    network = np.repeat(NETWORKS * 2, COUNTS)
    # G1: unimodal (visual, somatomotor) vs transmodal (default mode) cortex.
    uni_or_dmn = np.isin(network, ["Vis", "SomMot", "Default"])
    assert _auc(g[uni_or_dmn, 0], network[uni_or_dmn] == "Default") >= 0.95
    # G2: visual vs somatomotor.
    vis_or_sm = np.isin(network, ["Vis", "SomMot"])
    assert _auc(g[vis_or_sm, 1], network[vis_or_sm] == "Vis") >= 0.95


def _brainspace(fc: np.ndarray, n: int, *, kernel="cosine", sparsity=0.9, alpha=0.5, approach="dm",
                diffusion_time=0, seed=0) -> np.ndarray:
    """BrainSpace's own GradientMaps, as brainjepa called it before the port (no alignment)."""
    gradient_maps = pytest.importorskip("brainspace.gradient").GradientMaps
    gm = gradient_maps(n_components=n, approach=approach, kernel=None if kernel == "none" else kernel,
                       random_state=seed)
    extra = {"alpha": alpha, "diffusion_time": diffusion_time} if approach == "dm" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BrainSpace warns when it symmetrises kernel "none"'s affinity
        gm.fit(fc.copy(), sparsity=sparsity, **extra)
    return gm.gradients_


BRAINSPACE_CASES = [
    {},  # what `brainjepa gradients` and pretrain use
    {"kernel": "normalized_angle"},
    {"kernel": "pearson"},
    {"kernel": "spearman"},
    {"kernel": "gaussian"},
    {"kernel": "none"},
    {"sparsity": 0.0},
    {"sparsity": 0.5, "alpha": 0.0},
    {"alpha": 1.0, "seed": 3},
    {"diffusion_time": 2},
    {"approach": "le"},
    {"approach": "pca"},
]


@pytest.mark.parametrize("settings", BRAINSPACE_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or
                         "defaults")
def test_equals_brainspace_on_hcp_fc(settings):
    fc = _hcp_fc("main_group")
    ours = compute_gradients(fc, 30, **settings)
    theirs = _brainspace(fc, 30, **settings)
    assert ours.shape == theirs.shape == (400, 30)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)  # measured: bitwise equal


@pytest.mark.parametrize("rois", [450, 37])
def test_equals_brainspace_on_simulated_fc(rois):
    rng = np.random.default_rng(rois)
    ts = rng.standard_normal((rois, 12)) @ rng.standard_normal((12, 200)) + rng.standard_normal((rois, 200))
    fc = np.corrcoef(ts)
    n = 30 if rois > 100 else 5
    np.testing.assert_allclose(compute_gradients(fc, n), _brainspace(fc, n), rtol=0, atol=1e-6)


def test_affinity_keeps_each_rows_top_entries():
    fc = _line_fc(20)
    a = gradient_affinity(fc, kernel="none", sparsity=0.75)  # int(20 * 0.25) = 5 entries per row
    assert ((a > 0).sum(axis=1) <= 5).all() and (a >= 0).all()
    with pytest.raises(ConfigError, match=r"keeps int\(20 x 0.01\) = 0 entries per row"):
        gradient_affinity(fc, sparsity=0.99)


def test_gradients_need_neither_brainspace_nor_vtk(monkeypatch, tmp_path):
    for name in ("brainspace", "brainspace.gradient", "vtk"):
        monkeypatch.setitem(sys.modules, name, None)
    np.save(tmp_path / "fc.npy", _line_fc())
    assert main(["gradients", "--fc", str(tmp_path / "fc.npy"), "--out", str(tmp_path / "g.csv"),
                 "--n-components", "3"]) == 0
    assert load_gradient(tmp_path / "g.csv").shape == (40, 3)


def test_asymmetric_fc_is_refused_in_one_line(tmp_path, capsys):
    fc = _line_fc()
    fc[2, 6] += 0.25
    np.savetxt(tmp_path / "fc.csv", fc, delimiter=",")
    assert main(["gradients", "--fc", str(tmp_path / "fc.csv"), "--out", str(tmp_path / "g.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "fc.csv: the FC matrix is not symmetric (max |FC - FC^T| = 0.25, at row 3, column 7)" in err
    assert not (tmp_path / "g.csv").exists()
    fc[2, 6] -= 0.25 - 1e-9  # rounding noise of a written matrix is accepted
    np.savetxt(tmp_path / "fc.csv", fc, delimiter=",")
    assert main(["gradients", "--fc", str(tmp_path / "fc.csv"), "--out", str(tmp_path / "g.csv"),
                 "--n-components", "3"]) == 0


def _store(path: Path, runs: list[np.ndarray]):
    with StoreWriter(path, runs[0].shape[0]) as w:
        for i, ts in enumerate(runs):
            w.add(ts, subject=f"s{i}", tr=2.0)
    from brainjepa.data.store import RunStore

    return RunStore(path)


def test_group_fc_is_fisher_z_mean_of_run_fc(tmp_path):
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((6, 6))
    runs = [(mix @ rng.standard_normal((6, t))).astype(np.float32) for t in (30, 50, 41)]
    fc = compute_group_fc(_store(tmp_path / "s", runs), progress=False)
    expected = np.tanh(np.mean([np.arctanh(np.clip(np.corrcoef(r.astype(np.float64)), -1 + 1e-7, 1 - 1e-7))
                                for r in runs], axis=0))
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(fc, expected, atol=1e-6)
    assert not np.allclose(fc, np.mean([np.corrcoef(r) for r in runs], axis=0), atol=1e-4)  # not a plain r mean


def test_group_fc_rejects_too_short_run(tmp_path):
    runs = [np.random.default_rng(1).standard_normal((4, 2)).astype(np.float32)]
    with pytest.raises(DataError, match=r"subject s0.*2 frames are too few"):
        compute_group_fc(_store(tmp_path / "s", runs), progress=False)


def test_group_fc_diagonal_is_one_and_a_duplicated_roi_stays_near_one(tmp_path: Path) -> None:
    """The diagonal is exactly 1, and two identical ROIs (|r| = 1, clipped just below before arctanh) give a finite
    FC within 1e-6 of 1: the clip must not pull real near-perfect correlations down."""
    rng = np.random.default_rng(5)
    runs = []
    for frames in (40, 60):
        ts = rng.standard_normal((5, frames))
        ts[1] = ts[0]
        runs.append(ts.astype(np.float32))
    fc = compute_group_fc(_store(tmp_path / "s", runs), progress=False)
    assert np.isfinite(fc).all()
    np.testing.assert_array_equal(np.diag(fc), 1.0)
    assert 1 - 1e-6 < fc[0, 1] <= 1


def test_group_fc_edge_stores(tmp_path: Path) -> None:
    """An empty store and a constant ROI are refused by name; 3 frames (the documented minimum) are enough."""
    with StoreWriter(tmp_path / "empty", 4):
        pass
    with pytest.raises(DataError, match=r"empty: the store has no runs"):
        compute_group_fc(tmp_path / "empty", progress=False)
    flat = np.random.default_rng(2).standard_normal((4, 20))
    flat[2] = 1e6 + 1e-3 * flat[2]  # varies in float64 (accepted by the writer), constant once stored as float32
    with pytest.raises(DataError, match=r"subject s0.*FC is undefined because some ROI is constant"):
        compute_group_fc(_store(tmp_path / "flat", [flat]), progress=False)
    short = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    fc = compute_group_fc(_store(tmp_path / "short", [short]), progress=False)
    assert fc.shape == (4, 4) and np.isfinite(fc).all()


def _line_ts(rois: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """ROIs on a line, each mixing 5 latent signals by distance: FC falls off smoothly along the line."""
    pos = np.linspace(0, 1, rois)
    weights = np.exp(-((pos[:, None] - np.linspace(0, 1, 5)[None, :]) ** 2) / (2 * 0.15**2))
    return weights @ rng.standard_normal((5, frames)) + 0.3 * rng.standard_normal((rois, frames))


def _line_fc(rois: int = 40, seed: int = 0) -> np.ndarray:
    return np.corrcoef(_line_ts(rois, 400, np.random.default_rng(seed)))


def _rank_r(a: np.ndarray, b: np.ndarray) -> float:
    return abs(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_cli_from_fc_file_and_from_store(tmp_path):
    fc = _line_fc()
    np.savetxt(tmp_path / "fc.csv", fc, delimiter=",")
    out = tmp_path / "g.csv"
    assert main(["gradients", "--fc", str(tmp_path / "fc.csv"), "--out", str(out), "--n-components", "5"]) == 0
    written = np.loadtxt(out, delimiter=",")  # headerless, comma-separated, [R, G]
    assert written.shape == (40, 5)
    np.testing.assert_allclose(written, compute_gradients(fc, 5), rtol=1e-12, atol=1e-12)
    assert _rank_r(written[:, 0], np.arange(40)) > 0.95  # G1 recovers the position along the line

    rng = np.random.default_rng(2)
    _store(tmp_path / "store", [_line_ts(16, 90, rng).astype(np.float32) for _ in range(3)])
    out2 = tmp_path / "g2.npy"
    assert main(["gradients", "--data", str(tmp_path / "store"), "--out", str(out2), "--n-components", "3",
                 "--sparsity", "0.5", "--no-progress"]) == 0
    g = load_gradient(out2, num_rois=16)
    assert g.shape == (16, 3) and g.dtype == np.float32
    assert _rank_r(g[:, 0], np.arange(16)) > 0.9


def test_a_roi_without_connectivity_is_named_one_based():
    """An ROI whose FC row is all zero has no affinity to any ROI: refused, naming its 1-based row."""
    fc = _line_fc()
    fc[3], fc[:, 3] = 0.0, 0.0
    with pytest.raises(DataError, match=r"^1 ROI\(s\) have zero affinity to every ROI \(first: row 4\)"):
        compute_gradients(fc, 4)


def test_gradient_options_change_result_and_seed_is_deterministic():
    fc = _line_fc(seed=3)
    base = compute_gradients(fc, 4, seed=1)
    np.testing.assert_array_equal(base, compute_gradients(fc, 4, seed=1))
    assert not np.allclose(base, compute_gradients(fc, 4, sparsity=0.5))
    assert not np.allclose(base, compute_gradients(fc, 4, alpha=0.0))
    assert compute_gradients(fc, 4, approach="le", kernel="normalized_angle").shape == (40, 4)


@pytest.mark.parametrize(
    ("fc", "kwargs", "error", "message"),
    [
        (np.ones((5, 4)), {}, DataError, r"square \[R, R\], got shape \(5, 4\)"),
        (np.full((6, 6), np.nan), {"n_components": 2}, DataError, "36 NaN/Inf"),
        (np.eye(6), {"n_components": 5}, ConfigError, "between 1 and R - 2 = 4"),
        (np.eye(6), {"n_components": 2, "kernel": "rbf"}, ConfigError, "unknown kernel 'rbf'"),
        (np.eye(6), {"n_components": 2, "approach": "tsne"}, ConfigError, "unknown approach 'tsne'"),
        (np.eye(6), {"n_components": 2, "sparsity": 1.0}, ConfigError, r"sparsity must be in \[0, 1\)"),
        (np.eye(6), {"n_components": 2, "alpha": 2.0}, ConfigError, r"alpha must be in \[0, 1\]"),
        (np.corrcoef(np.random.default_rng(0).standard_normal((20, 64))), {"n_components": 4}, DataError,
         r"sparsity 0\.9 of 20 ROIs the affinity graph is probably disconnected; lower the sparsity "
         r"\(data\.gradient_sparsity for pretrain, --sparsity"),
        (np.eye(6), {"n_components": 2, "approach": "le", "alpha": 1.0}, ConfigError,
         r"^alpha set the diffusion map \(approach dm\), and the approach is le: remove it"),
        (np.eye(6), {"n_components": 2, "approach": "pca", "alpha": 0.0, "diffusion_time": 2}, ConfigError,
         "^alpha and diffusion_time set the diffusion map"),
        (np.ones((4, 4, 4)), {"n_components": 2}, DataError, r"square \[R, R\], got shape \(4, 4, 4\)"),
        (np.eye(6), {"n_components": 0}, ConfigError, "between 1 and R - 2 = 4, got 0"),
        (np.eye(6), {"n_components": 2, "sparsity": -0.1}, ConfigError, r"sparsity must be in \[0, 1\), got -0\.1"),
        (np.eye(6), {"n_components": 2, "alpha": -0.5}, ConfigError, r"alpha must be in \[0, 1\], got -0\.5"),
        (np.eye(6), {"n_components": 2, "diffusion_time": -1}, ConfigError, r"diffusion_time must be >= 0 .*got -1"),
    ],
)
def test_compute_gradients_bad_input(fc, kwargs, error, message):
    with pytest.raises(error, match=message):
        compute_gradients(fc, **kwargs)


def test_load_official_gradient_file(golden_dir):
    official = golden_dir / "gradient_mapping_450.csv"
    g = load_gradient(official, num_rois=450)
    assert g.shape == (450, 30) and g.dtype == np.float32
    assert np.abs(g.mean(axis=0)).max() < 1e-4  # zero-mean columns, as measured in the reference file
    with pytest.raises(DataError, match=r"gradient_mapping_450\.csv: 450 rows but the model has 400 ROIs"):
        load_gradient(official, num_rois=400)


def test_save_load_round_trip(tmp_path):
    g = np.random.default_rng(4).standard_normal((7, 3))
    for name in ("g.csv", "g.npy"):
        save_gradient(tmp_path / name, g)
        np.testing.assert_array_equal(load_gradient(tmp_path / name), g.astype(np.float32))
    assert len((tmp_path / "g.csv").read_text().splitlines()) == 7  # no header line
    np.testing.assert_array_equal(load_gradient(g.tolist()), g.astype(np.float32))


@pytest.mark.parametrize("name", ["g.csv", "g.npy"])
def test_save_gradient_refuses_nan_and_writes_nothing(tmp_path: Path, name: str) -> None:
    """Gradients with NaN/Inf are refused by name before any file is written: a written file would only fail later,
    when a model loads it (or, as .npy, place ROIs at NaN)."""
    g = np.random.default_rng(5).standard_normal((6, 2))
    g[3, 1] = np.nan
    with pytest.raises(DataError, match=rf"{re.escape(name)}: refusing to write gradients with NaN/Inf values"):
        save_gradient(tmp_path / name, g)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1,2\n3,nan\n5,7\n", r"^\S*bad\.csv: 1 NaN/Inf values \(first in row 2, column 2\)$"),
        ("# from BrainSpace\n\n1,2\n3,inf\n5,7\n",
         r"bad\.csv: 1 NaN/Inf values \(first in row 2 \(line 4\), column 2\)"),
        ("g1,g2\n1,2\n3,4\n", r"bad\.csv: row 1 is not numeric \('g1,g2'\); the file has no header line"),
        ("1,2\n3,x4\n5,6\n", r"bad\.csv: row 2, column 2: 'x4' is not a number"),
        ("# header comment\n1,2\n3\n5,6\n", r"bad\.csv: row 2 \(line 3\) has 1 values but row 1 has 2"),
        ("1 2\n3 4\n5 6 7\n", r"bad\.csv: row 3 has 3 values but row 1 has 2"),
        ("\n# only comments\n", r"bad\.csv: no numeric rows"),
        ("1,0.5\n2,0.5\n3,0.5\n", r"bad\.csv: gradient column 2 is constant \(0\.5 in every row\)"),
        ("0,0\n0,0\n0,0\n", r"bad\.csv: gradient column 1 is constant \(0 in every row\)"),
        ("1,2,3\n2,4,1\n3,6,2\n4,8,0\n", r"bad\.csv: the 3 gradient columns are linearly dependent \(rank 2; column 2 "
                                          r"is a combination of columns 1-1\)"),
        ("1,2,3\n4,5,6\n", r"bad\.csv: the 3 gradient columns are linearly dependent \(rank 2; column 3"),
    ],
)
def test_load_gradient_bad_file(tmp_path, content, message):
    (tmp_path / "bad.csv").write_text(content)
    with pytest.raises(DataError, match=message) as caught:
        load_gradient(tmp_path / "bad.csv")
    assert "\n" not in str(caught.value)


def test_gradient_file_with_comments_and_blank_lines_reads(tmp_path):
    (tmp_path / "g.tsv").write_text("# G1\tG2\n1.5\t-2\n\n2\t3  # ROI 2\n-1\t0.25\n")
    np.testing.assert_array_equal(load_gradient(tmp_path / "g.tsv", num_rois=3),
                                  np.array([[1.5, -2], [2, 3], [-1, 0.25]], np.float32))


def test_constant_gradient_file_refused_by_a_command_in_one_line(tmp_path, capsys):
    (tmp_path / "g.csv").write_text("1,2\n" * 8)
    (tmp_path / "c.pth.tar").write_bytes(b"x")  # read after the gradient file
    assert main(["embed", "--gradient", str(tmp_path / "g.csv"), "--model", str(tmp_path / "c.pth.tar"),
                 "--data", str(tmp_path), "--out", str(tmp_path / "e.npy")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "g.csv: gradient column 1 is constant" in err


def test_load_gradient_bad_array_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_gradient(tmp_path / "nope.csv")
    with pytest.raises(DataError, match=r"gradient array: expected a 2-D \[ROIs, gradients\] matrix, got shape \(5,\)"):
        load_gradient(np.zeros(5))
    with pytest.raises(DataError, match="must be square"):
        np.savetxt(tmp_path / "fc.csv", np.ones((3, 2)), delimiter=",")
        load_fc(tmp_path / "fc.csv")


def test_every_cli_flag_reaches_gradients_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each `brainjepa gradients` flag must reach `gradients_file` as the keyword it documents (a lost --alpha or
    --approach would write default gradients without a word)."""
    seen = cli_call(monkeypatch, "brainjepa.cli.gradients.gradients_file",
                    ["gradients", "--fc", "fc.npy", "--out", str(tmp_path / "g.csv"), "--n-components", "4", "--kernel",
                     "normalized_angle", "--sparsity", "0.7", "--alpha", "0.25", "--approach", "le",
                     "--diffusion-time", "2", "--seed", "5", "--no-progress"])
    assert seen == {"out": str(tmp_path / "g.csv"), "store": None, "fc": "fc.npy", "n_components": 4,
                    "kernel": "normalized_angle", "sparsity": 0.7, "alpha": 0.25, "approach": "le",
                    "diffusion_time": 2.0, "seed": 5, "progress": False}


def test_the_cli_figure_names_the_stores_rois(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a store, the figure is given the store's ROI labels (it names the ROIs at both ends of G1)."""
    drawn: dict = {}
    labels = [f"roi{i}" for i in range(6)]
    monkeypatch.setattr("brainjepa.cli.gradients.gradients_file", lambda out, **kwargs: np.ones((6, 3)))
    monkeypatch.setattr("brainjepa.cli.gradients.RunStore", lambda path: type("S", (), {"roi_labels": labels}))
    monkeypatch.setattr("brainjepa.cli.gradients.can_draw", lambda what: True)
    monkeypatch.setattr("brainjepa.cli.gradients.gradients_figure",
                        lambda grads, figure, roi_labels: drawn.update(figure=figure, labels=roi_labels) or figure)
    assert main(["gradients", "--data", "store", "--out", str(tmp_path / "g.csv"), "--no-progress"]) == 0
    assert drawn == {"figure": tmp_path / "g.png", "labels": labels}


@pytest.mark.parametrize(("scale", "noise", "refused"), [(1.0, 1e-4, True), (1e4, 1e-5, False), (1e-3, 1e-7, False)])
def test_symmetry_tolerance_is_relative_to_the_largest_entry_but_at_least_absolute(tmp_path: Path, scale: float,
                                                                                   noise: float, refused: bool) -> None:
    """|FC - FC^T| is allowed up to 1e-6 x max(1, max |FC|): a 1e-4 asymmetry of a correlation matrix is refused, the
    rounding noise of a covariance-scaled matrix and a 1e-7 asymmetry of a small-valued matrix are accepted."""
    fc = _line_fc(12) * scale
    fc[2, 6] += noise
    np.save(tmp_path / "fc.npy", fc)
    if refused:
        with pytest.raises(DataError, match=r"fc\.npy: the FC matrix is not symmetric"):
            load_fc(tmp_path / "fc.npy")
    else:
        np.testing.assert_array_equal(load_fc(tmp_path / "fc.npy"), fc)


def test_fc_file_with_nan_is_refused_naming_the_file_and_cell(tmp_path: Path) -> None:
    fc = _line_fc(6)
    fc[1, 2] = np.nan
    np.savetxt(tmp_path / "fc.csv", fc, delimiter=",")
    with pytest.raises(DataError, match=r"fc\.csv: FC matrix has 1 NaN/Inf entries \(first in row 2, column 3\)"):
        load_fc(tmp_path / "fc.csv")


def test_gradients_file_sources_and_settings(tmp_path: Path) -> None:
    """`gradients_file` takes exactly one source; an FC path may be a Path; an FC array is checked for symmetry; a
    misspelt setting is a ConfigError raised before the store's group FC is computed."""
    fc = _line_fc()
    np.save(tmp_path / "fc.npy", fc)
    store = _store(tmp_path / "s", [_line_ts(40, 60, np.random.default_rng(1)).astype(np.float32)])
    for sources in ({}, {"store": store, "fc": fc}):
        with pytest.raises(DataError, match="give exactly one source of connectivity"):
            gradients_file(tmp_path / "g.csv", **sources, n_components=3)
    grads = gradients_file(tmp_path / "g.csv", fc=tmp_path / "fc.npy", n_components=3)
    np.testing.assert_array_equal(grads, compute_gradients(fc, 3))
    asymmetric = fc.copy()
    asymmetric[0, 5] += 0.1
    with pytest.raises(DataError, match=r"FC array: the FC matrix is not symmetric"):
        gradients_file(tmp_path / "g2.csv", fc=asymmetric, n_components=3)
    with pytest.raises(ConfigError, match=r"gradients_file: .*n_component"):
        gradients_file(tmp_path / "g3.csv", store=store, n_component=3, progress=False)
    assert not (tmp_path / "g2.csv").exists() and not (tmp_path / "g3.csv").exists()
