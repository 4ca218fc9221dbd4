"""The subject-level (cluster) bootstrap behind `brainjepa evaluate`'s intervals, two-level with model seeds, on
constructed predictions whose answer is known: a perfect method beats chance, identical methods differ by exactly 0,
copies of a subject's runs add no information, a fixed seed repeats, and disagreeing seeds widen the interval."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.metrics import bootstrap_interval, paired_bootstrap


def runs(subjects: int = 20, per_subject: int = 3, seed: int = 0):
    """Binary labels of `per_subject` runs per subject, and the subject of each run."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"sub-{i:02d}" for i in range(subjects)], per_subject)
    return rng.choice(["a", "b"], len(groups)), groups


def noisy(y: np.ndarray, right: float, seeds: int, seed: int = 1) -> np.ndarray:
    """Predictions [seeds, N] that are right with probability `right`, otherwise the other label."""
    rng = np.random.default_rng(seed)
    flip = rng.random((seeds, len(y))) > right
    return np.where(flip, np.where(y == "a", "b", "a"), y)


def test_a_perfect_method_beats_one_at_chance():
    y, g = runs()
    perfect, chance = np.stack([y, y, y]), noisy(y, 0.5, seeds=3)
    d = paired_bootstrap(y, perfect, chance, g, "balanced_acc")
    assert d.differs and d.low > 0 and d.mean > 0.3 and d.n == 20
    assert d.mean == pytest.approx(1 - np.mean([balanced_accuracy_score(y, p) for p in chance]))
    reverse = paired_bootstrap(y, chance, perfect, g, "balanced_acc")
    assert (reverse.mean, reverse.low, reverse.high) == pytest.approx((-d.mean, -d.high, -d.low))


def test_identical_predictions_differ_by_exactly_zero():
    y, g = runs()
    p = noisy(y, 0.7, seeds=2)
    d = paired_bootstrap(y, p, p.copy(), g, "balanced_acc")
    assert (d.mean, d.low, d.high) == (0.0, 0.0, 0.0) and not d.differs
    values = np.random.default_rng(0).normal(size=len(y))
    r = paired_bootstrap(values, values + 1, values + 1, g, "pearson_r")
    assert (r.mean, r.low, r.high) == (0.0, 0.0, 0.0)


def test_copies_of_a_subjects_runs_do_not_narrow_the_interval():
    y, g = runs(subjects=30, per_subject=2)
    p = noisy(y, 0.7, seeds=1)[0]
    subject_level = bootstrap_interval(y, p, g, "balanced_acc")
    copies = [np.repeat(a, 10) for a in (y, p, g)]  # every run of every subject 10 times
    copied = bootstrap_interval(*copies, "balanced_acc")
    assert copied.mean == pytest.approx(subject_level.mean) and copied.n == 30
    width = subject_level.high - subject_level.low
    assert copied.high - copied.low == pytest.approx(width, rel=0.1)
    # A run-level bootstrap (each run its own cluster) would take the copies for evidence and shrink ~sqrt(10)x.
    run_level = bootstrap_interval(copies[0], copies[1], np.arange(len(copies[0])), "balanced_acc")
    assert run_level.high - run_level.low < 0.5 * width


def test_resamples_are_whole_subjects_with_their_runs():
    """The interval equals percentiles of the metric recomputed (scikit-learn) on explicit resamples: subjects
    drawn with replacement, all runs of each drawn subject, averaged over the CV seeds."""
    y, g = runs(subjects=12, per_subject=3)
    p = noisy(y, 0.75, seeds=2)
    n_boot, seed = 200, 5
    got = bootstrap_interval(y, p, g, "balanced_acc", n_boot=n_boot, seed=seed, confidence=0.9)
    names = np.unique(g)
    counts = np.random.default_rng(seed).multinomial(len(names), np.full(len(names), 1 / len(names)), size=n_boot)
    reps = []
    for c in counts:
        idx = np.concatenate([np.tile(np.flatnonzero(g == s), k) for s, k in zip(names, c, strict=True)])
        reps.append(np.mean([balanced_accuracy_score(y[idx], row[idx]) for row in p]))
    assert (got.low, got.high) == pytest.approx(tuple(np.percentile(reps, [5, 95])))
    assert got.mean == pytest.approx(np.mean([balanced_accuracy_score(y, row) for row in p]))


def test_a_fixed_seed_repeats_and_another_seed_draws_other_subjects():
    y, g = runs()
    p = noisy(y, 0.7, seeds=3)
    first, again = (bootstrap_interval(y, p, g, "balanced_acc", seed=3) for _ in range(2))
    assert first == again
    assert bootstrap_interval(y, p, g, "balanced_acc", seed=4) != first


def test_a_balanced_accuracy_interval_stays_within_0_and_1():
    y, g = runs(subjects=8, per_subject=2)
    d = bootstrap_interval(y, noisy(y, 0.95, seeds=3), g, "balanced_acc")
    assert 0.0 <= d.low <= d.mean <= d.high <= 1.0
    perfect = bootstrap_interval(y, y, g, "balanced_acc")
    assert (perfect.mean, perfect.low, perfect.high) == (1.0, 1.0, 1.0)


def test_pearson_r_and_accuracy():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(25), 2)
    truth = 50 + 10 * rng.normal(size=len(g))  # an offset far from 0 must not cost precision
    good, bad = truth + 5 * rng.normal(size=(3, len(g))), 50 + 10 * rng.normal(size=(3, len(g)))
    r = bootstrap_interval(truth, good, g, "pearson_r")
    assert r.mean == pytest.approx(np.mean([np.corrcoef(truth, row)[0, 1] for row in good]))
    assert -1 <= r.low < r.mean < r.high <= 1
    assert paired_bootstrap(truth, good, bad, g, "pearson_r").low > 0
    subjects = np.array(["s1", "s2", "s3", "s4"])
    matched = np.array(["s1", "s2", "s4", "s3"])
    acc = bootstrap_interval(subjects, matched, subjects, "accuracy")
    assert acc.mean == 0.5 and 0 <= acc.low < acc.high <= 1


def test_refusals_and_too_few_subjects():
    y, g = runs(subjects=4, per_subject=1)
    with pytest.raises(ConfigError, match="metric must be one of"):
        bootstrap_interval(y, y, g, "auc")
    with pytest.raises(ConfigError, match="n_boot must be an integer >= 100"):
        bootstrap_interval(y, y, g, "balanced_acc", n_boot=10)
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_interval(y, y, g, "balanced_acc", confidence=95)
    with pytest.raises(DataError, match="do not describe the same units"):
        bootstrap_interval(y, y[:3], g, "balanced_acc")
    with pytest.raises(DataError, match="cannot be paired"):
        paired_bootstrap(y, y, np.stack([y, y]), g, "balanced_acc")
    with pytest.raises(DataError, match="finite"):
        bootstrap_interval(np.array([1.0, np.nan, 2.0, 3.0]), np.ones(4), g, "pearson_r")
    one = bootstrap_interval(y, y, ["s"] * 4, "balanced_acc")
    assert one.n == 1 and one.mean == 1.0 and np.isnan(one.low) and not one.differs


# ------------------------------------------------------------------------------------------ two levels: seeds, subjects
def test_a_single_model_seed_is_the_one_level_bootstrap():
    y, g = runs()
    p = noisy(y, 0.7, seeds=3)
    assert bootstrap_interval(y, p[None], g, "balanced_acc") == bootstrap_interval(y, p, g, "balanced_acc")


def test_the_interval_widens_when_model_seeds_disagree():
    """Three model seeds of the same average quality: agreeing (each right 70% of the time) or not (55, 70 and 85%).
    The point estimate is the seeds' mean score either way; only the two-level interval sees the disagreement."""
    y, g = runs(subjects=40)
    agree = np.stack([noisy(y, 0.7, seeds=2, seed=s) for s in (1, 2, 3)])  # [3 model seeds, 2 CV seeds, N]
    disagree = np.stack([noisy(y, r, seeds=2, seed=s) for s, r in ((1, 0.55), (2, 0.7), (3, 0.85))])
    a, d = (bootstrap_interval(y, p, g, "balanced_acc") for p in (agree, disagree))
    for p, interval in ((agree, a), (disagree, d)):
        assert interval.seeds == 3
        assert interval.mean == pytest.approx(np.mean([[balanced_accuracy_score(y, row) for row in m] for m in p]))
    assert (d.high - d.low) > 1.5 * (a.high - a.low)


def test_paired_differences_take_each_methods_own_seeds():
    y, g = runs(subjects=30)
    pretrained = np.stack([noisy(y, 0.8, seeds=1, seed=s) for s in (1, 2)])  # 2 pretraining seeds
    fresh = np.stack([noisy(y, 0.6, seeds=1, seed=s) for s in (3, 4, 5)])  # 3 random-init seeds
    d = paired_bootstrap(y, pretrained, fresh, g, "balanced_acc")
    assert d.differs and d.seeds == 2 and 0.1 < d.mean < 0.3
    with pytest.raises(DataError, match="cannot be paired"):
        paired_bootstrap(y, pretrained, fresh[:, :, :-1], g, "balanced_acc")


def test_two_methods_model_seeds_are_drawn_independently() -> None:
    """Each method's model seeds come from its own stream: two methods with the same disagreeing seeds do not
    draw the same seeds in every resample, so their difference has an interval of non-zero width (one stream
    for both would cancel the seed variance and give exactly [0, 0])."""
    y, g = runs(subjects=30)
    p = np.stack([noisy(y, r, seeds=1, seed=s) for s, r in ((1, 0.55), (2, 0.7), (3, 0.9))])  # [3, 1, N]
    d = paired_bootstrap(y, p, p.copy(), g, "balanced_acc", n_boot=300)
    assert d.mean == 0.0 and d.high - d.low > 0.01


def test_balanced_accuracy_resamples_average_the_classes_they_hold() -> None:
    """A resample that draws no subject of a rare class scores the mean recall over the classes it holds (as
    scikit-learn's): perfect predictions score 1 in every resample, not (K - 1) / K when the rare class is out."""
    y = np.repeat(["a", "b", "c"], [27, 27, 3])
    g = np.concatenate([np.repeat(np.arange(18), 3), [18, 18, 18]])  # class c: one subject, often left out
    got = bootstrap_interval(y, y, g, "balanced_acc", n_boot=300)
    assert (got.mean, got.low, got.high) == (1.0, 1.0, 1.0)


def test_resamples_with_an_undefined_pearson_r_are_left_out_of_the_limits() -> None:
    """With few single-run subjects some resamples draw one subject only (r undefined); the interval comes from
    the other resamples instead of turning NaN."""
    truth = np.array([1.0, 2.0, 3.0, 4.0])
    got = bootstrap_interval(truth, truth + np.array([0.1, -0.2, 0.3, 0.0]), np.arange(4), "pearson_r", n_boot=300)
    assert np.isfinite(got.low) and np.isfinite(got.high) and got.low <= got.mean <= got.high


@pytest.mark.parametrize(("units", "confidence", "error", "match"), [
    (4, 0.0, ConfigError, "confidence must be in"), (4, 1.0, ConfigError, "confidence must be in"),
    (0, 0.95, DataError, "no units to score")])
def test_a_confidence_of_0_or_1_and_no_units_are_refused(units, confidence, error, match) -> None:
    """A confidence of 1 would report the resamples' extremes as the interval and 0 a point; no units would fail
    deep in numpy: each is refused in one line."""
    y, g = runs(subjects=4, per_subject=1)
    with pytest.raises(error, match=match):
        bootstrap_interval(y[:units], y[:units], g[:units], "balanced_acc", confidence=confidence)


def test_a_pearson_r_interval_does_not_depend_on_the_predictions_units() -> None:
    """Only one subject's predictions vary, so a resample without it has constant predictions and no r: it is left
    out whatever the predictions' offset and scale (scored, the rounding noise of its near-zero variance would move
    the limits with the units)."""
    truth = np.random.default_rng(0).normal(size=12)
    pred = np.full(12, 0.3)
    pred[:2] = [1.7, 2.9]
    g = np.repeat(np.arange(6), 2)
    want = bootstrap_interval(truth, pred, g, "pearson_r", n_boot=300)
    for scale, offset in ((3.0, 0.7), (0.01, -5.0)):
        got = bootstrap_interval(truth, scale * pred + offset, g, "pearson_r", n_boot=300)
        assert (got.mean, got.low, got.high) == pytest.approx((want.mean, want.low, want.high), abs=1e-9)
