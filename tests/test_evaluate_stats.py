"""The statistical parts of `brainjepa evaluate`, on constructed data whose answer is known: the closed-form ridge
equals scikit-learn's pipeline, permutation nulls find the negative bias of pooled Pearson r and let a planted
signal through, identification and its null, tangent features fitted on training runs only, GLM betas, token FC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.baselines import TangentFeatures, functional_connectivity, mean_patch_profile, token_fc
from brainjepa.evaluation.glm import canonical_hrf, event_regressors, glm_betas
from brainjepa.evaluation.identification import Identification, identification_null, identify_subjects
from brainjepa.evaluation.metrics import Interval
from brainjepa.evaluation.nulls import Null, permutations, score_many
from brainjepa.evaluation.ridge import ALPHAS, RidgeCV, cv_plan, decode, encode


# ------------------------------------------------------------------------------------------------ ridge
def test_ridge_predictions_equal_scikit_learns_standardised_ridge():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(36, 50)) * rng.uniform(0.1, 10, 50) + 3
    y = x[:, :3].sum(1) + rng.normal(size=36)
    groups = np.repeat(np.arange(12), 3)
    plan = cv_plan(y, groups, task="regression", folds=3, seeds=1)
    pred = decode(RidgeCV(x, plan, alphas=(1.0,)).predict(encode(y, "regression")[0][None]), None)[0, 0]
    for split in plan[0]:
        z = StandardScaler().fit(x[split.train])
        scale = (z.transform(x[split.train]) ** 2).sum() / len(split.train)  # mean eigenvalue of the kernel
        ref = make_pipeline(StandardScaler(), Ridge(alpha=scale)).fit(x[split.train], y[split.train])
        assert pred[split.test] == pytest.approx(ref.predict(x[split.test]), abs=1e-8)


def test_ridge_finds_a_planted_class_signal_and_uses_subject_grouped_folds():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 2)
    y = np.tile(["down", "up"], 20)
    x = rng.normal(size=(40, 30)) + 1.5 * (y == "up")[:, None] * (np.arange(30) < 5)
    plan = cv_plan(y, groups, task="classification", folds=5, seeds=2)
    for seed in plan:
        for split in seed:
            assert not set(groups[split.train]) & set(groups[split.test])
            assert all(not set(groups[split.train][tr]) & set(groups[split.train][va]) for tr, va in split.inner)
    targets, classes = encode(y, "classification")
    pred = decode(RidgeCV(x, plan).predict(targets[None]), classes)[0]
    assert pred.shape == (2, 40) and set(pred.ravel()) <= {"down", "up"}
    assert (pred == y).mean() > 0.85
    assert len(ALPHAS) == 8


def test_a_constant_feature_changes_no_ridge_prediction() -> None:
    """A feature constant over a training fold (std 0) is left unscaled, not divided by 0: adding one leaves every
    out-of-fold prediction as it was."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(24, 6))
    y = x[:, 0] + rng.normal(size=24)
    plan = cv_plan(y, np.arange(24) // 2, task="regression", folds=3, seeds=1)
    targets = encode(y, "regression")[0][None]
    padded = np.column_stack([x, np.full(24, 7.0)])
    np.testing.assert_allclose(RidgeCV(padded, plan).predict(targets), RidgeCV(x, plan).predict(targets), atol=1e-10)


def test_inner_cv_fits_are_ridge_fits_recentred_on_the_inner_training_rows() -> None:
    """The inner CV's predictions are scikit-learn's ridge (with intercept) on the inner training rows of the
    features standardised by the outer training fold, so alpha is chosen on properly centred fits."""
    from brainjepa.evaluation.ridge import _Solver

    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 8)) * rng.uniform(0.5, 4, 8) + 5
    y = x[:, :2].sum(1) + rng.normal(size=30)
    tr, va = np.arange(20), np.arange(20, 30)
    _, kernel = _Solver.standardised(x, x[:2], np.array([1.0]))
    z = StandardScaler().fit_transform(x)
    inner = _Solver.inner(kernel, tr, va, np.array([1.0]))
    alpha = ((z[tr] - z[tr].mean(0)) ** 2).sum() / len(tr)  # mean eigenvalue of the centred inner kernel
    want = Ridge(alpha=alpha).fit(z[tr], y[tr]).predict(z[va])
    got = inner.predict(y[tr][None, :, None])[0, 0, :, 0]
    np.testing.assert_allclose(got, want, atol=1e-8)


def test_a_fold_without_an_inner_cv_uses_the_grids_middle_alpha() -> None:
    """When a training fold is too small for an inner CV, the penalty is the grid's middle value (documented),
    not its smallest."""
    from brainjepa.evaluation.ridge import Split

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(16, 20)), rng.normal(size=16)
    plan = [[Split(np.arange(8), np.arange(8, 16), ()), Split(np.arange(8, 16), np.arange(8), ())]]
    targets = encode(y, "regression")[0][None]
    middle = RidgeCV(x, plan, alphas=(ALPHAS[len(ALPHAS) // 2],)).predict(targets)
    np.testing.assert_allclose(RidgeCV(x, plan).predict(targets), middle, atol=1e-12)


def test_inner_folds_are_capped_by_subjects_and_by_the_rarest_class() -> None:
    """The inner CV has min(3, training subjects, smallest class) folds: a fold of 2 subjects gets 2 inner folds
    (not an error), a class with 2 training subjects gets 2, and every inner training part holds every class."""
    runs = np.repeat(np.arange(4), 5)
    plan = cv_plan(np.arange(20.0), runs, task="regression", folds=2, seeds=1)
    assert all(len(split.inner) == 2 for split in plan[0])
    groups = np.arange(16)
    y = np.array(["a"] * 13 + ["b"] * 3)  # 2 of the 3 "b" subjects in each training fold of 3 folds (or fewer)
    for split in cv_plan(y, groups, task="classification", folds=3, seeds=2)[1]:
        rare = min(np.unique(y[split.train], return_counts=True)[1])
        assert len(split.inner) == min(3, rare)
        assert all(set(y[split.train][tr]) == {"a", "b"} for tr, _ in split.inner)


def test_each_seeds_inner_splits_are_drawn_with_that_seed() -> None:
    """Seed s repeats the whole CV, inner splits included, with seed s (as the linear probe does)."""
    from brainjepa.evaluation.metrics import grouped_splits

    y, groups = np.arange(36.0), np.arange(36) // 2
    for seed, splits in enumerate(cv_plan(y, groups, task="regression", folds=3, seeds=2)):
        for split in splits:
            want = grouped_splits(y[split.train], groups[split.train], task="regression", folds=3, seed=seed)
            assert all(np.array_equal(a, c) and np.array_equal(b, d)
                       for (a, b), (c, d) in zip(split.inner, want, strict=True))


# ------------------------------------------------------------------------------------------------ nulls
def test_within_subject_permutations_keep_each_subjects_labels():
    groups = np.repeat(["a", "b", "c"], [2, 3, 1])
    y = np.array([0, 1, 5, 6, 7, 9])
    perms = permutations(groups, "within-subject", 50, seed=0)
    assert perms.shape == (50, 6)
    for p in perms:
        for g in "abc":
            assert sorted(y[p][groups == g]) == sorted(y[groups == g])
    assert perms[:, 5].tolist() == [5] * 50  # a subject with one unit keeps it
    assert np.array_equal(perms, permutations(groups, "within-subject", 50, seed=0))
    with pytest.raises(DataError, match="one unit per subject"):
        permutations(groups, "across-subjects", 5)
    with pytest.raises(ConfigError, match="permutation scheme"):
        permutations(groups, "anywhere", 5)


def test_within_subject_permutations_swap_a_two_unit_subject_half_the_time():
    """A subject with exactly two units is shuffled too: each draw swaps its pair with probability 1/2 (a subject
    of two left in place would make its labels a fixed, non-null assignment)."""
    groups = np.array(["a", "a", "b", "b"])
    perms = permutations(groups, "within-subject", 200, seed=0)
    for first, second in ((0, 1), (2, 3)):
        swapped = perms[:, first] == second
        assert np.array_equal(perms[swapped, second], np.full(swapped.sum(), first))  # a swap, never a copy
        assert 0.35 < swapped.mean() < 0.65  # binomial(200, 1/2): sd 0.035


def test_permutations_are_drawn_independently():
    """Every permutation is its own draw: 50 shuffles of 10 units are (almost) all different (10! orders), not
    one shuffle repeated."""
    for scheme, groups in (("within-subject", np.zeros(10, int)), ("across-subjects", np.arange(10))):
        perms = permutations(groups, scheme, 50, seed=0)
        assert len({tuple(p) for p in perms}) >= 45, scheme
        assert all(sorted(p) == list(range(10)) for p in perms)


def test_p_value_counts_ties_with_the_observed_score():
    """p = (1 + #null >= observed) / (1 + n): a null value equal to the observed score counts against it (> would
    make ties look significant)."""
    assert Null(np.array([0.5, 0.5, 0.7]), 0.5, "x").p_value == pytest.approx((1 + 3) / (1 + 3))
    assert Null(np.array([0.4, 0.6]), 0.6, "x").p_value == pytest.approx((1 + 1) / (1 + 2))
    assert Null(np.array([0.4, 0.6, np.nan]), 0.6, "x").p_value == pytest.approx((1 + 1) / (1 + 2))


def test_null_high_is_the_95th_percentile():
    """`high` is the null's 95th percentile: on 0..100 that is 95 (not the median, 50)."""
    null = Null(np.arange(101.0), 0.0, "x")
    assert null.high == pytest.approx(95.0) and null.mean == pytest.approx(50.0)


def _rating_like(seed: int = 0, subjects: int = 30, runs: int = 3):
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(subjects), runs)
    y = rng.normal(size=subjects)[groups] * 2 + rng.normal(size=len(groups))  # mostly between subjects
    return y, groups


def _null_of(x, y, groups, n=100):
    """Pooled out-of-fold Pearson r of the suite's ridge and its across-label-permutation null."""
    plan = cv_plan(y, groups, task="regression", folds=5, seeds=1)
    perms = permutations(groups, "within-subject", n, seed=0)
    targets = encode(y, "regression")[0]
    pred = decode(RidgeCV(x, plan).predict(np.concatenate([targets[None], targets[perms]])), None)
    score = score_many("pearson_r", y[None], pred[:1])[0]
    return score, Null(score_many("pearson_r", y[perms], pred[1:]), score, "within-subject")


def test_pooled_r_on_noise_features_has_a_negative_null_and_is_not_called_above_chance():
    y, groups = _rating_like()
    x = np.random.default_rng(5).normal(size=(len(y), 200))
    score, null = _null_of(x, y, groups)
    assert null.mean < -0.1  # the bias the nominal chance level (r = 0) hides
    assert null.n == 100 and 0 < null.p_value <= 1
    interval = Interval(score, score - 0.1, score + 0.1, 30, 0.95)
    assert not null.cleared_by(interval)


def test_a_planted_signal_clears_the_null():
    y, groups = _rating_like(seed=2)
    rng = np.random.default_rng(3)
    x = np.column_stack([y + rng.normal(0, 0.5, len(y)), rng.normal(size=(len(y), 50))])
    score, null = _null_of(x, y, groups)
    assert score > 0.7 and score > null.high and null.p_value == pytest.approx(1 / 101)
    assert null.cleared_by(Interval(score, score - 0.1, score + 0.05, 30, 0.95))
    # The interval must also exclude the null mean: a score above the 95th percentile with a wide interval is not
    # enough.
    assert not null.cleared_by(Interval(score, null.mean - 0.01, score + 0.1, 30, 0.95))


def _group_null(balanced: bool, reps: int = 40) -> tuple[float, float, float]:
    """simulation/group's pipeline on pure-noise features: 40 subjects, one run each, two balanced classes,
    stratified folds, labels shuffled across subjects. (mean score, mean null mean, share of p <= 0.05)."""
    y = np.array(["A", "B"] * 20)
    groups = np.arange(40)
    plan = cv_plan(y, groups, task="classification", folds=5, seeds=1)
    perms = permutations(groups, "across-subjects", 100, seed=0)
    targets, classes = encode(y, "classification")
    scores, nulls, small_p = [], [], 0
    for rep in range(reps):
        x = np.random.default_rng(rep).normal(size=(40, 30))
        pred = decode(RidgeCV(x, plan).predict(np.concatenate([targets[None], targets[perms]]),
                                               balanced=balanced), classes)
        score = score_many("balanced_acc", y[None], pred[:1])[0]
        null = Null(score_many("balanced_acc", y[perms], pred[1:]), score, "across-subjects")
        scores.append(score)
        nulls.append(null.mean)
        small_p += null.p_value <= 0.05
    return float(np.mean(scores)), float(np.mean(nulls)), small_p / reps


def test_a_classifier_null_on_stratified_folds_sits_where_noise_scores():
    """A permuted training fold's classes lean one way; decided by raw scores, the classifier predicts the test
    fold's minority and the null drops below chance, so noise clears it. Balanced decisions keep it at noise."""
    score, null, small_p = _group_null(balanced=True)
    assert abs(null - 0.5) < 0.02 and abs(score - null) < 0.05 and small_p <= 0.1  # score: 40 draws, sd ~0.1
    score, null, small_p = _group_null(balanced=False, reps=10)
    assert null < 0.45  # the bias the balanced decision removes (noise scores about 0.5 either way)


def test_above_chance_is_decided_by_the_printed_p_value():
    values = np.arange(200) / 200  # a score of 0.946 exceeds the 95th percentile (0.945) with p = 11/201
    score = Interval(0.946, 0.9, 0.99, 30, 0.95)
    null = Null(values, 0.946, "across-subjects")
    assert null.high < 0.946 and null.p_value > 0.05 and not null.cleared_by(score)
    null = Null(values, 0.956, "across-subjects")
    assert null.p_value <= 0.05 and null.cleared_by(Interval(0.956, 0.9, 0.99, 30, 0.95))
    assert not null.cleared_by(Interval(0.956, 0.4, 0.99, 30, 0.95))  # the interval reaches the null mean


def test_printed_intervals_show_which_side_of_zero_they_lie():
    assert Interval(0.01, 0.0004, 0.0213, 30, 0.95).decimals() == 4
    assert Interval(0.01, -0.021, 0.04, 30, 0.95).decimals() == 3
    assert Interval(0.0, 0.0, 1e-9, 30, 0.95).decimals() == 6
    assert Interval(0.5, float("nan"), float("nan"), 1, 0.95).decimals() == 3


def test_score_many_matches_the_metrics():
    from sklearn.metrics import balanced_accuracy_score

    rng = np.random.default_rng(0)
    truth = rng.choice(["a", "b", "c"], (4, 30))
    pred = rng.choice(["a", "b", "c"], (4, 2, 30))
    expected = [np.mean([balanced_accuracy_score(t, p) for p in ps]) for t, ps in zip(truth, pred, strict=True)]
    assert score_many("balanced_acc", truth, pred) == pytest.approx(expected)
    values, fitted = rng.normal(size=(3, 20)), rng.normal(size=(3, 2, 20))
    expected = [np.mean([np.corrcoef(t, p)[0, 1] for p in ps]) for t, ps in zip(values, fitted, strict=True)]
    assert score_many("pearson_r", values, fitted) == pytest.approx(expected)


def test_score_many_averages_accuracy_over_cv_seeds():
    """Each permutation's accuracy is the mean of its CV seeds' accuracies, as the observed score's is."""
    truth = np.array([[0, 1, 0, 1], [1, 1, 0, 0]])
    pred = np.array([[[0, 1, 0, 1], [1, 0, 1, 0]], [[1, 1, 0, 1], [1, 1, 0, 0]]])  # seeds score 1 and 0; .75 and 1
    np.testing.assert_allclose(score_many("accuracy", truth, pred), [0.5, 0.875])


def test_score_many_pearson_r_of_constant_predictions_is_undefined():
    """Constant predictions have no correlation: NaN, which `Null` leaves out of its count, never a 0 that would
    drag the null towards zero."""
    values = np.array([[1.0, 2.0, 3.0, 4.0]])
    r = score_many("pearson_r", values, np.array([[[5.0, 5.0, 5.0, 5.0]]]))
    assert np.isnan(r).all()
    assert Null(np.array([0.1, np.nan, 0.3]), 0.5, "x").n == 2


def test_a_p_value_of_exactly_alpha_clears_the_null():
    """p <= ALPHA is above chance: with 19 null values all below the score, p = 1 / 20 = 0.05 exactly."""
    null = Null(np.linspace(0.0, 0.18, 19), 0.5, "across-subjects")
    assert null.p_value == pytest.approx(0.05)
    assert null.cleared_by(Interval(0.5, 0.4, 0.6, 30, 0.95))


# ------------------------------------------------------------------------------------------ identification
def test_identification_identical_features_are_found_and_random_ones_at_chance():
    rng = np.random.default_rng(0)
    subjects = np.repeat([f"s{i}" for i in range(40)], 3)
    sessions = np.tile(["a", "b", "c"], 40)
    own = rng.normal(size=(40, 50))
    same = identify_subjects(np.repeat(own, 3, axis=0), subjects, sessions)
    assert same.accuracy == 1.0 and same.chance == pytest.approx(1 / 40) and same.queries == 40 * 6
    assert same.by_pair() == {p: 1.0 for p in ("a->b", "a->c", "b->a", "b->c", "c->a", "c->b")}
    noise = identify_subjects(rng.normal(size=(120, 50)), subjects, sessions)
    assert noise.accuracy < 0.1 and noise.chance == pytest.approx(1 / 40)
    null = identification_null([same, noise], 400, seed=0)
    assert null.shape == (400,) and null.mean() == pytest.approx(1 / 40, abs=0.01)
    # A subject missing a session takes part only in the pairs it has; chance follows the candidate counts.
    keep = ~((subjects == "s0") & (sessions == "a"))
    partial = identify_subjects(np.repeat(own, 3, axis=0)[keep], subjects[keep], sessions[keep])
    pairs_without_s0, pairs_with_s0 = 4, 2  # (a, b), (a, c), (b, a), (c, a) lack s0; (b, c), (c, b) have it
    expected = (pairs_without_s0 + pairs_with_s0) / (pairs_without_s0 * 39 + pairs_with_s0 * 40)
    assert partial.accuracy == 1.0 and partial.chance == pytest.approx(expected)


def test_identification_null_draws_a_new_relabelling_each_time():
    """Each null value comes from its own relabelling of the database runs: the values vary around chance (one
    relabelling repeated would give a single value, a null of zero width)."""
    subjects = np.repeat([f"s{i}" for i in range(20)], 2)
    sessions = np.tile(["a", "b"], 20)
    own = np.random.default_rng(0).normal(size=(20, 30))
    found = identify_subjects(np.repeat(own, 2, axis=0), subjects, sessions)
    null = identification_null([found], 300, seed=0)
    assert len(np.unique(null)) >= 4 and null.std() > 0.01
    assert null.mean() == pytest.approx(1 / 20, abs=0.01)  # 40 queries, each right with probability 1/20


def _centred_by_session(x: np.ndarray, sessions: np.ndarray) -> np.ndarray:
    out = x.astype(np.float64).copy()
    for s in np.unique(sessions):
        out[sessions == s] -= out[sessions == s].mean(0)
    return out


def test_identification_centres_each_session_before_matching():
    """A large pattern every run shares would make every query correlate best with the same database run; each
    session's features are centred first (queries and database alike), so the small subject pattern decides."""
    rng = np.random.default_rng(0)
    n, width = 15, 60
    subjects = np.repeat([f"s{i}" for i in range(n)], 2)
    sessions = np.tile(["a", "b"], n)
    shared = 20 * rng.normal(size=width)
    x = shared + np.repeat(rng.normal(size=(n, width)), 2, axis=0) + 0.3 * rng.normal(size=(2 * n, width))
    found = identify_subjects(x, subjects, sessions)
    by_hand = identify_subjects(_centred_by_session(x, sessions), subjects, sessions)
    assert found.accuracy > 0.9
    assert np.array_equal(found.matched, by_hand.matched) and found.accuracy == by_hand.accuracy


def test_identification_matches_each_query_to_its_best_database_run():
    """Query k of a -> b is assigned argmax_j corr(query k, database run j), computed here with np.corrcoef on
    session-centred features; the best query per database run (the transposed argmax) is a different answer."""
    rng = np.random.default_rng(3)
    n = 8
    subjects = np.repeat([f"s{i}" for i in range(n)], 2)
    sessions = np.tile(["a", "b"], n)
    x = rng.normal(size=(2 * n, 12))
    found = identify_subjects(x, subjects, sessions)
    centred = _centred_by_session(x, sessions)
    names = np.array([f"s{i}" for i in range(n)])
    asymmetric = False
    for a, b in (("a", "b"), ("b", "a")):
        corr = np.corrcoef(centred[sessions == a], centred[sessions == b])[:n, n:]  # [query, database]
        got = found.matched[found.pairs == f"{a}->{b}"]
        assert got.tolist() == names[corr.argmax(1)].tolist()
        asymmetric |= not np.array_equal(corr.argmax(1), corr.argmax(0))
    assert asymmetric  # the case tells the two argmaxes apart


def test_identification_refusals():
    with pytest.raises(DataError, match="subject 's0' has two runs labelled 'a'"):
        identify_subjects(np.zeros((2, 3)), ["s0", "s0"], ["a", "a"])
    with pytest.raises(DataError, match="two sessions .* shared by at least two subjects"):
        identify_subjects(np.zeros((2, 3)), ["s0", "s1"], ["a", "b"])


def test_identification_leaves_out_session_pairs_with_a_single_shared_subject():
    """A pair of sessions that only one subject has in common offers one candidate, a match that cannot be wrong:
    it is left out of the queries, the accuracy and the chance level."""
    subjects = ["s0", "s0", "s0", "s1", "s1", "s2"]
    sessions = ["a", "b", "c", "a", "b", "c"]
    found = identify_subjects(np.random.default_rng(0).normal(size=(6, 8)), subjects, sessions)
    assert set(found.pairs.tolist()) == {"a->b", "b->a"}
    assert found.queries == 4 and found.chance == pytest.approx(0.5)


def test_identification_by_pair_lists_the_session_pairs_in_sorted_order():
    """`by_pair` is read in order into the long table: its pairs come sorted, whatever order the runs came in."""
    subjects = np.repeat([f"s{i}" for i in range(5)], 4)
    sessions = np.tile(["d", "b", "c", "a"], 5)
    found = identify_subjects(np.random.default_rng(4).normal(size=(20, 6)), subjects, sessions)
    pairs = [f"{a}->{b}" for a in "abcd" for b in "abcd" if a != b]
    assert list(found.by_pair()) == pairs


def test_identification_refuses_sessions_of_another_length():
    """One session label per feature row: a shorter list is a DataError saying so, not a bare ValueError."""
    with pytest.raises(DataError, match="3 feature rows, 3 subjects, 2 sessions"):
        identify_subjects(np.zeros((3, 4)), ["s0", "s1", "s2"], ["a", "b"])


def test_identification_null_follows_its_seed():
    """The same seed draws the same relabellings; another seed draws others."""
    subjects = np.repeat([f"s{i}" for i in range(10)], 2)
    sessions = np.tile(["a", "b"], 10)
    found = identify_subjects(np.random.default_rng(1).normal(size=(20, 16)), subjects, sessions)
    first = identification_null([found], 50, seed=0)
    assert np.array_equal(first, identification_null([found], 50, seed=0))
    assert not np.array_equal(first, identification_null([found], 50, seed=1))


def test_identification_null_scores_the_label_each_match_carries():
    """A query is right under a relabelling when the database run it matched carries its subject's label: when all
    queries matched the same run, exactly one of them is right under every relabelling."""
    n = 6
    hub = Identification(subjects=np.array([f"s{i}" for i in range(n)]), pairs=np.array(["a->b"] * n),
                         matched=np.array(["s0"] * n), chance=1 / n, query_pos=np.arange(n),
                         match_pos=np.zeros(n, dtype=np.int64))
    np.testing.assert_allclose(identification_null([hub], 100, seed=0), 1 / n)


def test_identification_null_averages_the_model_seeds():
    """With several model seeds, each relabelling's accuracy is the mean over the seeds (the same relabellings for
    every seed), not the best seed's."""
    subjects = np.repeat([f"s{i}" for i in range(12)], 2)
    sessions = np.tile(["a", "b"], 12)
    rng = np.random.default_rng(2)
    seeds = [identify_subjects(rng.normal(size=(24, 10)), subjects, sessions) for _ in range(2)]
    each = [identification_null([s], 200, seed=3) for s in seeds]
    np.testing.assert_allclose(identification_null(seeds, 200, seed=3), (each[0] + each[1]) / 2)
    assert not np.allclose(each[0], each[1])  # the seeds' nulls differ, so mean and max differ


# ------------------------------------------------------------------------------------------ features
def test_tangent_features_are_fitted_on_training_runs_only():
    rng = np.random.default_rng(0)
    series = [rng.normal(size=(5, 60)) for _ in range(8)]
    train, test = np.arange(6), np.array([6, 7])
    x_train, x_test = TangentFeatures(series)(train, test)
    assert x_train.shape == (6, 10) and x_test.shape == (2, 10)  # 5 ROIs: 10 pairs, diagonal left out
    changed = series[:6] + [rng.normal(size=(5, 60)) * 3 + rng.normal(size=(5, 1)) * rng.normal(size=(1, 60)),
                            series[7]]
    again_train, again_test = TangentFeatures(changed)(train, test)
    assert np.allclose(again_train, x_train)  # a test run cannot move the training features
    assert np.allclose(again_test[1], x_test[1]) and not np.allclose(again_test[0], x_test[0])
    # At the reference itself (one run, fitted on itself) the tangent vector is 0.
    assert np.allclose(TangentFeatures(series[:1]).all_runs(), 0, atol=1e-8)


def test_tangent_features_refit_their_reference_for_every_training_set() -> None:
    """One `TangentFeatures` serves every fold: each call fits the reference on that call's training runs (fits are
    cached per training set, never reused for another), as a fresh object would."""
    rng = np.random.default_rng(0)
    series = [rng.normal(size=(5, 5)) @ rng.normal(size=(5, 60)) for _ in range(8)]  # each run its own FC
    shared = TangentFeatures(series)
    folds = [(np.arange(6), np.array([6, 7])), (np.arange(2, 8), np.array([0, 1]))]
    assert not np.allclose(shared(*folds[0])[1], shared(folds[1][0], folds[0][1])[1], atol=1e-3)  # the fit matters
    for train, test in folds + folds[::-1]:
        for got, expected in zip(shared(train, test), TangentFeatures(series)(train, test), strict=True):
            np.testing.assert_allclose(got, expected, atol=1e-10)


def test_tangent_features_do_not_depend_on_each_rois_scale_or_offset() -> None:
    """Each run is z-scored per ROI before its covariance is estimated: rescaling or shifting a ROI's signal (units,
    scanner gain) leaves the tangent features unchanged."""
    rng = np.random.default_rng(1)
    series = [rng.normal(size=(5, 5)) @ rng.normal(size=(5, 60)) for _ in range(6)]  # each run its own FC
    scale, offset = rng.uniform(0.1, 10.0, (5, 1)), rng.normal(0, 100, (5, 1))
    rescaled = [ts * scale + offset for ts in series]
    train, test = np.arange(4), np.array([4, 5])
    original = TangentFeatures(series)(train, test)
    assert np.abs(original[1]).max() > 0.1  # the runs differ from the reference: the features are not all 0
    for got, expected in zip(TangentFeatures(rescaled)(train, test), original, strict=True):
        np.testing.assert_allclose(got, expected, atol=1e-8)


def test_token_fc_is_the_fc_of_centred_token_trajectories():
    rng = np.random.default_rng(0)
    tokens = rng.normal(size=(2, 4 * 5, 3))  # 4 ROIs x 5 time patches, width 3
    shifted = tokens + np.repeat(rng.normal(size=(2, 4, 3)), 5, axis=1)  # a constant per ROI changes nothing
    got = token_fc(tokens, 4)
    assert got.shape == (2, 6) and np.allclose(token_fc(shifted, 4), got, atol=1e-6)
    trajectories = tokens.reshape(2, 4, 5, 3)
    trajectories = (trajectories - trajectories.mean(2, keepdims=True)).reshape(2, 4, 15)
    assert np.allclose(got, functional_connectivity(trajectories), atol=1e-5)
    with pytest.raises(DataError, match="at least 2 tokens per ROI"):
        token_fc(tokens[:, :4], 4)


def test_mean_patch_profile_averages_each_rois_patches():
    w = np.arange(2 * 3 * 8, dtype=float).reshape(2, 3, 8)
    got = mean_patch_profile(w, 4)
    assert got.shape == (2, 3, 4) and np.allclose(got, (w[..., :4] + w[..., 4:]) / 2)


def test_glm_recovers_planted_event_responses():
    tr, frames = 2.0, 160
    events = pd.DataFrame({"onset_run": [10.0, 47.0, 85.0, 121.0, 160.0, 200.0, 240.0, 280.0],
                           "duration": [12.5, 11.0] * 4, "trial_type": ["heat", "rating"] * 4})
    times = np.arange(frames) * tr
    x = event_regressors(events, times)
    assert x.shape == (frames, 2) and x[:5].max() < 1e-3  # nothing before the first onset's response
    betas_true = np.array([[2.0, 0.0], [0.0, -1.0], [1.0, 1.0]])
    rng = np.random.default_rng(0)
    window = betas_true @ x.T + 5.0 + 0.01 * times + 0.05 * rng.normal(size=(3, frames))
    assert glm_betas(window, times, events) == pytest.approx(betas_true, abs=0.1)
    hrf = canonical_hrf(dt=0.1)
    assert hrf.sum() == pytest.approx(1.0) and 4.5 <= hrf.argmax() * 0.1 <= 5.5
    with pytest.raises(DataError, match="no columns"):
        event_regressors(events.drop(columns="trial_type"), times)


def test_canonical_hrf_is_spms_double_gamma() -> None:
    """The HRF is SPM's canonical shape, gamma(6) - gamma(16) / 6 with unit scale, written here from the gamma
    density itself: the undershoot and its 1/6 ratio are part of the response, not only the peak."""
    from scipy.special import gammaln

    t = np.arange(0.0, 32.0, 0.1)
    density = [np.exp((k - 1) * np.log(np.maximum(t, 1e-300)) - t - gammaln(k)) for k in (6.0, 16.0)]
    want = density[0] - density[1] / 6
    np.testing.assert_allclose(canonical_hrf(), want / want.sum(), rtol=1e-6, atol=1e-12)


def test_event_regressors_follow_each_events_onset_and_duration() -> None:
    """The HRF sums to 1, so a regressor's area is its event's duration in seconds; a brief event's response
    peaks where the HRF does, after its onset (frame times and onsets on one clock)."""
    times = np.arange(0.0, 150.0, 0.1)
    for duration in (4.0, 15.0):
        events = pd.DataFrame({"onset_run": [20.0], "duration": [duration], "trial_type": ["heat"]})
        x = event_regressors(events, times)
        assert x[:, 0].sum() * 0.1 == pytest.approx(duration, abs=0.15) and not x[:, 1].any()
    brief = event_regressors(pd.DataFrame({"onset_run": [30.0], "duration": [0.1], "trial_type": ["rating"]}), times)
    assert times[brief[:, 1].argmax()] - 30.0 == pytest.approx(canonical_hrf().argmax() * 0.1, abs=0.25)
