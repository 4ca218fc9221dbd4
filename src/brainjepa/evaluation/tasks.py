"""What `brainjepa evaluate` runs: its tasks (`Task`: a named task of the suite, `TASKS`, `DEFAULT_TASKS`) and the
options that decide its numbers (`SuiteOptions`). `brainjepa.evaluation.suite` runs them (and re-exports these
names). A task's `kind` is "identification" or a `TaskKind` (how a label is learned, `brainjepa.evaluation.labels`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from brainjepa.bounds import bounded, check_bounds, field_default
from brainjepa.errors import ConfigError
from brainjepa.evaluation.attentive import AttentiveConfig
from brainjepa.evaluation.embed import EmbedOptions, scoring_options
from brainjepa.evaluation.labels import TaskKind
from brainjepa.evaluation.metrics import MIN_BOOTSTRAP
from brainjepa.evaluation.nulls import Scheme
from brainjepa.evaluation.probe import HEADS, POOLINGS_FOR_HEAD, Head, check_head_settings

PRIMARY_METRIC = {"identification": "accuracy", "classification": "balanced_acc", "regression": "pearson_r"}
DEFAULT_POOLINGS = {"linear": ("roi", "tokenfc"), "attentive": ("tokens",)}
SPLITS = ("all", "selection", "report")


@dataclass(frozen=True)
class Task:
    """One task of the suite: what is predicted, on which data set, and how it is scored.

    Attributes:
        name, dataset: "dataset/label-ish name" and the data set it runs on.
        kind: "identification", "classification" or "regression".
        label: the store column (None for identification, which uses subject ids).
        about: one line for tables and docs.
        runs: only runs with these store ``run`` labels (None: all).
        classes: only runs whose label is one of these (None: all).
        within_subject: regression on each run's deviation from its subject's mean label, with features centred
            within subject too, so that only within-subject variation is predicted.
        permute: how the permutation null shuffles labels (`brainjepa.evaluation.nulls`).
        confound: non-empty for a task whose label is confounded; the table flags it with this text.
    """

    name: str
    dataset: str
    kind: Literal["identification"] | TaskKind
    label: str | None
    about: str
    runs: tuple[str, ...] | None = None
    classes: tuple[str, ...] | None = None
    within_subject: bool = False
    permute: Scheme = "within-subject"
    confound: str = ""

    @property
    def metric(self) -> str:
        return PRIMARY_METRIC[self.kind]


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("connattractor/identification", "connattractor", "identification", None,
             "which subject a run belongs to, matched to that subject's runs of another session by feature "
             "correlation"),
        Task("connattractor/regulation", "connattractor", "classification", "condition",
             "instructed up- vs down-regulation of pain (runs 03 and 07, counterbalanced within subject)",
             runs=("03", "07"), classes=("down", "up")),
        Task("connattractor/rating", "connattractor", "regression", "mean_rating",
             "run-level mean pain rating, as the run's deviation from its subject's mean", within_subject=True),
        Task("connattractor/condition", "connattractor", "classification", "condition",
             "none (run 01), up or down (runs 03 / 07)",
             confound="confounded: 'none' is exactly run 01 (first in the session, 209 frames, its own "
             "temperature sequence), so this mostly measures 'is this run 1'; use regulation"),
        Task("simulation/group", "simulation", "classification", "group",
             "simulated group: one network module crosses the Hopf bifurcation", permute="across-subjects"),
        Task("simulation/coupling", "simulation", "regression", "coupling",
             "simulated global coupling strength", permute="across-subjects"),
    )
}
DEFAULT_TASKS = tuple(name for name, t in TASKS.items() if not t.confound)
DATASETS = tuple(dict.fromkeys(t.dataset for t in TASKS.values()))
SIMULATION = "simulation"  # the data set the suite simulates itself (evaluate.sim_subjects), unless a store is given


def default_tasks(dataset: str) -> tuple[str, ...]:
    """The default tasks of one data set, in table order."""
    return tuple(t for t in DEFAULT_TASKS if TASKS[t].dataset == dataset)


@dataclass(frozen=True)
class SuiteOptions:
    """Everything that decides the suite's numbers (the models aside).

    Args:
        tasks: names from `TASKS` (default `DEFAULT_TASKS`: all but the confounded condition), run in table order.
        folds, seeds: outer subject-grouped folds and their repetitions with other splits (CV seeds).
        head: "linear" (closed-form ridge, `brainjepa.evaluation.ridge`) or "attentive" for the encoder token
            rows; every other row is linear.
        pooling: the encoder rows' readouts, one row each: "roi" (ROI mean), "tokenfc" (token FC), "mean";
            "tokens" / "roi" for the attentive head. None: ("roi", "tokenfc") for linear, ("tokens",) attentive
            (`encoder_poolings` gives the readouts in use).
        embed: windows, normalisation, layer, encoder... of the encoder rows (`EmbedOptions`); every baseline
            uses the same windows. Default `scoring_options()`: fp32, so that the scores do not depend on this
            machine's stored timings.
        attentive: hyper-parameters of the attentive head; by default its learning rate, weight decay and epochs
            are chosen inside each training fold on held-out training subjects (`AttentiveConfig`), so it is tuned
            before it is compared, as the linear head is. Refused with the linear head, which would not read it.
        random_init_seeds: weight seeds of the random-init encoders (one row, its interval over these seeds).
        random_init_seed: a single seed (older spelling of ``random_init_seeds=(seed,)``).
        confidence: coverage of every interval.
        bootstrap: subject (and seed) resamples of every interval.
        permutations: label permutations of every row's null (>= 100).
        split: "all" runs, or only the "selection" or the "report" half of the subjects (a fixed split): choose
            settings on one half and report them on the other, never on the data they were chosen on.
        sim_subjects: subjects of the simulated data set (one run each).
        stores: dataset name -> an already prepared store to use instead of fetching or simulating it.
        cache: sample cache folder (default: the samples mechanism's, `default_cache_dir`); GLM rows read the
            sample's event files from it. Refused when no connattractor task is chosen.
    """

    tasks: tuple[str, ...] = DEFAULT_TASKS
    folds: int = bounded(5, ge=2)
    seeds: int = bounded(3, ge=1)
    head: Head = "linear"
    pooling: tuple[str, ...] | str | None = None
    embed: EmbedOptions = field(default_factory=scoring_options)
    attentive: AttentiveConfig = field(default_factory=AttentiveConfig)
    random_init_seeds: tuple[int, ...] = (0, 1, 2)
    random_init_seed: int | None = bounded(None, ge=0)
    confidence: float = bounded(0.95, gt=0, lt=1)
    bootstrap: int = bounded(2000, ge=MIN_BOOTSTRAP)
    permutations: int = bounded(200, ge=100)
    split: Literal["all", "selection", "report"] = "all"
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
        if self.random_init_seed is not None:
            if tuple(self.random_init_seeds) != field_default(self, "random_init_seeds"):
                raise ConfigError("evaluate.random_init_seed (the older single-seed spelling) and "
                                  "evaluate.random_init_seeds are both given: keep evaluate.random_init_seeds")
            # consumed into random_init_seeds, so that a `dataclasses.replace` copy does not read as both given
            object.__setattr__(self, "random_init_seeds", (self.random_init_seed,))
            object.__setattr__(self, "random_init_seed", None)
        seeds = tuple(self.random_init_seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ConfigError(f"evaluate.random_init_seeds must be distinct integers >= 0, got {list(seeds)}")
        object.__setattr__(self, "random_init_seeds", seeds)
        if isinstance(self.pooling, str):  # None stays None (the head's default): a copy with another head gets its own
            object.__setattr__(self, "pooling", (self.pooling,))
        elif self.pooling is not None:
            object.__setattr__(self, "pooling", tuple(self.pooling))
        pooling = self.encoder_poolings
        bad = [p for p in pooling if p not in POOLINGS_FOR_HEAD[self.head]]
        if bad or not pooling or len(set(pooling)) != len(pooling):
            allowed = POOLINGS_FOR_HEAD[self.head]
            raise ConfigError(f"{self.head} probe: pooling must be {' or '.join(map(repr, allowed))}, got "
                              f"{', '.join(map(repr, bad or pooling)) or 'none'}")
        if self.split not in SPLITS:
            raise ConfigError(f"evaluate.split must be one of {list(SPLITS)}, got {self.split!r}")
        bad = [name for name in self.stores if name not in DATASETS]
        if bad:
            raise ConfigError(f"--store names {bad} are not suite data sets; choose from {list(DATASETS)}")
        unused = [name for name in self.stores if all(TASKS[t].dataset != name for t in self.tasks)]
        if unused:
            raise ConfigError(f"--store {', '.join(unused)}: no chosen task runs on it; remove it or add its tasks "
                              "to --tasks")
        simulated = any(TASKS[t].dataset == SIMULATION for t in self.tasks) and SIMULATION not in self.stores
        if self.sim_subjects != field_default(self, "sim_subjects") and not simulated:
            why = "the simulation's store is given" if SIMULATION in self.stores else "no task runs on the simulation"
            raise ConfigError(f"evaluate.sim_subjects sizes the suite's own simulation, and {why}: remove "
                              "evaluate.sim_subjects")
        # the attentive settings with the linear head are refused as `probe` refuses them (its default: not given)
        check_head_settings(self.head, None if self.attentive == field_default(self, "attentive") else self.attentive)
        if self.cache is not None and all(TASKS[t].dataset != "connattractor" for t in self.tasks):
            raise ConfigError("evaluate.cache (--cache) is the sample cache of the connattractor tasks, and none is "
                              "chosen: remove it or add a connattractor task to --tasks")

    @property
    def encoder_poolings(self) -> tuple[str, ...]:
        """The readouts the encoder rows use: those given, else the head's default (`DEFAULT_POOLINGS`)."""
        return DEFAULT_POOLINGS[self.head] if self.pooling is None else self.pooling

    @property
    def encoder_pooling(self) -> str:
        """The readouts as one string, e.g. "roi, tokenfc"."""
        return ", ".join(self.encoder_poolings)


__all__ = ["DATASETS", "DEFAULT_POOLINGS", "DEFAULT_TASKS", "POOLINGS_FOR_HEAD", "PRIMARY_METRIC", "SPLITS", "TASKS",
           "SuiteOptions", "Task", "default_tasks"]
