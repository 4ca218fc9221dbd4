"""Normalisers: the reference's robust scaling (checked against a direct numpy computation), z-scores, none."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainjepa.data.normalize import (
    Identity,
    RobustScaler,
    RoiZScore,
    SampleZScore,
    make_normalizer,
    normalizer_from_dict,
)
from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.errors import ConfigError, DataError

R = 5
# (subject, frames): s1 and s3 have two runs, one run is longer than the 4096-frame fit chunk.
RUNS = [("s0", 60), ("s1", 50), ("s1", 70), ("s2", 4200), ("s3", 40), ("s3", 45), ("s4", 55), ("s5", 65)]


def _runs(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(5000, 10000, size=R)  # large ROI offsets, as in raw UKB data
    return [
        (offsets[:, None] + rng.normal(0, 50, size=(R, 1)) + rng.normal(0, 20, size=(R, t))).astype(
            np.float32
        )
        for _, t in RUNS
    ]


@pytest.fixture
def store(tmp_path) -> tuple[RunStore, list[np.ndarray]]:
    runs = _runs()
    with StoreWriter(tmp_path / "s", R, roi_labels=[f"roi{k}" for k in range(R)]) as w:
        for k, ((subject, _), ts) in enumerate(zip(RUNS, runs, strict=True)):
            w.add(ts, subject=subject, run=str(k), tr=0.72)
    return RunStore(tmp_path / "s"), runs


def _reference_stats(runs: list[np.ndarray], indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The reference rule, written out directly: subject ROI temporal means -> median and IQR across subjects."""
    per_subject: dict[str, list[np.ndarray]] = {}
    for i in indices:
        per_subject.setdefault(RUNS[i][0], []).append(runs[i].astype(np.float64).mean(axis=1))
    means = np.stack([np.mean(v, axis=0) for v in per_subject.values()])
    return np.median(means, axis=0), np.percentile(means, 75, axis=0) - np.percentile(means, 25, axis=0)


@pytest.mark.parametrize("indices", [None, [0, 1, 3, 4, 6]])
def test_robust_fit_matches_reference_rule(store, indices):
    st, runs = store
    scaler = RobustScaler.fit(st, indices, progress=False)
    chosen = list(range(len(RUNS))) if indices is None else indices
    med, iqr = _reference_stats(runs, chosen)
    np.testing.assert_allclose(scaler.median, med, rtol=1e-12)
    np.testing.assert_allclose(scaler.iqr, iqr, rtol=1e-9)
    assert scaler.num_subjects == len({RUNS[i][0] for i in chosen}) and scaler.num_runs == len(chosen)
    x = runs[2]
    out = scaler(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, (x - med[:, None]) / iqr[:, None], rtol=1e-5, atol=1e-5)


def test_robust_fit_from_path_equals_fit_from_object(store):
    st, _ = store
    a = RobustScaler.fit(st, progress=False)
    b = make_normalizer("robust", store=st.path, progress=False)
    np.testing.assert_array_equal(a.median, b.median)
    np.testing.assert_array_equal(a.iqr, b.iqr)


def test_robust_stats_round_trip_through_store_metadata(store):
    st, runs = store
    scaler = RobustScaler.fit(st, [0, 1, 2, 3, 5], progress=False)
    st.set_metadata("normalization", scaler.to_dict())
    again = normalizer_from_dict(RunStore(st.path).metadata["normalization"])
    assert isinstance(again, RobustScaler)
    np.testing.assert_array_equal(again.median, scaler.median)
    np.testing.assert_array_equal(again.iqr, scaler.iqr)
    assert (again.num_subjects, again.num_runs) == (scaler.num_subjects, scaler.num_runs)
    np.testing.assert_array_equal(again(runs[0]), scaler(runs[0]))


def test_robust_zero_iqr_names_the_roi(tmp_path):
    rng = np.random.default_rng(1)
    labels = ["a", "b", "c"]
    with StoreWriter(tmp_path / "z", 3, roi_labels=labels) as w:
        for s in range(4):
            ts = rng.normal(size=(3, 20)).astype(np.float32)
            ts[1] = 7.0 + np.tile([1.0, -1.0], 10)  # varies in time, same mean (7) in every subject
            w.add(ts, subject=f"s{s}")
    with pytest.raises(DataError, match=r"IQR of ROI 1 \(b\) across subjects is 0"):
        RobustScaler.fit(tmp_path / "z", progress=False)


def test_robust_single_subject_is_rejected(store):
    st, _ = store
    with pytest.raises(DataError, match=r"IQR of ROI 0 \(roi0\).*and 4 more ROIs"):
        RobustScaler.fit(st, [1, 2], progress=False)  # both runs of s1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"median": [0.0, 1.0], "iqr": [1.0]}, "must be equal 1-D shapes"),
        ({"median": [0.0, np.nan], "iqr": [1.0, 1.0]}, "median of ROI 1 is not finite"),
        ({"median": [0.0, 1.0], "iqr": [1.0, -2.0]}, "IQR of ROI 1 across subjects is -2"),
    ],
)
def test_robust_rejects_bad_statistics(kwargs, message):
    with pytest.raises(DataError, match=message):
        RobustScaler(**kwargs)


def test_robust_rejects_wrong_roi_count():
    scaler = RobustScaler([0.0, 0.0], [1.0, 1.0])
    with pytest.raises(DataError, match="sample has 3 ROIs but the normaliser was fitted on 2"):
        scaler(np.zeros((3, 4)))


def test_robust_fit_needs_runs(store):
    st, _ = store
    with pytest.raises(DataError, match=r"run index 8 out of range \(store has 8 runs\)"):
        RobustScaler.fit(st, [0, 8], progress=False)
    with pytest.raises(DataError, match="no runs selected"):
        RobustScaler.fit(st, [], progress=False)


def test_sample_zscore_matches_reference_formula():
    x = np.random.default_rng(2).normal(3.0, 2.0, size=(6, 40)).astype(np.float32)
    out = SampleZScore()(x)
    t = torch.from_numpy(x)
    expected = ((t - t.mean()) / t.std()).numpy()  # the reference: torch std (unbiased), no epsilon
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert abs(out.mean()) < 1e-6 and abs(out.std(ddof=1) - 1) < 1e-5


def test_roi_zscore_standardises_each_roi():
    x = np.random.default_rng(3).normal(size=(4, 30)) * np.array([[1.0], [5.0], [0.1], [2.0]]) + 100
    out = RoiZScore()(x)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1, ddof=1), 1, rtol=1e-5)
    np.testing.assert_allclose(out[1], (x[1] - x[1].mean()) / x[1].std(ddof=1), rtol=1e-5, atol=1e-6)


def test_zscores_reject_constants_unless_eps():
    x = np.random.default_rng(4).normal(size=(3, 10))
    x[2] = 4.0
    with pytest.raises(DataError, match=r"roi_zscore: constant over time \(std 0\): ROI 2; .* check the run "
                       r"\(brainjepa validate\), or in Python give the normaliser eps > 0"):
        RoiZScore()(x)
    out = RoiZScore(eps=1e-6)(x)
    np.testing.assert_array_equal(out[2], 0)
    assert np.isfinite(out).all()
    with pytest.raises(DataError, match="sample_zscore: the window is constant"):
        SampleZScore()(np.full((3, 10), 2.0))
    np.testing.assert_array_equal(SampleZScore(eps=1e-3)(np.full((3, 10), 2.0)), 0)
    with pytest.raises(DataError, match="needs at least 2 values"):
        RoiZScore()(np.ones((3, 1)))
    with pytest.raises(ConfigError, match="eps must be a finite number >= 0"):
        RoiZScore(eps=-1)


def test_identity_only_casts():
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    out = Identity()(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)
    with pytest.raises(DataError, match=r"expected a \[ROIs, frames\] array, got shape \(12,\)"):
        Identity()(x.ravel())


@pytest.mark.parametrize(
    ("kind", "cls"), [("sample_zscore", SampleZScore), ("roi_zscore", RoiZScore), ("none", Identity)]
)
def test_make_normalizer_and_dict_round_trip(kind, cls):
    norm = make_normalizer(kind, eps=0.5)
    assert type(norm) is cls
    again = normalizer_from_dict(norm.to_dict())
    assert type(again) is cls and again.to_dict() == norm.to_dict()
    x = np.random.default_rng(5).normal(size=(3, 8))
    np.testing.assert_array_equal(again(x), norm(x))


def test_make_normalizer_errors():
    with pytest.raises(ConfigError, match="'robust' needs a store"):
        make_normalizer("robust")
    with pytest.raises(ConfigError, match="unknown normalization 'minmax'"):
        make_normalizer("minmax")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"median": [1.0]}, "with a 'kind' key"),
        ({"kind": "quantile"}, "unknown normalization 'quantile'"),
        ({"kind": "robust", "median": [1.0]}, r"lacks \['iqr'\]"),
        ({"kind": "roi_zscore", "eps": 0.0, "ddof": 0}, r"unknown keys \['ddof'\]"),
    ],
)
def test_normalizer_from_dict_errors(record, message):
    with pytest.raises(ConfigError, match=message):
        normalizer_from_dict(record)


@pytest.mark.parametrize("kind", ["sample_zscore", "roi_zscore", "none"])
def test_input_gain_survives_the_dict_round_trip(kind):
    """The input gain is part of what the encoder saw in pretraining; a normaliser rebuilt from a model config
    without it would feed embedding inputs at another scale."""
    norm = make_normalizer(kind, eps=0.5).with_gain(2.5)
    again = normalizer_from_dict(norm.to_dict())
    assert again.gain == 2.5
    x = np.random.default_rng(6).normal(size=(3, 8))
    np.testing.assert_allclose(again(x), 2.5 * make_normalizer(kind, eps=0.5)(x), rtol=1e-6)


@pytest.mark.parametrize("gain", [0.0, -1.0, float("inf"), float("nan")])
def test_input_gain_must_be_positive_and_finite(gain):
    """A gain of 0 would feed the encoder all-zero inputs; negative or non-finite gains are as wrong."""
    with pytest.raises(ConfigError, match="input gain must be a finite number > 0"):
        SampleZScore().with_gain(gain)


@pytest.mark.parametrize("gain", [True, "2.0", None])
def test_normalizer_record_gain_must_be_a_number(gain):
    """A record's gain of `true` (YAML's yes) or a string is a broken record, not a gain of 1."""
    with pytest.raises(ConfigError, match="gain must be a number"):
        normalizer_from_dict({"kind": "none", "gain": gain})


def test_make_normalizer_passes_eps_and_training_runs(store):
    """make_normalizer is what configs call: its eps must reach the z-scores, and robust statistics must be fitted
    on the training runs given (fitting on every run would leak validation subjects into the statistics)."""
    assert make_normalizer("sample_zscore", eps=0.25).eps == 0.25
    assert make_normalizer("roi_zscore", eps=0.5).eps == 0.5
    st, runs = store
    chosen = [0, 1, 3, 4, 6]
    scaler = make_normalizer("robust", store=st, indices=chosen, progress=False)
    med, iqr = _reference_stats(runs, chosen)
    np.testing.assert_allclose(scaler.median, med, rtol=1e-12)
    np.testing.assert_allclose(scaler.iqr, iqr, rtol=1e-9)
    assert scaler.num_runs == len(chosen)
