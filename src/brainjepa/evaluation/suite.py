"""`brainjepa evaluate`: does pretraining help? One fixed suite of labelled tasks, each scored for the pretrained
encoder beside the baselines it has to beat, with paired differences and their confidence intervals.

Tasks (`TASKS`): the connattractor heat-pain sample (real fMRI shipped on PyPI, fetched by the samples mechanism)
and a small simulation generated here with a fixed seed. Methods (`METHODS`), all scored on the same units:

* ``brainjepa``: the model's frozen embeddings (`embed_store` with the suite's pooling and embedding options);
* ``random-init``: the same architecture with fresh weights (`random_init_like`), embedded the same way;
* ``FC``: whole-run Pearson correlations, Fisher z (`functional_connectivity`);
* ``tangent``: tangent-space connectivity (nilearn ``ConnectivityMeasure(kind="tangent")``), whose reference
  mean is fitted on the training runs of each fold only (`TangentFeatures`).

Classification and regression tasks use `brainjepa.evaluation.probe.probe` (subject-grouped folds repeated over
seeds, the same splits for every method); subject identification needs no training (`identify_subjects`).
Every score and every difference between methods gets a subject-level bootstrap interval
(`brainjepa.evaluation.metrics.bootstrap_interval` / `paired_bootstrap`) over the out-of-fold predictions of all
seeds (or the matches of identification): subjects are resampled, because the runs of one subject are not
independent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from brainjepa.bounds import bounded, check_bounds
from brainjepa.data.samples import prepare_sample
from brainjepa.data.simulate import SimulationConfig, simulate_store
from brainjepa.data.store import RunStore
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.attentive import AttentiveConfig
from brainjepa.evaluation.baselines import functional_connectivity, random_init_like
from brainjepa.evaluation.embed import EmbedOptions, embed_store, load_model
from brainjepa.evaluation.labels import read_labels
from brainjepa.evaluation.metrics import MIN_BOOTSTRAP, PairedDiff, bootstrap_interval, paired_bootstrap
from brainjepa.evaluation.probe import HEADS, Head, ProbeTable, pooling_for_head, probe
from brainjepa.io import atomic_write_text
from brainjepa.models import BrainJEPA

if TYPE_CHECKING:
    import pandas

logger = logging.getLogger(__name__)

Kind = Literal["identification", "classification", "regression"]
ENCODERS = ("brainjepa", "random-init")
CONNECTIVITY = ("FC", "tangent")
METHODS = ENCODERS + CONNECTIVITY
PRIMARY_METRIC = {"identification": "accuracy", "classification": "balanced_acc", "regression": "pearson_r"}
SIM_SEED = 0  # the suite's simulation is always the same data set for a given model shape
SIM_TR = 2.0
BOOTSTRAP_SEED = 0  # the same subject resamples for every interval of a task, and from one call to the next
COLUMNS = ("task", "kind", "metric", "row", "type", "mean", "ci_low", "ci_high", "units", "n_units", "n_runs",
           "chance", "status", "reason")
UNIT_COLUMNS = ("task", "metric", "method", "seed", "subject", "unit", "truth", "prediction")


@dataclass(frozen=True)
class Task:
    """One labelled task: `label` is the store column (None for identification, which uses subject ids)."""

    name: str
    dataset: str
    kind: Kind
    label: str | None
    about: str


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("connattractor/identification", "connattractor", "identification", None,
             "which subject a run belongs to, matched to that subject's other runs by feature correlation"),
        Task("connattractor/condition", "connattractor", "classification", "condition",
             "run-level pain regulation instruction: none (passive), up or down"),
        Task("connattractor/rating", "connattractor", "regression", "mean_rating",
             "run-level mean pain rating"),
        Task("simulation/group", "simulation", "classification", "group",
             "simulated group: one network module crosses the Hopf bifurcation"),
        Task("simulation/coupling", "simulation", "regression", "coupling",
             "simulated global coupling strength"),
    )
}
DATASETS = tuple(dict.fromkeys(t.dataset for t in TASKS.values()))


@dataclass(frozen=True)
class SuiteOptions:
    """Everything that decides the suite's numbers (the model aside).

    Args:
        tasks: names from `TASKS` (default all), run in that table order.
        folds, seeds: outer subject-grouped folds and their repetitions (`probe`).
        head: "linear" or "attentive" probe for the brainjepa and random-init rows (FC rows are always linear).
        pooling: the encoder rows' pooling (`pooling_for_head`; None: "roi" for linear, "tokens" for attentive).
        embed: windows, normalisation, layer, encoder... of the encoder rows (`EmbedOptions`).
        attentive: hyper-parameters of the attentive head.
        random_init_seed: weight seed of the random-init encoder.
        confidence: coverage of every interval.
        bootstrap: subject resamples of every interval (`bootstrap_interval`, `paired_bootstrap`).
        sim_subjects: subjects of the simulated data set (one run each).
        stores: dataset name -> an already prepared store to use instead of fetching or simulating it.
        cache: sample cache folder (default: the samples mechanism's, `default_cache_dir`).
    """

    tasks: tuple[str, ...] = tuple(TASKS)
    folds: int = bounded(5, ge=2)
    seeds: int = bounded(3, ge=1)
    head: Head = "linear"
    pooling: str | None = None
    embed: EmbedOptions = field(default_factory=EmbedOptions)
    attentive: AttentiveConfig = field(default_factory=AttentiveConfig)
    random_init_seed: int = bounded(0, ge=0)
    confidence: float = bounded(0.95, gt=0, lt=1)
    bootstrap: int = bounded(2000, ge=MIN_BOOTSTRAP)
    sim_subjects: int = bounded(60, ge=4)
    stores: Mapping[str, str | Path] = field(default_factory=dict)
    cache: str | Path | None = None

    def __post_init__(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ConfigError(f"unknown evaluation tasks {unknown}; choose from {list(TASKS)}")
        check_bounds(self, "evaluate")
        if self.head not in HEADS:
            raise ConfigError(f"evaluate.head must be one of {list(HEADS)}, got {self.head!r}")
        pooling_for_head(self.head, self.pooling)
        bad = [name for name in self.stores if name not in DATASETS]
        if bad:
            raise ConfigError(f"--store names {bad} are not suite data sets; choose from {list(DATASETS)}")

    @property
    def encoder_pooling(self) -> str:
        return pooling_for_head(self.head, self.pooling)


# ------------------------------------------------------------------------------------------ identification
@dataclass(frozen=True)
class Identification:
    """Subject identification across runs: one entry per query (a run matched against another session).

    Attributes:
        subjects: the subject of each query run [Q].
        pairs: the sessions of each query, "a->b" (run of session a matched among the runs of session b) [Q].
        matched: the subject each query was matched to [Q].
        chance: expected accuracy of a random match: mean over queries of 1 / candidates.
    """

    subjects: np.ndarray
    pairs: np.ndarray
    matched: np.ndarray
    chance: float

    @property
    def queries(self) -> int:
        return len(self.subjects)

    @property
    def accuracy(self) -> float:
        """Fraction of the queries matched to their own subject."""
        return float(np.mean(self.matched == self.subjects)) if self.queries else math.nan


def identify_subjects(features: np.ndarray, subjects: Sequence, sessions: Sequence) -> Identification:
    """Match each run to the runs of another session by Pearson correlation of features (no training).

    For every ordered pair of sessions (a, b) (the store's ``run`` labels), the subjects that have both are the
    candidates: each one's session-a run is assigned the candidate whose session-b run correlates best with it,
    and is correct when that is the same subject. Before correlating, each session's features are centred by
    their mean over that session's runs, so the pattern every run shares does not dominate the correlations.

    Args:
        features: [N, ...] one row per run (flattened).
        subjects, sessions: [N] subject and session of each run; a subject has at most one run per session.

    Raises:
        DataError: mismatched lengths, a subject with two runs in one session, or no pair of sessions with two
            or more subjects in common.
    """
    x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    subj, sess = np.asarray(subjects).astype(str), np.asarray(sessions).astype(str)
    if not len(x) == len(subj) == len(sess):
        raise DataError(f"identification: {len(x)} feature rows, {len(subj)} subjects, {len(sess)} sessions")
    where: dict[str, dict[str, int]] = {}
    for i, (s, r) in enumerate(zip(subj.tolist(), sess.tolist(), strict=True)):
        if r in where.setdefault(s, {}):
            raise DataError(f"identification: subject {s!r} has two runs labelled {r!r}")
        where[s][r] = i
    found: list[tuple[str, str, str]] = []  # (subject, "a->b", matched subject)
    inverse_candidates: list[float] = []
    labels = sorted(set(sess))
    for a in labels:
        for b in labels:
            both = sorted(s for s, runs in where.items() if a in runs and b in runs) if a != b else []
            if len(both) < 2:
                continue
            query = _row_zscore(_centre(x[[where[s][a] for s in both]]))
            database = _row_zscore(_centre(x[[where[s][b] for s in both]]))
            best = (query @ database.T).argmax(1)
            found += [(s, f"{a}->{b}", both[best[k]]) for k, s in enumerate(both)]
            inverse_candidates += [1.0 / len(both)] * len(both)
    if not found:
        raise DataError("identification needs two sessions (runs) shared by at least two subjects; "
                        f"found sessions {labels} with no such pair")
    subject_of, pair, matched = (np.array(column) for column in zip(*found, strict=True))
    return Identification(subject_of, pair, matched, float(np.mean(inverse_candidates)))


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(0, keepdims=True)


def _row_zscore(x: np.ndarray) -> np.ndarray:
    """Rows scaled so that a dot product divided by F is their Pearson correlation (constant rows -> 0)."""
    x = x - x.mean(1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


# ------------------------------------------------------------------------------------------ tangent space
class TangentFeatures:
    """Tangent-space connectivity of a store's runs, with the reference (group mean) covariance fitted on the
    given training runs only, so no test run informs its own features.

    Calling it with (training runs, test runs) returns their vectorised tangent features (diagonal left out);
    fits are cached per training set.
    """

    def __init__(self, series: Sequence[np.ndarray]) -> None:
        self.series = [np.asarray(ts, dtype=np.float64).T for ts in series]  # nilearn takes [T, R]
        self._fitted: dict[bytes, Any] = {}

    def __call__(self, train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from threadpoolctl import threadpool_limits

        train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
        measure = self._fit(train)
        # One BLAS thread: many small eigendecompositions; threads make them 100x slower on a busy machine.
        # One transform call for both sets: nilearn refuses to transform a single run on its own.
        with threadpool_limits(1):
            both = measure.transform([self.series[i] for i in np.concatenate([train, test])])
        return both[: len(train)], both[len(train):]

    def all_runs(self) -> np.ndarray:
        """Features of every run with the reference fitted on all of them (for tasks that use no labels)."""
        everything = np.arange(len(self.series))
        return self(everything, everything[:0])[0]

    def _fit(self, train: np.ndarray) -> Any:
        from nilearn.connectome import ConnectivityMeasure
        from threadpoolctl import threadpool_limits

        key = np.sort(train).tobytes()
        if key not in self._fitted:
            measure = ConnectivityMeasure(kind="tangent", vectorize=True, discard_diagonal=True,
                                          standardize="zscore_sample")
            with threadpool_limits(1):
                self._fitted[key] = measure.fit([self.series[i] for i in train])
        return self._fitted[key]


# ------------------------------------------------------------------------------------------ results
@dataclass(frozen=True)
class TaskStats:
    """A task's statistics: each method's score and brainjepa's paired difference to each other method, with
    their bootstrap intervals, and which connectivity baseline scored higher."""

    scores: dict[str, PairedDiff]
    differences: dict[str, PairedDiff]  # other method -> brainjepa - other
    best_connectivity: str


@dataclass
class TaskResult:
    """One task's outcome: every method's out-of-fold predictions of the same units, or why it was skipped.

    Attributes:
        task: the task.
        reason: why it was skipped ("" when it ran).
        truth: the true label or value of each unit [N] (a run; for identification a query, whose truth is its
            subject).
        predictions: method -> its predictions of the units, [S, N] for S CV seeds (S = 1 for identification).
        subjects: the subject of each unit [N], the bootstrap's resampling unit.
        units: name of each unit [N]: the store's run label, or the "a->b" sessions of an identification query.
        chance: the score of a random guess (balanced accuracy 1 / classes, identification 1 / candidates,
            Pearson r 0).
        n_runs: runs the task used.
        table: the probe table (classification and regression), with every metric per fold.
    """

    task: Task
    reason: str = ""
    truth: np.ndarray = field(default_factory=lambda: np.empty(0))
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    subjects: np.ndarray = field(default_factory=lambda: np.empty(0))
    units: np.ndarray = field(default_factory=lambda: np.empty(0))
    chance: float = math.nan
    n_runs: int = 0
    table: ProbeTable | None = None

    @property
    def skipped(self) -> bool:
        return bool(self.reason)

    @property
    def metric(self) -> str:
        return PRIMARY_METRIC[self.task.kind]

    def stats(self, *, confidence: float = 0.95, n_boot: int = 2000) -> TaskStats:
        """Scores and differences with subject-level bootstrap intervals, all on the same subject resamples."""
        common = {"n_boot": n_boot, "confidence": confidence, "seed": BOOTSTRAP_SEED}
        scores = {m: bootstrap_interval(self.truth, p, self.subjects, self.metric, **common)
                  for m, p in self.predictions.items()}
        differences = {m: paired_bootstrap(self.truth, self.predictions["brainjepa"], p, self.subjects, self.metric,
                                           **common)
                       for m, p in self.predictions.items() if m != "brainjepa"}
        present = [m for m in CONNECTIVITY if m in scores]
        best = max(present, key=lambda m: -math.inf if math.isnan(scores[m].mean) else scores[m].mean)
        return TaskStats(scores, differences, best)


@dataclass
class SuiteResult:
    """All tasks' results; `to_frame` is the table, `save` writes it with the figure. `embeddings`: per data set,
    the encoder rows' features of all its runs in store order (what the quickstart's PCA figure reuses)."""

    results: list[TaskResult]
    options: SuiteOptions
    model: str = ""
    embeddings: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @cached_property
    def stats(self) -> dict[str, TaskStats]:
        """Task name -> its statistics, for the tasks that ran (computed once)."""
        o = self.options
        return {r.task.name: r.stats(confidence=o.confidence, n_boot=o.bootstrap) for r in self.results
                if not r.skipped}

    def method_note(self) -> str:
        """How the intervals were computed, for every table's caption."""
        o = self.options
        return (f"{o.confidence:.0%} confidence intervals from a subject-level bootstrap ({o.bootstrap} resamples "
                "of subjects with replacement, each with all its runs, as runs of one subject are not independent; "
                "percentile limits), paired for differences")

    def rows(self) -> list[dict[str, Any]]:
        """The long table: per task, a score row per method and a difference row per comparison (or one
        skipped row with its reason)."""
        rows: list[dict[str, Any]] = []
        for res in self.results:
            base = {"task": res.task.name, "kind": res.task.kind, "metric": res.metric}
            if res.skipped:
                rows.append({**base, "row": "", "type": "skipped", "status": "skipped", "reason": res.reason})
                continue
            st = self.stats[res.task.name]
            common = {"units": "subject", "n_runs": res.n_runs, "chance": res.chance, "status": "done", "reason": ""}
            named = [(m, "score", d, "") for m, d in st.scores.items()]
            named += [(f"brainjepa - {m}", "difference", d, "") for m, d in st.differences.items()]
            named.append(("brainjepa - best FC", "difference", st.differences[st.best_connectivity],
                          f"best FC is {st.best_connectivity}"))
            rows += [{**base, "row": name, "type": kind, "mean": d.mean, "ci_low": d.low, "ci_high": d.high,
                      "n_units": d.n, **common, "reason": reason} for name, kind, d, reason in named]
        return [{c: r.get(c, math.nan if c in ("mean", "ci_low", "ci_high", "chance") else "") for c in COLUMNS}
                for r in rows]

    def to_frame(self) -> pandas.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=list(COLUMNS))

    def unit_frame(self) -> pandas.DataFrame:
        """Every method's prediction of every unit, per CV seed (empty for identification): what every score and
        interval is computed from."""
        import pandas as pd

        parts = []
        for r in self.results:
            for method, pred in r.predictions.items():
                for seed, row in enumerate(pred):
                    parts.append(pd.DataFrame({
                        "task": r.task.name, "metric": r.metric, "method": method,
                        "seed": "" if r.task.kind == "identification" else seed, "subject": r.subjects,
                        "unit": r.units, "truth": r.truth, "prediction": row}))
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(UNIT_COLUMNS))

    def to_markdown(self, digits: int = 3) -> str:
        """A caption naming the interval method, then one line per task: each method's score [CI], brainjepa's
        differences [CI], or the skip reason."""

        def cell(d: PairedDiff, signed: bool = False) -> str:
            if not np.isfinite(d.mean):
                return "n/a"
            sign = "+" if signed else ""
            ci = f" [{d.low:{sign}.{digits}f}, {d.high:{sign}.{digits}f}]" if np.isfinite(d.low) else ""
            return f"{d.mean:{sign}.{digits}f}{ci}"

        head = ["task", "metric", "chance", *METHODS, "brainjepa - random-init", "brainjepa - best FC", "note"]
        lines = [f"Score [CI] per method; {self.method_note()}.", "",
                 "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for res in self.results:
            if res.skipped:
                cells = [res.task.name, res.metric] + ["–"] * (len(head) - 3) + [f"skipped: {res.reason}"]
            else:
                st = self.stats[res.task.name]
                best = st.best_connectivity
                diff_random = cell(st.differences["random-init"], True) if "random-init" in st.differences else "–"
                cells = [res.task.name, res.metric, f"{res.chance:.{digits}f}",
                         *(cell(st.scores[m]) if m in st.scores else "–" for m in METHODS),
                         diff_random, cell(st.differences[best], True), f"best FC: {best}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def save(self, out: str | Path) -> list[Path]:
        """Write evaluate.csv (the long table), evaluate_units.csv, evaluate.md and evaluate.png into `out`."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        paths = [out / "evaluate.csv", out / "evaluate_units.csv", out / "evaluate.md"]
        atomic_write_text(paths[0], self.to_frame().to_csv(index=False))
        atomic_write_text(paths[1], self.unit_frame().to_csv(index=False))
        atomic_write_text(paths[2], self.markdown_report())
        figure = suite_figure(self, out / "evaluate.png")
        return paths + ([figure] if figure else [])

    def markdown_report(self) -> str:
        o = self.options
        return (
            f"# brainjepa evaluate{f': `{self.model}`' if self.model else ''}\n\n"
            f"Each score is the task metric of all out-of-fold predictions, averaged over the {o.seeds} CV seeds "
            "(identification: of all matches); differences are brainjepa minus the other row on the same runs. "
            f"{o.folds} subject-grouped folds x {o.seeds} seeds; encoder rows: {o.head} head on "
            f"`{o.encoder_pooling}` pooling, layer {o.embed.layer}, {o.embed.windows} window(s), normalisation "
            f"`{o.embed.normalization}`, {o.embed.encoder} encoder.\n\n{self.to_markdown()}\n"
        )


def suite_figure(result: SuiteResult, out: Path) -> Path | None:
    """Per task, each method's score with its interval, and the chance level (None if no task ran)."""
    done = [r for r in result.results if not r.skipped]
    if not done:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(done), figsize=(3.2 * len(done), 3.4), squeeze=False)
    for ax, res in zip(axes[0], done, strict=True):
        scores = result.stats[res.task.name].scores
        methods = list(scores)
        mean = np.array([d.mean for d in scores.values()])
        err = np.array([[d.mean - d.low, d.high - d.mean] for d in scores.values()]).T
        ax.errorbar(range(len(methods)), mean, yerr=np.nan_to_num(err), fmt="o", capsize=4, color="k")
        ax.axhline(res.chance, ls="--", color="grey", lw=1, label="chance")
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_title(res.task.name, fontsize=9)
        ax.set_ylabel(res.metric)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------------------ running
@dataclass
class _Features:
    """Everything the tasks of one data set share: the store and each method's features of all its runs."""

    store: RunStore
    encoded: dict[str, np.ndarray]  # brainjepa / random-init: pooled embeddings [N, ...]
    fc: np.ndarray
    tangent: TangentFeatures


def evaluate(
    model: BrainJEPA | str | Path,
    out: str | Path | None = None,
    options: SuiteOptions | None = None,
    *,
    gradient: str | Path | None = None,
    progress: bool = True,
) -> SuiteResult:
    """Run the suite for `model` (a BrainJEPA, model/run folder, official checkpoint + `gradient`, Hub id).

    Data sets the model cannot read (another ROI count, runs too short for its window) or cannot be had (the
    connattractor sample offline) skip their tasks with the reason, as do tasks whose labels are unusable.

    Args:
        model: the pretrained model.
        out: folder for the table, figure and the suite's stores (None: a temporary folder, nothing kept).
        options: `SuiteOptions` (default: all tasks, 5 folds x 3 seeds, linear head on per-ROI pooling).
        gradient: gradient CSV of an official checkpoint.
        progress: tqdm bars.
    """
    import tempfile

    from tqdm.auto import tqdm

    options = options or SuiteOptions()
    name = str(model) if not hasattr(model, "config") else ""
    model = load_model(model, gradient=gradient)
    fresh = random_init_like(model, seed=options.random_init_seed)
    tasks = [TASKS[t] for t in TASKS if t in options.tasks]
    results: dict[str, TaskResult] = {}
    embeddings: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp, tqdm(total=len(tasks) * len(METHODS), desc="evaluate",
                                                   unit="score", disable=not progress) as bar:
        root = Path(out) / "stores" if out is not None else Path(tmp)
        for dataset in dict.fromkeys(t.dataset for t in tasks):
            todo = [t for t in tasks if t.dataset == dataset]
            try:
                data = _dataset_features(dataset, root / dataset, model, fresh, options, progress)
                embeddings[dataset] = data.encoded
            except DataError as err:
                reason = f"{dataset} data: {err}"
                logger.warning("skipping %s: %s", ", ".join(t.name for t in todo), reason)
                results.update({t.name: TaskResult(t, reason=reason) for t in todo})
                bar.update(len(todo) * len(METHODS))
                continue
            for task in todo:
                try:
                    results[task.name] = _run_task(task, data, options, bar.update)
                except DataError as err:
                    logger.warning("skipping %s: %s", task.name, err)
                    results[task.name] = TaskResult(task, reason=str(err))
        result = SuiteResult([results[t.name] for t in tasks], options, model=name, embeddings=embeddings)
        if out is not None:
            result.save(out)
    return result


def _dataset_features(dataset: str, path: Path, model: BrainJEPA, fresh: BrainJEPA, options: SuiteOptions,
                      progress: bool) -> _Features:
    """Open (or fetch / simulate) the data set, check it fits the model, and compute every method's features."""
    store = _dataset_store(dataset, path, model, options, progress)
    if store.num_rois != model.config.num_rois:
        raise DataError(f"the model takes {model.config.num_rois} ROIs but the {dataset} store {store.path} has "
                        f"{store.num_rois}")
    pooling = options.encoder_pooling
    encoded = {name: embed_store(net, store, pooling=pooling, options=options.embed, progress=progress)
               .embeddings.numpy() for name, net in (("brainjepa", model), ("random-init", fresh))}
    series = [store.run(i) for i in range(len(store))]
    subjects = store.manifest["subject"].astype(str).to_numpy()
    fc = functional_connectivity(series, names=(f"subject {s!r}" for s in subjects))
    return _Features(store, encoded, fc, TangentFeatures(series))


def _dataset_store(dataset: str, path: Path, model: BrainJEPA, options: SuiteOptions, progress: bool) -> RunStore:
    """The store of a data set: as given in `options.stores`, the connattractor sample (downloaded once into
    the sample cache, written as a store at `path`), or the suite's simulation shaped to fit the model."""
    if dataset in options.stores:
        return RunStore(options.stores[dataset])
    if dataset == "connattractor":
        return prepare_sample("connattractor", path, options.cache, overwrite=True, progress=progress)
    cfg = model.config
    config = SimulationConfig(subjects=options.sim_subjects, rois=cfg.num_rois, frames=_sim_frames(cfg.num_frames,
                              options.embed), tr=SIM_TR, seed=SIM_SEED, modules=min(4, cfg.num_rois))
    return simulate_store(path, config, overwrite=True, progress=progress)


def _sim_frames(window: int, embed: EmbedOptions) -> int:
    """Twice the frames one window spans (so several windows differ), at the embedding's stride or TR."""
    step = embed.sampling_rate if embed.target_tr is None else embed.target_tr / SIM_TR
    return 2 * math.ceil(window * step)


def _run_task(task: Task, data: _Features, options: SuiteOptions, advance: Callable[[int], Any]) -> TaskResult:
    if task.kind == "identification":
        return _identification(task, data, advance)
    return _probe_task(task, data, options, advance)


def _identification(task: Task, data: _Features, advance: Callable[[int], Any]) -> TaskResult:
    """Identification with each method's features; the tangent reference is fitted on all runs (no labels are
    involved); token features are first averaged per ROI."""
    store = data.store
    subjects, sessions = store.manifest["subject"], store.manifest["run"]
    features = {name: _identification_features(x, data.store.num_rois) for name, x in data.encoded.items()}
    features["FC"] = data.fc
    features["tangent"] = data.tangent.all_runs()
    found: dict[str, Identification] = {}
    for name, x in features.items():
        found[name] = identify_subjects(x, subjects, sessions)
        advance(1)
    first = next(iter(found.values()))  # every method makes the same queries, in the same order
    return TaskResult(task, truth=first.subjects, predictions={m: r.matched[None] for m, r in found.items()},
                      subjects=first.subjects, units=first.pairs, chance=first.chance, n_runs=len(store))


def _identification_features(x: np.ndarray, num_rois: int) -> np.ndarray:
    if x.ndim == 3 and x.shape[1] != num_rois:  # tokens [N, R*k, D] -> per ROI [N, R, D]
        x = x.reshape(len(x), num_rois, -1, x.shape[-1]).mean(2)
    return x.reshape(len(x), -1)


def _probe_task(task: Task, data: _Features, options: SuiteOptions, advance: Callable[[int], Any]) -> TaskResult:
    labels = read_labels(data.store, task.label, task.kind, folds=options.folds)
    runs = labels.runs
    features: dict[str, np.ndarray | Callable] = {name: x[runs] for name, x in data.encoded.items()}
    features["FC"] = data.fc[runs]
    features["tangent"] = lambda train, test: data.tangent(runs[train], runs[test])
    table = ProbeTable(task.label, labels.task)
    for name, x in features.items():
        logger.info("%s: probing %s", task.name, name)
        head = options.head if name in ENCODERS else "linear"
        table.results[name] = probe(x, labels.values, labels.groups, task=labels.task, folds=options.folds,
                                    seeds=options.seeds, head=head, attentive=options.attentive)
        advance(1)
    chance = 1.0 / len(labels.classes) if labels.task == "classification" else 0.0
    manifest = data.store.manifest
    return TaskResult(
        task, truth=labels.values, predictions={m: r.predictions for m, r in table.results.items()},
        subjects=manifest["subject"].astype(str).to_numpy()[runs], units=manifest["run"].astype(str).to_numpy()[runs],
        chance=chance, n_runs=len(runs), table=table,
    )
