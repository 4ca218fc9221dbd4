"""Attentive probe: learned-query cross-attention over frozen token features, then a linear head (as V-JEPA
evaluates frozen encoders).

A mean over tokens loses any signal carried by a few tokens with opposite signs; a learned query can attend to
exactly those tokens. The probe is multi-head cross-attention with one (or a few) learned queries over the
LayerNorm-ed tokens [N, T, D] -> [N, D], an output projection, a LayerNorm and a linear classifier or regressor.

With a single query per head, attention needs no per-token key/value projections: the score of token x under
head h is q_h . (W_k^h x) = (W_k^h' q_h) . x and the output is W_v^h sum_t a_t x_t, so the query is learned
directly in token space and values are projected after pooling. This is the same function as a standard
cross-attention block with learned queries, at O(N T D H) instead of O(N T D^2) cost, which keeps the probe
cheap on CPU for thousands of tokens per run.

Training: AdamW, cross-entropy (classification) or MSE on the standardised target (regression), fixed epochs,
optionally early stopping on a held-out fraction of the training groups. Everything random (initialisation,
batch order, validation split) comes from ``seed``, so a seed always gives the same probe.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from brainjepa.bounds import bounded, check_bounds
from brainjepa.errors import ConfigError, DataError
from brainjepa.models.optim import param_groups

Task = Literal["classification", "regression"]


@dataclass(frozen=True)
class AttentiveConfig:
    """Hyper-parameters of the attentive probe (fixed, not tuned per fold).

    Args:
        heads: attention heads; must divide the token width D (reduced to the largest divisor of D below it).
        queries: learned queries per head; their outputs are averaged.
        epochs: passes over the training set.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay (on weight matrices and queries).
        batch_size: samples per step.
        patience: early stopping: stop after this many epochs without a lower validation loss and keep the best
            weights (0: off, train all epochs on all training data).
        val_fraction: fraction of the training groups held out for early stopping (only with patience > 0).
        seed: seed of initialisation, batch order and validation split.
    """

    heads: int = bounded(4, ge=1)
    queries: int = bounded(1, ge=1)
    epochs: int = bounded(100, ge=1)
    lr: float = bounded(1e-3, gt=0)
    weight_decay: float = bounded(0.05, ge=0)
    batch_size: int = bounded(32, ge=1)
    patience: int = bounded(0, ge=0)
    val_fraction: float = bounded(0.2, gt=0, lt=1)
    seed: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        check_bounds(self, "attentive")


class AttentivePooler(nn.Module):
    """Tokens [N, T, D] -> [N, D] by multi-head attention from learned queries (see the module docstring).

    Tokens are LayerNorm-ed without a learned scale and shift: those would only rescale the queries and add a
    constant to every score (cancelled by the softmax) and to the values (absorbed by the value projection).
    """

    def __init__(self, dim: int, heads: int = 4, queries: int = 1) -> None:
        super().__init__()
        heads = max(h for h in range(1, min(heads, dim) + 1) if dim % h == 0)
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


class AttentiveProbe:
    """A scikit-learn-like estimator: ``fit(x [N, T, D], y)``, ``predict``, ``predict_proba`` and ``classes_``
    (classification), so `brainjepa.evaluation.probe` scores it like its linear probes."""

    def __init__(self, task: Task, config: AttentiveConfig | None = None) -> None:
        if task not in ("classification", "regression"):
            raise ConfigError(f"attentive probe task must be 'classification' or 'regression', got {task!r}")
        self.task = task
        self.config = config or AttentiveConfig()

    def fit(self, x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None) -> AttentiveProbe:
        """Train on token features x [N, T, D] and labels y [N]; `groups` keep a group on one side of the
        early-stopping split (None: every sample its own group)."""
        cfg = self.config
        x_t = AttentivePooler.normalize(_tokens(x))
        y = np.asarray(y)
        if len(y) != len(x_t):
            raise DataError(f"attentive probe: {len(x_t)} samples but {len(y)} labels")
        if self.task == "classification":
            self.classes_, target = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise DataError(f"attentive probe: classification needs 2 or more classes, got {self.classes_}")
            y_t, outputs = torch.from_numpy(target.astype(np.int64)), len(self.classes_)
        else:
            y = y.astype(np.float64)
            self.y_mean_, self.y_std_ = float(y.mean()), float(y.std()) or 1.0
            y_t, outputs = torch.from_numpy(((y - self.y_mean_) / self.y_std_).astype(np.float32)), 1
        rng = np.random.default_rng(cfg.seed)
        train, val = _early_stop_split(len(y), groups, cfg, rng)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model_ = nn.Sequential(AttentivePooler(x_t.shape[-1], cfg.heads, cfg.queries),
                                        nn.Linear(x_t.shape[-1], outputs))
        optimizer = torch.optim.AdamW(param_groups(self.model_.named_parameters(), cfg.weight_decay), lr=cfg.lr)
        with _one_thread():
            self._train(x_t, y_t, train, val, optimizer, rng)
        return self

    def _train(self, x_t: Tensor, y_t: Tensor, train: np.ndarray, val: np.ndarray | None,
               optimizer: torch.optim.Optimizer, rng: np.random.Generator) -> None:
        """Epochs of shuffled mini-batches; with a validation set, keep the weights of the lowest loss."""
        cfg = self.config
        best, best_loss, stale = None, math.inf, 0
        for _ in range(cfg.epochs):
            self.model_.train()
            order = train[rng.permutation(len(train))]
            for start in range(0, len(order), cfg.batch_size):
                batch = torch.from_numpy(order[start:start + cfg.batch_size])
                loss = self._loss(self.model_(x_t[batch]), y_t[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if val is None:
                continue
            with torch.no_grad():
                self.model_.eval()
                val_loss = float(self._loss(self.model_(x_t[val]), y_t[val]))
            if val_loss < best_loss:
                best, best_loss, stale = copy.deepcopy(self.model_.state_dict()), val_loss, 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        if best is not None:
            self.model_.load_state_dict(best)
        self.model_.eval()

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


def _early_stop_split(n: int, groups: np.ndarray | None, cfg: AttentiveConfig,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """(training rows, validation rows or None): whole groups held out, at least one group on each side."""
    rows = np.arange(n)
    if cfg.patience == 0:
        return rows, None
    g = rows if groups is None else np.asarray(groups)
    uniq = np.unique(g)
    if len(uniq) < 2:
        raise DataError(f"attentive probe: early stopping needs 2 or more groups, got {len(uniq)}")
    held = rng.permutation(uniq)[: min(len(uniq) - 1, max(1, round(cfg.val_fraction * len(uniq))))]
    val = np.isin(g, held)
    return rows[~val], rows[val]
