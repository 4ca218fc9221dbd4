"""Attentive probe: learned-query cross-attention over frozen token features, then a linear head (as V-JEPA
evaluates frozen encoders), tuned inside the training data before it is compared with a tuned linear probe.

A mean over tokens loses any signal carried by a few tokens with opposite signs; a learned query can attend to
exactly those tokens. The probe is multi-head cross-attention with one (or a few) learned queries over the
LayerNorm-ed tokens [N, T, D] -> [N, D], an output projection, a LayerNorm and a linear classifier or regressor.

With a single query per head, attention needs no per-token key/value projections: the score of token x under
head h is q_h . (W_k^h x) = (W_k^h' q_h) . x and the output is W_v^h sum_t a_t x_t, so the query is learned
directly in token space and values are projected after pooling. This is the same function as a standard
cross-attention block with learned queries, at O(N T D H) instead of O(N T D^2) cost, which keeps the probe
cheap on CPU for thousands of tokens per run.

Training (`AttentiveProbe.fit`, on the training rows it is given and nothing else): AdamW on cross-entropy
(classification) or MSE on the standardised target (regression), mini-batches in a seeded order.

1. Validation split: one fold of a round(1 / ``val_fraction``)-fold split of the training **groups** (subjects;
   `brainjepa.evaluation.metrics.grouped_splits`, stratified by class for classification) is held out; no group
   is on both sides. Fewer folds are used when the training rows have fewer groups (or, for classification,
   fewer groups of some class) than that; with fewer than 2 there is no validation split, and the probe trains
   the middle lr of the grid with its first weight decay for all ``epochs`` (logged, as the linear probe falls
   back to the middle of its grid).
2. Grid: for every (lr, weight decay) of ``lrs`` x ``weight_decays`` a probe is trained on the other groups for
   at most ``epochs`` epochs, with early stopping: after each epoch the validation loss is computed and training
   stops after ``patience`` epochs without a lower one. A grid point scores its lowest validation loss, at its
   best epoch (``patience=0``: no early stopping; the loss after all ``epochs``). Every grid point starts from
   the same initial weights and sees the same batch order, so they differ only by their settings.
3. Choice: the grid point with the lowest validation loss (ties: the first in grid order), and its best epoch.
4. Refit (``refit=True``): a fresh probe is trained on all training rows with the chosen lr and weight decay for
   the chosen number of epochs; ``refit=False`` keeps the chosen grid point's best weights instead.

With a single grid point and ``patience=0`` there is nothing to choose: the probe trains ``epochs`` epochs on all
training rows (the untuned, fixed-setting probe). Everything random (initialisation, batch order, validation
split) comes from ``seed``, so a seed always gives the same probe. `brainjepa.evaluation.probe.probe` calls
`fit` once per outer fold with that fold's training rows and subjects, so the test fold never takes part in a
choice.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from brainjepa.bounds import bounded, check_bounds
from brainjepa.errors import ConfigError, DataError, TrainingError
from brainjepa.evaluation.labels import TASK_KINDS, TaskKind
from brainjepa.evaluation.metrics import grouped_splits
from brainjepa.models.optim import param_groups

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AttentiveConfig:
    """Hyper-parameters of the attentive probe and the search that tunes it (see the module docstring).

    Args:
        heads: attention heads; must divide the token width D (checked at `AttentiveProbe.fit`).
        queries: learned queries per head; their outputs are averaged.
        epochs: most passes over the training rows per training (early stopping may end it sooner).
        lrs: AdamW learning rates searched (one value: fixed).
        weight_decays: AdamW weight decays searched (on weight matrices and queries; one value: fixed).
        batch_size: samples per step.
        patience: early stopping: stop a training after this many epochs without a lower validation loss and
            keep its best epoch (0: no early stopping, every training runs all `epochs`).
        val_fraction: share of the training groups held out for validation: one fold of a
            round(1 / val_fraction)-fold grouped split (0.2: a fifth). Used when there is something to choose
            (`tuned`).
        refit: after the choice, retrain on all training rows with the chosen lr, weight decay and epochs
            (True) or keep the chosen grid point's best weights, trained without the validation groups (False).
        seed: seed of initialisation, batch order and validation split.

    Raises:
        ConfigError: a value out of range, an empty or non-numeric grid, or `val_fraction` / `refit` set when
            nothing is chosen (a single grid point with patience 0), where they could not take effect.
    """

    heads: int = bounded(4, ge=1)
    queries: int = bounded(1, ge=1)
    epochs: int = bounded(100, ge=1)
    lrs: tuple[float, ...] = (3e-4, 1e-3, 3e-3)
    weight_decays: tuple[float, ...] = (0.05, 5.0)
    batch_size: int = bounded(32, ge=1)
    patience: int = bounded(10, ge=0)
    val_fraction: float = bounded(0.2, gt=0, le=0.5)
    refit: bool = True
    seed: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        check_bounds(self, "attentive")
        object.__setattr__(self, "lrs", _grid("attentive.lrs", self.lrs, positive=True))
        object.__setattr__(self, "weight_decays", _grid("attentive.weight_decays", self.weight_decays,
                                                        positive=False))
        if not isinstance(self.refit, bool):
            raise ConfigError(f"attentive.refit must be True or False, got {self.refit!r}")
        if not self.tuned:
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            unused = [name for name in ("val_fraction", "refit") if getattr(self, name) != defaults[name]]
            if unused:
                raise ConfigError(f"attentive.{' and attentive.'.join(unused)} would have no effect: with one lr, "
                                  "one weight decay and patience 0 nothing is chosen on a validation split")

    @property
    def grid(self) -> list[tuple[float, float]]:
        """The (lr, weight decay) pairs searched, lr-major."""
        return [(lr, wd) for lr in self.lrs for wd in self.weight_decays]

    @property
    def tuned(self) -> bool:
        """Whether a validation split chooses anything: more than one grid point, or early stopping."""
        return self.patience > 0 or len(self.grid) > 1


class AttentivePooler(nn.Module):
    """Tokens [N, T, D] -> [N, D] by multi-head attention from learned queries (see the module docstring).

    Tokens are LayerNorm-ed without a learned scale and shift: those would only rescale the queries and add a
    constant to every score (cancelled by the softmax) and to the values (absorbed by the value projection).

    Raises:
        ValueError: `heads` does not divide `dim`.
    """

    def __init__(self, dim: int, heads: int = 4, queries: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attentive pooler: heads ({heads}) must divide the token width ({dim})")
        self.heads, self.queries, self.head_dim = heads, queries, dim // heads
        self.query = nn.Parameter(torch.randn(dim, queries * heads) * 0.02)  # column (q, h): W_k^h' q, token space
        self.value = nn.Linear(dim, dim)  # rows of head h: W_v^h [D / heads, D]
        self.proj = nn.Linear(dim, dim)
        self.out_norm = nn.LayerNorm(dim)

    @staticmethod
    def normalize(tokens: Tensor) -> Tensor:
        """The per-token LayerNorm (no parameters) `forward` expects; done once per data set, not per step."""
        return nn.functional.layer_norm(tokens, tokens.shape[-1:])

    def attention(self, normed: Tensor) -> Tensor:
        """Attention weights [N, queries * heads, T] over normalised tokens [N, T, D]."""
        return (normed @ self.query / math.sqrt(self.head_dim)).transpose(1, 2).softmax(-1)

    def forward(self, normed: Tensor) -> Tensor:
        n = len(normed)
        pooled = self.attention(normed) @ normed  # [N, Q*H, D]: per query and head, a weighted token mean
        pooled = pooled.view(n, self.queries, self.heads, -1)
        w = self.value.weight.view(self.heads, self.head_dim, -1)  # [H, D/H, D]
        values = torch.einsum("nqhd,hed->nqhe", pooled, w).flatten(2) + self.value.bias  # [N, Q, D]
        return self.out_norm(self.proj(values).mean(1))


class _Trained(NamedTuple):
    model: nn.Module
    epochs: int  # epochs behind the returned weights (the best epoch with validation)
    val_loss: float  # validation loss of those weights (inf: none finite, or no validation)


class AttentiveProbe:
    """A scikit-learn-like estimator: ``fit(x [N, T, D], y, groups)``, ``predict``, ``predict_proba`` and
    ``classes_`` (classification), so `brainjepa.evaluation.probe` scores it like its linear probes.

    After `fit`: ``lr_``, ``weight_decay_`` and ``epochs_`` (the chosen setting; the configured one when nothing
    is tuned) and ``search_`` (one dict per grid point: ``lr``, ``weight_decay``, ``epochs`` (best epoch),
    ``val_loss``; empty when nothing is tuned).
    """

    def __init__(self, task: TaskKind, config: AttentiveConfig | None = None) -> None:
        if task not in TASK_KINDS:
            raise ConfigError(f"attentive probe task must be 'classification' or 'regression', got {task!r}")
        self.task = task
        self.config = config or AttentiveConfig()

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> AttentiveProbe:
        """Tune and train on token features x [N, T, D] and labels y [N] (see the module docstring).

        Args:
            x: token features of the training rows.
            y: their labels.
            groups: group (subject) of each row, kept on one side of the validation split (None: each row its
                own group).

        Raises:
            DataError: bad shapes or values, too few groups (or class members) for the validation split.
            ConfigError: `heads` that does not divide D.
            TrainingError: every grid point diverged (non-finite loss).
        """
        cfg = self.config
        x_t = AttentivePooler.normalize(_tokens(x))
        if x_t.shape[-1] % cfg.heads:
            raise ConfigError(f"attentive.heads ({cfg.heads}) must divide the token width D = {x_t.shape[-1]}")
        y = np.asarray(y)
        if len(y) != len(x_t):
            raise DataError(f"attentive probe: {len(x_t)} samples but {len(y)} labels")
        if self.task == "classification":
            self.classes_, target = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise DataError(f"attentive probe: classification needs 2 or more classes, got {self.classes_}")
            y_t, self._outputs_dim = torch.from_numpy(target.astype(np.int64)), len(self.classes_)
        else:
            y = y.astype(np.float64)
            self.y_mean_, self.y_std_ = float(y.mean()), float(y.std()) or 1.0
            y_t, self._outputs_dim = torch.from_numpy(((y - self.y_mean_) / self.y_std_).astype(np.float32)), 1
        rows = np.arange(len(y))
        split = _validation_split(y, groups, self.task, cfg) if cfg.tuned else None
        with _one_thread():
            if split is None:
                self.lr_, self.weight_decay_ = cfg.lrs[len(cfg.lrs) // 2], cfg.weight_decays[0]
                self.epochs_, self.search_ = cfg.epochs, []
                self.model_ = self._train(x_t, y_t, rows, None, self.lr_, self.weight_decay_, cfg.epochs).model
            else:
                self._search(x_t, y_t, *split)
        self.model_.eval()
        return self

    def _search(self, x_t: Tensor, y_t: Tensor, fit_rows: np.ndarray, val_rows: np.ndarray) -> None:
        """Steps 2-4 of the module docstring: sets ``search_``, the chosen setting and ``model_``."""
        cfg = self.config
        best: _Trained | None = None
        self.search_ = []
        for lr, wd in cfg.grid:
            trained = self._train(x_t, y_t, fit_rows, val_rows, lr, wd, cfg.epochs)
            self.search_.append({"lr": lr, "weight_decay": wd, "epochs": trained.epochs,
                                 "val_loss": trained.val_loss})
            if best is None or trained.val_loss < best.val_loss:
                best, (self.lr_, self.weight_decay_) = trained, (lr, wd)
        if best is None or not math.isfinite(best.val_loss):
            raise TrainingError(f"attentive probe: the validation loss was never finite for any of lr {cfg.lrs} x "
                                f"weight decay {cfg.weight_decays}; lower attentive.lrs")
        self.epochs_ = best.epochs
        if cfg.refit:
            self.model_ = self._train(x_t, y_t, np.arange(len(y_t)), None, self.lr_, self.weight_decay_,
                                      self.epochs_).model
        else:
            self.model_ = best.model

    def _train(self, x_t: Tensor, y_t: Tensor, train: np.ndarray, val: np.ndarray | None, lr: float,
               weight_decay: float, epochs: int) -> _Trained:
        """A fresh probe (initialised from the seed) trained on rows `train` for at most `epochs` epochs of
        shuffled mini-batches (order from the seed); with `val`, early stopping keeps the best epoch's weights."""
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = nn.Sequential(AttentivePooler(x_t.shape[-1], cfg.heads, cfg.queries),
                                  nn.Linear(x_t.shape[-1], self._outputs_dim))
        optimizer = torch.optim.AdamW(param_groups(model.named_parameters(), weight_decay), lr=lr)
        rng = np.random.default_rng(cfg.seed)
        best_state, best_loss, best_epoch, stale = None, math.inf, 0, 0
        for epoch in range(1, epochs + 1):
            model.train()
            order = train[rng.permutation(len(train))]
            for start in range(0, len(order), cfg.batch_size):
                batch = torch.from_numpy(order[start:start + cfg.batch_size])
                loss = self._loss(model(x_t[batch]), y_t[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if val is None:
                continue
            with torch.no_grad():
                model.eval()
                val_loss = float(self._loss(model(x_t[val]), y_t[val]))
            if val_loss < best_loss:  # NaN never counts as lower
                best_state, best_loss, best_epoch, stale = copy.deepcopy(model.state_dict()), val_loss, epoch, 0
            elif cfg.patience:
                stale += 1
                if stale >= cfg.patience or not math.isfinite(val_loss):
                    break
        if val is None:
            if not math.isfinite(loss.item()):
                raise TrainingError(f"attentive probe: non-finite training loss at lr {lr}, weight decay "
                                    f"{weight_decay}; lower attentive.lrs")
            return _Trained(model.eval(), epochs, math.inf)
        if not cfg.patience:  # no early stopping: the weights and loss after the last epoch
            return _Trained(model.eval(), epochs, val_loss if math.isfinite(val_loss) else math.inf)
        if best_state is not None:
            model.load_state_dict(best_state)
        return _Trained(model.eval(), best_epoch, best_loss)

    def _loss(self, out: Tensor, target: Tensor) -> Tensor:
        if self.task == "classification":
            return nn.functional.cross_entropy(out, target)
        return nn.functional.mse_loss(out[:, 0], target)

    @torch.no_grad()
    def _outputs(self, x: np.ndarray) -> Tensor:
        if not hasattr(self, "model_"):
            raise ConfigError("attentive probe: call fit before predict")
        with _one_thread():
            return self.model_(AttentivePooler.normalize(_tokens(x)))

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities [N, C], columns in the order of ``classes_``."""
        if self.task != "classification":
            raise ConfigError("attentive probe: predict_proba is for classification")
        return self._outputs(x).softmax(-1).double().numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class labels [N] (classification) or values [N] in the target's units (regression)."""
        out = self._outputs(x)
        if self.task == "classification":
            return self.classes_[out.argmax(-1).numpy()]
        return out[:, 0].double().numpy() * self.y_std_ + self.y_mean_


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread: training steps and predictions are small products, where threads only add overhead
    (about 15x slower on a busy 2-core machine), as for the linear probe's BLAS."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _tokens(x: np.ndarray | Tensor) -> Tensor:
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if x.ndim != 3:
        raise DataError(f"attentive probe needs token features [N, tokens, D], got shape {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise DataError("attentive probe: features contain NaN or Inf")
    return x


def _grid(name: str, values: Sequence[float], *, positive: bool) -> tuple[float, ...]:
    """A search axis as a tuple of finite numbers (> 0 or >= 0), non-empty and without repeats."""
    if isinstance(values, numbers.Real):
        raise ConfigError(f"{name} must be a sequence of numbers (one value: ({values},)), got {values!r}")
    try:
        items = tuple(values)
    except TypeError:
        raise ConfigError(f"{name} must be a sequence of numbers, got {values!r}") from None
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)
           or (v <= 0 if positive else v < 0)]
    if not items or bad or len(set(items)) != len(items):
        need = "> 0" if positive else ">= 0"
        raise ConfigError(f"{name} must be one or more distinct finite numbers {need}, got {values!r}")
    return tuple(float(v) for v in items)


def _validation_split(y: np.ndarray, groups: np.ndarray | None, task: str,
                      cfg: AttentiveConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """(fit rows, validation rows): the first fold of a round(1 / val_fraction)-fold grouped split of the
    training rows (stratified for classification), seeded by the config seed; no group on both sides. Fewer
    folds when there are fewer groups (of some class); None (logged) when not even 2 folds can be made."""
    g = np.arange(len(y)) if groups is None else np.asarray(groups)
    if len(g) != len(y):
        raise DataError(f"attentive probe: {len(g)} groups for {len(y)} labels")
    folds = min(max(2, round(1 / cfg.val_fraction)), len(np.unique(g)))
    if task == "classification":
        folds = min([folds] + [len(np.unique(g[y == c])) for c in np.unique(y)])
    if folds < 2:
        logger.warning("attentive probe: too few groups in the training rows for a validation split; training "
                       "lr %g, weight decay %g for %d epochs without tuning", cfg.lrs[len(cfg.lrs) // 2],
                       cfg.weight_decays[0], cfg.epochs)
        return None
    try:
        fit_rows, val_rows = grouped_splits(y, g, task=task, folds=folds, seed=cfg.seed)[0]
    except ValueError as err:  # DataError, or scikit-learn's own complaint about too few members per class
        raise DataError(f"attentive probe: validation split (val_fraction {cfg.val_fraction}, {folds} grouped "
                        f"folds of the training rows): {err}") from err
    return fit_rows, val_rows
