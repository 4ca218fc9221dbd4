"""Linear probes of frozen features, with the baselines that make their numbers meaningful.

A probe is: standardise the features (fitted on the training fold), then L2 logistic regression
(classification) or ridge regression, whose C / alpha is chosen by an inner subject-grouped CV inside each
training fold. Outer folds are grouped by subject (stratified for classification, `grouped_splits`) and repeated
over seeds; every metric is reported as mean ± std over all (seed, fold) pairs. The same splits serve every
feature set of a table, so rows differ only by their features.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from brainjepa.bounds import check_value
from brainjepa.data.store import RunStore, open_runs
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.attentive import AttentiveConfig, AttentiveProbe
from brainjepa.evaluation.baselines import functional_connectivity, random_init_like
from brainjepa.evaluation.embed import EmbedOptions, embed_store, load_embeddings, scoring_options
from brainjepa.evaluation.labels import TASK_KINDS, TaskKind, drop_missing, infer_task, read_labels
from brainjepa.evaluation.metrics import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    classification_metrics,
    grouped_splits,
    regression_metrics,
    summarize,
)
from brainjepa.io import atomic_writes, check_writable
from brainjepa.models import BrainJEPA
from brainjepa.models.encoder import Pooling

if TYPE_CHECKING:
    import pandas

logger = logging.getLogger(__name__)

Head = Literal["linear", "attentive"]
HEADS: tuple[Head, ...] = get_args(Head)
# Features computed per fold from (training rows, test rows), for features fitted on the training data only.
FoldFeatures = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
DEFAULT_CS = tuple(np.logspace(-4, 4, 9).tolist())
DEFAULT_ALPHAS = tuple(np.logspace(-2, 6, 9).tolist())
INNER_FOLDS = 3  # grouped inner CV folds choosing C / alpha
BASELINES = ("random-init", "fc")
ROW_NAMES = {"brainjepa": "brainjepa", "random-init": "random-init", "fc": "FC"}


@dataclass
class ProbeResult:
    """Per-fold metrics and their summary for one feature set.

    Attributes:
        task: "classification" or "regression".
        folds: one dict per (seed, fold): ``seed``, ``fold``, ``n_train``, ``n_test`` and the metrics; with the
            attentive head also the setting its training fold chose: ``lr``, ``weight_decay``, ``epochs``.
        summary: metric name -> (mean, std) over all folds (NaNs left out, see `summarize`).
        n_samples: rows used (after dropping missing labels).
        n_dropped: rows dropped for a missing label.
        predictions: out-of-fold predictions [seeds, n_samples] (each seed's folds cover every row once), in the
            order of the labels left after dropping missing ones; what a bootstrap over subjects rescores.
        truth: the labels `predictions` predict [n_samples], same order (what `brainjepa probe` draws them against).
    """

    task: TaskKind
    folds: list[dict[str, Any]]
    summary: dict[str, tuple[float, float]]
    n_samples: int
    n_dropped: int = 0
    predictions: np.ndarray | None = None
    truth: np.ndarray | None = None

    @property
    def metric_names(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS


@dataclass
class ProbeTable:
    """Probe results of several feature sets on one label (rows in insertion order)."""

    label: str
    task: TaskKind
    results: dict[str, ProbeResult] = field(default_factory=dict)

    def to_frame(self) -> pandas.DataFrame:
        """One row per feature set: ``<metric>_mean`` and ``<metric>_std`` columns plus ``n``."""
        import pandas as pd

        rows = []
        for name, res in self.results.items():
            row: dict[str, Any] = {"features": name}
            for metric in res.metric_names:
                row[f"{metric}_mean"], row[f"{metric}_std"] = res.summary[metric]
            row["n"] = res.n_samples
            rows.append(row)
        return pd.DataFrame(rows)

    def to_markdown(self, digits: int = 3) -> str:
        """A markdown table: rows = feature sets, columns = metric mean ± std."""
        names = next(iter(self.results.values())).metric_names if self.results else ()
        lines = [f"| features | {' | '.join(names)} | n |", "|---" * (len(names) + 2) + "|"]
        for name, res in self.results.items():
            cells = [f"{res.summary[m][0]:.{digits}f} ± {res.summary[m][1]:.{digits}f}" for m in names]
            lines.append(f"| {name} | {' | '.join(cells)} | {res.n_samples} |")
        return "\n".join(lines)

    def save(self, out: str | Path) -> Path:
        """Write ``probe.csv`` (summary), ``probe.md`` (the markdown table) and ``probe_folds.csv`` into `out`."""
        import pandas as pd

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        summary, folds = self.to_frame(), pd.DataFrame(
            [{"features": name, **f} for name, res in self.results.items() for f in res.folds])
        text = f"Probe of `{self.label}` ({self.task})\n\n{self.to_markdown()}\n"
        atomic_writes([(out / "probe.csv", lambda tmp: summary.to_csv(tmp, index=False)),  # together or not at all
                       (out / "probe.md", lambda tmp: tmp.write_text(text, encoding="utf-8")),
                       (out / "probe_folds.csv", lambda tmp: folds.to_csv(tmp, index=False))])
        return out


def check_head_settings(head: str, attentive: AttentiveConfig | None, **linear: tuple[Any, Any]) -> None:
    """Refuse settings of the head that is not used: `attentive` with the linear head, or a linear-head setting
    (`linear`: name -> (value, default)) changed with the attentive head."""
    if head not in HEADS:
        raise ConfigError(f"probe head must be one of {list(HEADS)}, got {head!r}")
    if head == "linear" and attentive is not None:
        raise ConfigError("attentive= configures the attentive head, and the head is linear: pass head='attentive' "
                          "(--head attentive) or remove attentive=")
    changed = [name for name, (value, default) in linear.items() if head == "attentive" and
               tuple(np.atleast_1d(value)) != tuple(np.atleast_1d(default))]
    if changed:
        raise ConfigError(f"{', '.join(changed)} tune the linear head, and the head is attentive (its grid is "
                          "AttentiveConfig's): remove them")


def probe(
    features: np.ndarray | FoldFeatures,
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    task: TaskKind | None = None,
    folds: int = 5,
    seeds: int = 3,
    inner_folds: int = INNER_FOLDS,
    Cs: Sequence[float] = DEFAULT_CS,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    head: Head = "linear",
    attentive: AttentiveConfig | None = None,
) -> ProbeResult:
    """Cross-validated probe of `features` for `labels`: linear (default) or attentive.

    Args:
        features: [N, F] (higher-rank arrays are flattened per row by the linear head), [N, tokens, D] for the
            attentive head, or a function (training rows, test rows) -> (training features, test features)
            called once per fold with row numbers of `labels`, for features fitted on the training rows only.
        labels: [N] class labels or continuous values; missing values are dropped (count logged).
        groups: [N] group ids (subjects) kept on one side of every split; None: each row its own group.
        task: "classification" / "regression"; None infers it (`infer_task`).
        folds: outer folds per seed.
        seeds: repetitions with seeds 0..seeds-1 (different outer and inner splits).
        inner_folds: grouped inner CV folds choosing C / alpha (fewer if a training fold has fewer groups).
        Cs: inverse L2 strengths of the logistic regression grid.
        alphas: ridge penalties of the regression grid.
        head: "linear" (standardise + logistic / ridge regression tuned by inner CV) or "attentive"
            (`brainjepa.evaluation.attentive.AttentiveProbe`: learning rate, weight decay and epochs chosen on
            held-out subjects of each training fold, then refitted on the training fold; seeded by
            (attentive.seed, split seed, fold)). Both heads tune on the training fold only.
        attentive: hyper-parameters and search grid of the attentive head (default `AttentiveConfig()`).

    Raises:
        DataError: mismatched lengths, too few groups for the folds, a single class, or attentive features
            that are not [N, tokens, D].
        ConfigError: an unknown head, or settings of the head not used (`check_head_settings`).
    """
    check_head_settings(head, attentive, inner_folds=(inner_folds, INNER_FOLDS), Cs=(Cs, DEFAULT_CS),
                        alphas=(alphas, DEFAULT_ALPHAS))
    per_fold = features if callable(features) else None
    dtype = np.float64 if head == "linear" else np.float32  # token features are large; torch takes float32
    x = np.arange(len(labels))[:, None] if per_fold else np.asarray(features, dtype=dtype)
    if head == "linear":
        x = x.reshape(len(x), -1)
    elif per_fold is None and x.ndim != 3:
        raise DataError(f"the attentive probe needs token features [N, tokens, D], got shape {list(x.shape)}")
    y = np.asarray(labels)
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    if not len(x) == len(y) == len(g):
        raise DataError(f"probe: {len(x)} feature rows, {len(y)} labels and {len(g)} groups must match")
    n_all = len(y)
    y, x, g = drop_missing(y, x, g)
    task = task or infer_task(y)
    if task not in TASK_KINDS:
        raise ConfigError(f"probe task must be 'classification' or 'regression', got {task!r}")
    if per_fold is None and not np.isfinite(x).all():
        raise DataError("probe: features contain NaN or Inf")
    if task == "regression":
        y = y.astype(np.float64)
    check_learnable(y, g, task, folds)
    classes = np.unique(y) if task == "classification" else None
    rows: list[dict[str, Any]] = []
    predictions = np.empty((seeds, len(y)), dtype=y.dtype)
    unconverged = 0
    for seed in range(seeds):
        for k, (train, test) in enumerate(_outer_splits(y, g, task, folds, seed)):
            x_train, x_test = per_fold(x[train, 0], x[test, 0]) if per_fold else (x[train], x[test])
            chosen: dict[str, float] = {}
            if head == "attentive":
                model, warned = _fit_attentive(x_train, y[train], g[train], task, attentive, seed, k), 0
                chosen = {"lr": model.lr_, "weight_decay": model.weight_decay_, "epochs": model.epochs_}
            else:
                model, warned = _fit(x_train, y[train], g[train], task, inner_folds, seed, Cs, alphas)
            unconverged += warned
            predictions[seed, test] = model.predict(x_test)
            rows.append({"seed": seed, "fold": k, "n_train": len(train), "n_test": len(test),
                         **_score(model, x_test, predictions[seed, test], y[test], task, classes), **chosen})
    if unconverged:
        logger.info("%d probe fits stopped at max_iter before converging (results are still valid fits)",
                    unconverged)
    metrics = CLASSIFICATION_METRICS if task == "classification" else REGRESSION_METRICS
    summary = summarize([{m: r[m] for m in metrics} for r in rows])
    return ProbeResult(task, rows, summary, n_samples=len(y), n_dropped=n_all - len(y), predictions=predictions,
                       truth=y)


def check_learnable(y: np.ndarray, groups: np.ndarray | None, task: TaskKind, folds: int, where: str = "probe labels"
                    ) -> None:
    """Refuse labels that subject-grouped `folds`-fold cross-validation cannot learn or score, before any fit.

    A constant regression target (every error would be 0: a perfect-looking MAE of 0.000); a single class;
    classes all smaller than `folds` (stratified splitting is impossible: e.g. one sample per class); two classes
    of which one comes from a single group (subject), so the fold testing that group trains on one class. A class
    smaller than `folds` beside larger ones is allowed (it is missing from some test folds), with a warning.

    Raises:
        DataError: naming `where`, the class or value and what to change.
    """
    y = np.asarray(y)
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    show = lambda v: repr(v.item() if isinstance(v, np.generic) else v)  # noqa: E731 - 'x', not np.str_('x')
    if task == "regression":
        values = y.astype(np.float64)
        if len(values) and np.ptp(values) == 0:
            raise DataError(f"{where} is constant ({values[0]:g} in all {len(values)} samples): there is nothing to "
                            "predict, and every error would be 0")
        return
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"{where} has a single class {classes.tolist()}; nothing to learn")
    if counts.max() < folds:  # scikit-learn's StratifiedGroupKFold would raise
        biggest = int(np.argmax(counts))
        raise DataError(f"{where}: every one of its {len(classes)} classes has fewer samples than the {folds} folds "
                        f"(largest: class {show(classes[biggest])} with {counts[biggest]}), so stratified {folds}-fold "
                        "cross-validation cannot be made; use fewer folds or merge classes")
    spread = {c: np.unique(g[y == c]) for c in classes}
    lonely = [c for c in classes if len(spread[c]) < 2]
    if len(classes) == 2 and lonely:
        c = lonely[0]
        raise DataError(f"{where}: class {show(c)} comes from one group only ({spread[c][0]}), so the fold that tests "
                        "it trains on the other class alone; each of two classes needs samples from at least 2 "
                        "groups (subjects)")
    rare = [f"{show(c)} ({n})" for c, n in zip(classes, counts, strict=True) if n < folds]
    if rare:
        logger.warning("%s: classes with fewer samples than the %d folds are missing from some test folds: %s",
                       where, folds, ", ".join(rare[:5]))


def _outer_splits(y: np.ndarray, g: np.ndarray, task: TaskKind, folds: int, seed: int) -> list[tuple[np.ndarray,
                                                                                               np.ndarray]]:
    """`grouped_splits` for labels `check_learnable` accepted; a training fold with a single class is refused
    (scikit-learn's own warning about rare classes is replaced by `check_learnable`'s)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = grouped_splits(y, g, task=task, folds=folds, seed=seed)
    for k, (train, _) in enumerate(splits):
        if task == "classification" and len(np.unique(y[train])) < 2:
            raise DataError(f"probe labels: the training rows of fold {k + 1} (seed {seed}) hold a single class "
                            f"{np.unique(y[train]).tolist()}; use fewer folds or more subjects per class")
    return splits


def _fit_attentive(x: np.ndarray, y: np.ndarray, g: np.ndarray, task: TaskKind, attentive: AttentiveConfig | None,
                   seed: int, fold: int) -> Any:
    """An attentive probe tuned and fitted on one training fold (its subjects `g` keep the validation split
    grouped), seeded by (config seed, split seed, fold)."""
    from dataclasses import replace

    config = attentive or AttentiveConfig()
    fold_seed = int(np.random.SeedSequence([config.seed, seed, fold]).generate_state(1)[0])
    return AttentiveProbe(task, replace(config, seed=fold_seed)).fit(x, y, g)


def _fit(x: np.ndarray, y: np.ndarray, g: np.ndarray, task: TaskKind, inner_folds: int, seed: int,
         Cs: Sequence[float], alphas: Sequence[float]) -> tuple[Any, int]:
    """Standardise + linear model, hyper-parameter chosen by grouped inner CV; returns (fitted, #unconverged)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    k = min(inner_folds, len(np.unique(g)))
    if task == "classification":
        k = min(k, int(np.unique(y, return_counts=True)[1].min()))
        est, grid, scoring = LogisticRegression(max_iter=1000), {"logisticregression__C": list(Cs)}, "neg_log_loss"
    else:
        est, grid, scoring = Ridge(), {"ridge__alpha": list(alphas)}, "neg_mean_squared_error"
    pipe = make_pipeline(StandardScaler(), est)
    # One BLAS thread: these fits are many small matrix products, where threaded BLAS only adds overhead
    # (10x slower on a busy 2-core machine).
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(1, user_api="blas"):
        warnings.simplefilter("always", ConvergenceWarning)
        if k >= 2:
            inner = grouped_splits(y, g, task=task, folds=k, seed=seed)
            fitted = GridSearchCV(pipe, grid, cv=inner, scoring=scoring, error_score="raise").fit(x, y)
        else:
            # Too few groups (or members of a class) for an inner CV: the middle of the grid, logged.
            logger.warning("training fold too small for inner CV (%d groups); using the grid's middle value", k)
            key, values = next(iter(grid.items()))
            fitted = pipe.set_params(**{key: values[len(values) // 2]}).fit(x, y)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return fitted, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def _score(model: Any, x: np.ndarray, pred: np.ndarray, y: np.ndarray, task: TaskKind,
           classes: np.ndarray | None) -> dict[str, float]:
    if task == "regression":
        return regression_metrics(y, pred)
    proba = model.predict_proba(x)
    score = np.zeros((len(x), len(classes)))
    # A training fold may lack a class: its column stays 0, others keep their place in the full class list.
    score[:, np.searchsorted(classes, model.classes_)] = proba
    return classification_metrics(y, pred, score, labels=classes)


def probe_models(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray | None = None,
    *,
    label: str = "label",
    task: TaskKind | None = None,
    folds: int = 5,
    seeds: int = 3,
    inner_folds: int = INNER_FOLDS,
    head: Head = "linear",
    attentive: AttentiveConfig | None = None,
) -> ProbeTable:
    """The same probe (same splits, same grids) on several feature sets: one row per entry of `features`.

    Args:
        features: name -> [N, F] features; all share the rows of `labels` / `groups`.
        labels, groups, task, folds, seeds, inner_folds: as in `probe` (missing labels dropped once, logged).
        label: name of the label, for the table's caption.
        head, attentive: as in `probe`; the attentive head reads token sets [N, tokens, D], while [N, F] sets
            (such as FC) have no tokens and keep the linear probe.
    """
    labels = np.asarray(labels)
    names = list(features)
    arrays = [np.asarray(features[n]) for n in names]
    bad = [n for n, a in zip(names, arrays, strict=True) if len(a) != len(labels)]
    if bad:
        raise DataError(f"probe: feature sets {bad} do not have one row per label ({len(labels)} rows)")
    g = np.arange(len(labels)) if groups is None else np.asarray(groups)
    y, g, *arrays = drop_missing(labels, g, *arrays, what=f"{label!r} label")
    task = task or infer_task(y)
    check_learnable(y, g, task, folds, f"label {label!r}")
    table = ProbeTable(label, task)
    for name, x in zip(names, arrays, strict=True):
        logger.info("probing %s features %s for %r (%s)", name, list(x.shape), label, task)
        if head == "attentive" and x.ndim == 3:
            result = probe(x, y, g, task=task, folds=folds, seeds=seeds, head=head, attentive=attentive)
        else:  # vectors (e.g. FC): the linear head, whatever the token rows use
            result = probe(x, y, g, task=task, folds=folds, seeds=seeds, inner_folds=inner_folds)
        table.results[name] = result
    return table


def probe_store(
    data: RunStore | str | Path,
    label: str,
    *,
    model: BrainJEPA | str | Path | None = None,
    embeddings: str | Path | None = None,
    gradient: str | Path | None = None,
    task: TaskKind | None = None,
    groups: str = "subject",
    folds: int = 5,
    seeds: int = 3,
    baselines: Sequence[str] = BASELINES,
    pooling: Pooling | None = None,
    options: EmbedOptions | None = None,
    random_init_seed: int = 0,
    head: Head = "linear",
    attentive: AttentiveConfig | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> ProbeTable:
    """Probe a store's phenotype `label` with Brain-JEPA embeddings beside the baselines (`brainjepa probe`).

    Args:
        data: the store (or its path) holding the runs and the label column.
        label: phenotype column to predict.
        model: model to embed with (a BrainJEPA, or a folder / checkpoint `BrainJEPA.load` reads).
        embeddings: instead of `model`, a file written by `save_embeddings`; rows are matched to runs by
            (subject, run). The random-init baseline needs a model and is skipped then (logged).
        gradient: gradient CSV, for a reference ``jepa-ep*.pth.tar`` `model`.
        task: "classification" / "regression"; None infers it from the label.
        groups: column whose values stay on one side of every split (default subject).
        folds, seeds: outer CV folds and repetitions.
        baselines: any of "random-init" (same architecture, seed `random_init_seed`, same embedding options)
            and "fc" (whole-run Fisher-z functional connectivity).
        pooling: for the brainjepa and random-init rows, `pooling_for_head` (None: the head's default): with
            the linear head "roi" (per-ROI means flattened, [N, R*D], the default), "mean" (the reference's
            global pool, [N, D]) or "tokenfc" (token FC, the Fisher-z ROI x ROI correlation of each ROI's
            centred token trajectory, [N, R(R-1)/2]); with the attentive head "tokens" (all R*P tokens, the
            default) or "roi" (R tokens). The linear default "roi" was chosen in-sample, by the recipe study on
            the same data it was then reported on (benchmarks/RESULTS.md), not on a held-out split.
        head, attentive: the probe on those rows (`probe`); FC always gets the linear probe.
        options: embedding options (windows, normalisation, encoder, device...); default `scoring_options()`
            (fp32, so that the scores do not depend on this machine's stored timings).
        out: folder for probe.csv / probe.md / probe_folds.csv (None: nothing written).
        progress: show progress bars.

    Raises:
        DataError: the label or group column does not exist (available ones listed), a bad label (all missing,
            non-finite, text for a regression, a single class, too few subjects for the folds; see
            `brainjepa.evaluation.labels.read_labels`), embeddings rows that match no run.
        ConfigError: neither or both of `model` and `embeddings`, an unknown baseline, a pooling the head cannot
            read, or pooling / options / gradient with `embeddings` (they apply to embedding with a model).
    """
    if (model is None) == (embeddings is None):
        raise ConfigError("probe needs exactly one of a model (model=, --model) or an embeddings file (embeddings=, "
                          "--embeddings)")
    check_head_settings(head, attentive)
    if out is not None:
        check_writable(out, folder=True)
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ConfigError(f"unknown baselines {unknown}; choose from {list(BASELINES)}")
    if embeddings is not None:
        given = [name for name, value in (("pooling", pooling), ("options", options), ("gradient", gradient),
                                          ("random_init_seed", random_init_seed or None)) if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} {'apply' if len(given) > 1 else 'applies'} to embedding with a "
                              "model, not to an embeddings file")
    else:
        pooling = pooling_for_head(head, pooling)
        options = options or scoring_options()
    check_value("probe folds (--folds)", folds, integer=True, ge=2)
    check_value("probe random_init_seed (--random-init-seed)", random_init_seed, integer=True, ge=0)
    check_value("probe seeds (--seeds)", seeds, integer=True, ge=1)
    store, _ = open_runs(data, None)
    labels = read_labels(store, label, task, groups=groups, folds=folds)  # refused here, before any embedding
    check_learnable(labels.values, labels.groups, labels.task, folds, f"{store.path}: label {label!r}")
    features: dict[str, np.ndarray] = {}
    if embeddings is not None:
        loaded = load_embeddings(embeddings)
        rows = _match_runs(store, loaded.index, embeddings)
        keep = np.isin(rows, labels.runs)
        if not keep.any():
            raise DataError(f"{embeddings}: no embedding row belongs to a run with a {label!r} label")
        runs = rows[keep]
        features["brainjepa"] = loaded.embeddings.numpy()[keep]
    else:
        model = BrainJEPA.load(model, gradient=gradient)
        runs = labels.runs
        emb = embed_store(model, store, indices=runs, pooling=pooling, options=options,
                          progress=progress).embeddings
        features["brainjepa"] = emb.numpy()
    if "random-init" in baselines:
        if model is None:
            logger.warning("random-init baseline skipped: it needs the model's architecture (model=, --model)")
        else:
            fresh = random_init_like(model, seed=random_init_seed)
            emb = embed_store(fresh, store, indices=runs, pooling=pooling, options=options, progress=progress)
            features["random-init"] = emb.embeddings.numpy()
    if "fc" in baselines:
        subjects = store.manifest["subject"].astype(str).to_numpy()
        features["fc"] = functional_connectivity((store.run(int(i)) for i in runs),
                                                 names=(f"subject {subjects[i]!r}" for i in runs))
    named = {ROW_NAMES[k]: v for k, v in features.items()}
    y, g = labels.at(runs)
    table = probe_models(named, y, g, label=label, task=labels.task, folds=folds, seeds=seeds, head=head,
                         attentive=attentive)
    if out is not None:
        table.save(out)
    return table


# Poolings each head can read, its default first: per-ROI means for the linear probe (recipe study: condition
# balanced accuracy 0.498 vs 0.399 with the mean over all tokens, benchmarks/RESULTS.md). That default was picked
# in-sample (the study chose it on the data it reported it on), so it is a convention, not a held-out result.
POOLINGS_FOR_HEAD: dict[str, tuple[str, ...]] = {"linear": ("roi", "mean", "tokenfc"),
                                                 "attentive": ("tokens", "roi")}


def pooling_for_head(head: Head, pooling: str | None) -> str:
    """The pooling a head reads (None: its default, the first of `POOLINGS_FOR_HEAD`, the best measured in the
    recipe study, benchmarks/RESULTS.md, chosen in-sample); a pooling the head cannot use is refused: the
    attentive head needs tokens [N, tokens, D], the linear one takes vectors ([D], [R, D] flattened, or the
    [R(R-1)/2] token FC)."""
    allowed = POOLINGS_FOR_HEAD
    if head not in allowed:
        raise ConfigError(f"probe head must be one of {list(HEADS)}, got {head!r}")
    if pooling is None:
        return allowed[head][0]
    if pooling not in allowed[head]:
        names = [repr(k) for k in allowed[head]]
        choices = f"{', '.join(names[:-1])} or {names[-1]}"
        raise ConfigError(f"{head} probe: pooling must be {choices}, got {pooling!r}")
    return pooling


def _match_runs(store: RunStore, index: pandas.DataFrame, source: str | Path) -> np.ndarray:
    """Store run index of every embeddings row, matched on (subject, run)."""
    manifest = store.manifest
    where = {(s, r): i for i, (s, r) in enumerate(zip(manifest["subject"].astype(str),
                                                      manifest["run"].astype(str), strict=True))}
    keys = list(zip(index["subject"].astype(str), index["run"].astype(str), strict=True))
    missing = [k for k in keys if k not in where]
    if missing:
        raise DataError(f"{source}: {len(missing)} embedding rows match no run of {store.path}, "
                        f"e.g. subject {missing[0][0]!r} run {missing[0][1]!r}")
    return np.array([where[k] for k in keys], dtype=np.int64)

