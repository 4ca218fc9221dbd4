"""`brainjepa evaluate`: does pretraining help? One fixed suite of labelled tasks, each scored for the pretrained
encoder beside the baselines it has to beat, against a permutation null, with intervals over subjects and seeds.

Tasks (`TASKS`; `DEFAULT_TASKS` leaves out the confounded one): the connattractor heat-pain sample (real fMRI
shipped on PyPI, fetched by the samples mechanism) and a small simulation generated here with a fixed seed. Rows
(`brainjepa.evaluation.feature_sets`), all computed from the frames the encoders see and scored on the same units:
the model(s) and random-init encoders read out by each pooling (ROI mean, token FC, ...), a no-learning patch
embedding, the raw window, GLM betas, FC, tangent and whole-run FC.

Classification and regression tasks are probed by the closed-form ridge of `brainjepa.evaluation.ridge`
(subject-grouped folds repeated over seeds, scaling and penalty chosen inside folds, the same splits for every row),
or, with `head="attentive"`, the encoder and patch-embedding rows by the attentive head; the same pipeline
refitted on permuted labels gives each row's null (`brainjepa.evaluation.nulls`). Identification needs no training
(`brainjepa.evaluation.identification`). The tasks and options are defined in `brainjepa.evaluation.tasks`, the
statistics in `brainjepa.evaluation.results`, the tables, files and figure in `brainjepa.report.tables` and
`brainjepa.report.figures`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from brainjepa.data.samples import prepare_sample
from brainjepa.data.simulate import SimulationConfig, simulate_store
from brainjepa.data.store import RunStore, check_num_rois
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.baselines import random_init_like
from brainjepa.evaluation.embed import EmbedOptions
from brainjepa.evaluation.feature_sets import READOUT_NAMES, FeatureSet, dataset_feature_sets
from brainjepa.evaluation.identification import identification_null, identify_subjects
from brainjepa.evaluation.labels import read_labels
from brainjepa.evaluation.nulls import permutations, score_many
from brainjepa.evaluation.probe import check_learnable, probe
from brainjepa.evaluation.results import RowResult, SuiteResult, TaskResult
from brainjepa.evaluation.ridge import RidgeCV, cv_plan, decode, encode
from brainjepa.evaluation.tasks import (
    DATASETS,
    DEFAULT_POOLINGS,
    DEFAULT_TASKS,
    POOLINGS_FOR_HEAD,
    PRIMARY_METRIC,
    SIMULATION,
    SPLITS,
    TASKS,
    SuiteOptions,
    Task,
    default_tasks,
)
from brainjepa.io import check_writable
from brainjepa.models import BrainJEPA
from brainjepa.report.tables import save_suite

logger = logging.getLogger(__name__)

SIM_SEED = 0  # the suite's simulation is always the same data set for a given model shape
SIM_TR = 2.0
PERMUTATION_SEED = 0  # the same permutations for every row of a task, and from one call to the next
SPLIT_SEED = 0  # which subjects form the selection half (`SuiteOptions.split`)


# ------------------------------------------------------------------------------------------ running
def evaluate(
    model: BrainJEPA | str | Path | Sequence[BrainJEPA | str | Path],
    out: str | Path | None = None,
    options: SuiteOptions | None = None,
    *,
    gradient: str | Path | None = None,
    progress: bool = True,
) -> SuiteResult:
    """Run the suite for `model`: one model, or several of the same architecture (pretraining seeds), whose rows
    are averaged and whose intervals resample them (two-level bootstrap).

    A model is a BrainJEPA, a model/run folder, an official checkpoint + `gradient`, or a Hub id. Data sets the
    model cannot read (another ROI count, runs too short for its window) or cannot be had (the connattractor
    sample offline) skip their tasks with the reason, as do tasks whose labels are unusable, and rows that cannot
    be computed (GLM without event files).

    Args:
        model: the pretrained model, or a sequence of models.
        out: folder for the tables, figure and the suite's stores (None: a temporary folder, nothing kept).
        options: `SuiteOptions` (default: `DEFAULT_TASKS`, 5 folds x 3 seeds, linear head on ROI mean and token
            FC, 3 random-init seeds, 200 permutations).
        gradient: gradient CSV of an official checkpoint.
        progress: tqdm bars.

    Raises:
        ConfigError: models of different architectures.
    """
    import tempfile

    from tqdm.auto import tqdm

    options = options or SuiteOptions()
    given = list(model) if isinstance(model, list | tuple) else [model]
    if not given:
        raise ConfigError("evaluate needs at least one model")
    if out is not None:
        check_writable(out, folder=True)
    for name, path in options.stores.items():  # a given store that cannot be read is an error, not a skipped task
        try:
            RunStore(path)
        except DataError as err:
            raise DataError(f"--store {name}: {err}") from None
    names = [str(m) if not hasattr(m, "config") else "" for m in given]
    models = [BrainJEPA.load(m, gradient=gradient) for m in given]
    if any(m.config != models[0].config for m in models[1:]):
        raise ConfigError("evaluate: the models differ in architecture; several models must be seeds of one recipe")
    fresh = [random_init_like(models[0], seed=s) for s in options.random_init_seeds]
    tasks = [TASKS[t] for t in TASKS if t in options.tasks]
    results: dict[str, TaskResult] = {}
    embeddings: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp, tqdm(total=len(tasks), desc="evaluate", unit="task",
                                                   disable=not progress) as bar:
        root = Path(out) / "stores" if out is not None else Path(tmp)
        for dataset in dict.fromkeys(t.dataset for t in tasks):
            todo = [t for t in tasks if t.dataset == dataset]
            try:
                store = _dataset_store(dataset, root / dataset, models[0], options, progress)
                check_num_rois(store, models[0].config.num_rois)
                own_simulation = dataset == SIMULATION and dataset not in options.stores  # shaped to the model:
                embed = replace(options.embed, check_roi_labels=False) if own_simulation else options.embed  # no labels
                sets, _ = dataset_feature_sets(store, models, fresh, poolings=options.encoder_poolings,
                                               head=options.head, options=embed, cache=options.cache,
                                               progress=progress)
            except DataError as err:
                reason = f"{dataset} data: {err}"
                logger.warning("skipping %s: %s", ", ".join(t.name for t in todo), reason)
                results.update({t.name: TaskResult(t, reason=reason) for t in todo})
                bar.update(len(todo))
                continue
            embeddings[dataset] = _first_embeddings(sets)
            keep = _split_runs(store, options.split)
            for task in todo:
                try:
                    # One BLAS thread: many small eigendecompositions and products, which threads only slow
                    # down (10-100x on a busy 2-core machine).
                    with threadpool_limits(1, user_api="blas"):
                        results[task.name] = _run_task(task, store, sets, keep, options)
                except DataError as err:
                    logger.warning("skipping %s: %s", task.name, err)
                    results[task.name] = TaskResult(task, reason=str(err))
                bar.update(1)
        result = SuiteResult([results[t.name] for t in tasks], options, models=names, embeddings=embeddings)
        if out is not None:
            save_suite(result, out)
    return result


def _first_embeddings(sets: list[FeatureSet]) -> dict[str, np.ndarray]:
    """The first readout's embeddings of the first model and the first random-init seed (the quickstart's PCA)."""
    out = {}
    for fs in sets:
        if fs.method in ("brainjepa", "random-init") and fs.method not in out and fs.values:
            out[fs.method] = fs.values[0]
    return out


def _split_runs(store: RunStore, split: str) -> np.ndarray:
    """Store run indices of the subjects in the split: all, or the selection / report half (a fixed shuffle)."""
    subjects = store.manifest["subject"].astype(str).to_numpy()
    if split == "all":
        return np.arange(len(store))
    names = np.unique(subjects)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(names))
    half = set(names[order[: len(names) // 2]].tolist())
    chosen = [s in half if split == "selection" else s not in half for s in subjects]
    return np.flatnonzero(chosen)


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


def _run_task(task: Task, store: RunStore, sets: list[FeatureSet], keep: np.ndarray,
              options: SuiteOptions) -> TaskResult:
    if task.kind == "identification":
        return _identification(task, store, sets, keep, options)
    return _probe_task(task, store, sets, keep, options)


def _identification(task: Task, store: RunStore, sets: list[FeatureSet], keep: np.ndarray,
                    options: SuiteOptions) -> TaskResult:
    """Identification with each row's features of the kept runs (tangent: reference fitted on them)."""
    subjects = store.manifest["subject"].astype(str).to_numpy()[keep]
    sessions = store.manifest["run"].astype(str).to_numpy()[keep]
    rows: dict[str, RowResult] = {}
    first = None
    for fs in sets:
        if fs.reason:
            rows[fs.name] = _row(fs, reason=fs.reason)
            continue
        if fs.readout == READOUT_NAMES["tokens"]:
            rows[fs.name] = _row(fs, reason="token sets are read by the attentive probe only, not matched")
            continue
        found = [identify_subjects(fs.label_free(keep, m), subjects, sessions) for m in range(fs.seeds)]
        first = first or found[0]
        rows[fs.name] = _row(fs, predictions=np.stack([f.matched[None] for f in found]),
                             null=identification_null(found, options.permutations, PERMUTATION_SEED),
                             by_pair={p: [f.by_pair()[p] for f in found] for p in found[0].by_pair()})
    if first is None:
        raise DataError("identification: no row could be computed")
    return TaskResult(task, truth=first.subjects, rows=rows, subjects=first.subjects, units=first.pairs,
                      chance=first.chance, n_runs=len(keep), scheme="database subjects shuffled per session pair",
                      permutations=options.permutations)


def _task_runs(task: Task, store: RunStore, keep: np.ndarray, options: SuiteOptions):
    """(store runs, labels, subjects) of a probe task, after its run / class restrictions and the split."""
    labels = read_labels(store, task.label, task.kind, folds=options.folds)
    manifest = store.manifest
    runs = labels.runs[np.isin(labels.runs, keep)]
    if task.runs is not None:
        runs = runs[np.isin(manifest["run"].astype(str).to_numpy()[runs], task.runs)]
    y, groups = labels.at(runs)
    if task.classes is not None:
        chosen = np.isin(np.asarray(y).astype(str), task.classes)
        runs, y, groups = runs[chosen], y[chosen], groups[chosen]
    subjects = manifest["subject"].astype(str).to_numpy()[runs]
    if task.within_subject:
        several = np.isin(subjects, [s for s in np.unique(subjects) if np.sum(subjects == s) >= 2])
        runs, y, groups, subjects = runs[several], y[several], groups[several], subjects[several]
        y = np.asarray(y, dtype=np.float64) - _subject_means(np.asarray(y, dtype=np.float64), subjects)
    if len(np.unique(groups)) < options.folds:
        raise DataError(f"{task.name}: {len(np.unique(groups))} subjects cannot make {options.folds} folds")
    check_learnable(y, groups, task.kind, options.folds, f"{task.name}: labels of {store.path}")
    return runs, y, groups, subjects


def _subject_means(values: np.ndarray, subjects: np.ndarray) -> np.ndarray:
    """Each row's subject mean of `values` (rows [N, ...])."""
    out = np.empty_like(values, dtype=np.float64)
    for s in np.unique(subjects):
        out[subjects == s] = values[subjects == s].mean(0)
    return out


def _probe_task(task: Task, store: RunStore, sets: list[FeatureSet], keep: np.ndarray,
                options: SuiteOptions) -> TaskResult:
    runs, y, groups, subjects = _task_runs(task, store, keep, options)
    plan = cv_plan(y, groups, task=task.kind, folds=options.folds, seeds=options.seeds)
    perms = permutations(groups, task.permute, options.permutations, seed=PERMUTATION_SEED)
    targets, classes = encode(y, task.kind)
    all_targets = np.concatenate([targets[None], targets[perms]])  # [1 + P, N, K]
    permuted_truth = np.asarray(y)[perms]
    rows: dict[str, RowResult] = {}
    for fs in sets:
        if fs.reason:
            rows[fs.name] = _row(fs, reason=fs.reason)
            continue
        logger.info("%s: probing %s", task.name, fs.name)
        predictions, nulls = [], []
        for m in range(fs.seeds):
            x = fs.rows(runs, m)
            if task.within_subject:
                x = _centred_within(x, subjects)
            if fs.head == "attentive":
                res = probe(x, y, groups, task=task.kind, folds=options.folds, seeds=options.seeds,
                            head="attentive", attentive=options.attentive)
                predictions.append(res.predictions)
                continue
            pred = decode(RidgeCV(x, plan).predict(all_targets, balanced=classes is not None), classes)  # [1+P, S, N]
            predictions.append(pred[0])
            nulls.append(score_many(task.metric, permuted_truth, pred[1:]))
        rows[fs.name] = _row(fs, predictions=np.stack(predictions),
                             null=np.mean(nulls, axis=0) if nulls else None)
    chance = 1.0 / len(classes) if classes is not None else 0.0
    return TaskResult(task, truth=np.asarray(y), rows=rows, subjects=subjects,
                      units=store.manifest["run"].astype(str).to_numpy()[runs], chance=chance, n_runs=len(runs),
                      scheme=f"labels shuffled {task.permute}", permutations=options.permutations)


def _centred_within(x: np.ndarray | Callable, subjects: np.ndarray) -> np.ndarray | Callable:
    """Features minus their subject's mean (label-free; a subject's runs are always on one side of a split)."""
    if callable(x):
        def centred(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            a, b = x(train, test)
            return a - _subject_means(a, subjects[train]), b - _subject_means(b, subjects[test])
        return centred
    values = np.asarray(x, dtype=np.float64)  # any shape [N, ...]: token sets stay sets for the attentive head
    return values - _subject_means(values, subjects)


def _row(fs: FeatureSet, **values: Any) -> RowResult:
    return RowResult(fs.name, method=fs.method, readout=fs.readout, head=fs.head, note=fs.note,
                     seeds=fs.seeds, **values)


# Tasks, options, results and identification live in their own modules; importable from here as before.
__all__ = ["DATASETS", "DEFAULT_POOLINGS", "DEFAULT_TASKS", "POOLINGS_FOR_HEAD", "PRIMARY_METRIC", "READOUT_NAMES",
           "SPLITS", "TASKS", "SuiteOptions", "SuiteResult", "Task", "TaskResult", "default_tasks",
           "evaluate", "identify_subjects"]
