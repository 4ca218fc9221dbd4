"""Align Brain-JEPA embeddings with another modality (e.g. DNA-model embeddings of the same subjects).

Two projectors (one per side) map both embeddings into a shared space and are trained with a symmetric InfoNCE
(CLIP) loss on paired rows: row i of the brain matrix and row i of the other matrix belong to the same subject,
every other row in the batch is a negative. Held-out subjects measure whether the pairing generalises: for each
held-out brain row, is its partner among the k most similar held-out other rows (recall@k), and vice versa.
Each recall has a measured null (the same similarities with the partners shuffled, `retrieval_null`) beside the
nominal chance k / N_test. Inputs are standardised with training-row statistics, which are saved with the projectors
so `AlignedProjectors.encode_brain` / `encode_other` take raw embeddings.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainjepa.bounds import bounded, build_typed, check_bounds, check_value, coerce
from brainjepa.errors import CheckpointError, ConfigError, DataError
from brainjepa.io import atomic_write_text, check_writable, load_weights_folder, save_weights_folder
from brainjepa.models.optim import param_groups
from brainjepa.runtime import resolve_device

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "projectors.safetensors"
CONFIG_FILE = "projectors.json"
METRICS_FILE = "metrics.json"
FORMAT = "brainjepa-projectors"
RECALL_AT = (1, 5, 10)
NULL_PERMUTATIONS = 1000  # shuffled pairings of the held-out rows behind every recall's null
_MAX_LOGIT_SCALE = math.log(100.0)  # CLIP's cap on 1 / temperature


class BrainJEPAProjector(nn.Module):
    """Embedding -> shared space: Linear(D, hidden), GELU, Dropout, Linear(hidden, out), LayerNorm(out).

    Args:
        in_dim: width D of the input embeddings.
        hidden_dim: width of the hidden layer.
        out_dim: width of the shared space.
        dropout: dropout probability after the GELU (training only).
    """

    def __init__(self, in_dim: int, hidden_dim: int = 1024, out_dim: int = 512, dropout: float = 0.1) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            check_value(f"projector.{name}", value, integer=True, ge=1)
        check_value("projector.dropout", dropout, ge=0, lt=1)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden_dim, out_dim), nn.LayerNorm(out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x [N, in_dim] -> [N, out_dim]."""
        return self.net(x)


@dataclass(frozen=True)
class AlignConfig:
    """Architecture and training of an alignment (stored in ``projectors.json``).

    Args:
        hidden_dim / out_dim / dropout: both projectors' shape (see `BrainJEPAProjector`).
        temperature: initial softmax temperature of the InfoNCE logits (CLIP: 0.07).
        learn_temperature: learn log(1 / temperature) (capped at 1/T = 100, as CLIP); False keeps it fixed.
        epochs / batch_size / lr / weight_decay: AdamW training on the training rows (in-batch negatives, so
            larger batches give a harder task; a last batch of one row is dropped); weight decay applies to the
            weight matrices only, as everywhere (`brainjepa.models.optim.param_groups`): not to biases, norms or
            the temperature.
        test_fraction: share of subjects held out for the retrieval test.
        seed: seeds the subject split, the projector init, dropout and the batch order.
    """

    hidden_dim: int = bounded(1024, ge=1)
    out_dim: int = bounded(512, ge=1)
    dropout: float = bounded(0.1, ge=0, lt=1)
    temperature: float = bounded(0.07, gt=0)
    learn_temperature: bool = True
    epochs: int = bounded(100, ge=1)
    batch_size: int = bounded(128, ge=2)  # InfoNCE needs a negative in every batch
    lr: float = bounded(1e-3, gt=0)
    weight_decay: float = bounded(0.01, ge=0)
    test_fraction: float = bounded(0.2, gt=0, lt=1)
    seed: int = bounded(0, ge=0)

    def __post_init__(self) -> None:
        check_bounds(self, "align")


class AlignedProjectors(nn.Module):
    """The two trained projectors, the temperature and the input standardisation of each side.

    Args:
        brain_dim / other_dim: input widths.
        config: architecture and training settings.
    """

    def __init__(self, brain_dim: int, other_dim: int, config: AlignConfig | None = None) -> None:
        super().__init__()
        self.config = config or AlignConfig()
        c = self.config
        self.brain = BrainJEPAProjector(brain_dim, c.hidden_dim, c.out_dim, c.dropout)
        self.other = BrainJEPAProjector(other_dim, c.hidden_dim, c.out_dim, c.dropout)
        scale = torch.tensor(math.log(1.0 / c.temperature))
        if c.learn_temperature:
            self.logit_scale = nn.Parameter(scale)
        else:
            self.register_buffer("logit_scale", scale)
        for side, dim in (("brain", brain_dim), ("other", other_dim)):
            self.register_buffer(f"{side}_mean", torch.zeros(dim))
            self.register_buffer(f"{side}_std", torch.ones(dim))

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.logit_scale.detach().clamp(max=_MAX_LOGIT_SCALE)))

    def encode_brain(self, x: Tensor) -> Tensor:
        """Raw brain embeddings [N, brain_dim] -> unit vectors [N, out_dim] in the shared space."""
        return F.normalize(self.brain((x - self.brain_mean) / self.brain_std), dim=-1)

    def encode_other(self, x: Tensor) -> Tensor:
        """Raw other-modality embeddings [N, other_dim] -> unit vectors [N, out_dim] in the shared space."""
        return F.normalize(self.other((x - self.other_mean) / self.other_std), dim=-1)

    def loss(self, brain: Tensor, other: Tensor) -> Tensor:
        """Symmetric InfoNCE of paired rows: mean of brain->other and other->brain cross-entropies."""
        scale = self.logit_scale.clamp(max=_MAX_LOGIT_SCALE).exp()
        logits = scale * self.encode_brain(brain) @ self.encode_other(other).T
        target = torch.arange(len(brain), device=brain.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))

    def save(self, directory: str | Path) -> Path:
        """Write ``projectors.safetensors`` and ``projectors.json`` (dims and config) into directory."""
        meta = {"brain_dim": self.brain_mean.numel(), "other_dim": self.other_mean.numel(),
                "config": asdict(self.config)}
        return save_weights_folder(directory, self, meta, config_name=CONFIG_FILE, weights_name=WEIGHTS_FILE,
                                   fmt=FORMAT)


def load_projectors(directory: str | Path) -> AlignedProjectors:
    """Rebuild the `AlignedProjectors` that `align` (or `AlignedProjectors.save`) wrote to directory (eval mode)."""
    meta, state = load_weights_folder(directory, config_name=CONFIG_FILE, weights_name=WEIGHTS_FILE, fmt=FORMAT,
                                      what="projector")
    try:  # projectors.json is untyped: learn_temperature "false" must not read as True
        config = build_typed(AlignConfig, meta["config"], "align")
        dims = [coerce(meta[key], int, key) for key in ("brain_dim", "other_dim")]
        for key, dim in zip(("brain_dim", "other_dim"), dims, strict=True):
            check_value(key, dim, integer=True, ge=1)
    except ConfigError as err:
        raise CheckpointError(f"{directory}: {err}") from None
    model = AlignedProjectors(*dims, config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{directory}: weights do not match their config ({err})") from err
    return model.eval()


@dataclass
class AlignResult:
    """What `align` returns: the trained projectors, held-out retrieval metrics and the loss curve."""

    projectors: AlignedProjectors
    metrics: dict[str, Any]
    train_rows: np.ndarray  # int64 row indices used for training
    test_rows: np.ndarray  # int64 held-out row indices (whole subjects)
    history: list[float] = field(default_factory=list)  # mean training loss per epoch


def _in_top_k(sim: Tensor, own: Tensor, ks: tuple[int, ...]) -> Tensor:
    """[..., len(ks)]: the mean over queries of the chance that a partner of similarity `own` [..., N] ranks in the
    top k of its row of `sim` [N, N], ties broken at random: behind g better candidates and tied with t others, it
    is in the top k with probability (k - g) / (t + 1), clipped to [0, 1]."""
    better = (sim > own[..., None]).sum(-1)
    tied = (sim == own[..., None]).sum(-1) - 1
    k = torch.tensor(ks, dtype=torch.float64)
    return ((k - better[..., None]) / (tied[..., None] + 1)).clamp(0, 1).mean(-2)


def retrieval_recall(a: Tensor, b: Tensor, ks: tuple[int, ...] = RECALL_AT) -> dict[int, float]:
    """Recall@k of row i of b being among the k rows of b most similar to row i of a (cosine similarity).

    Args:
        a: queries [N, E]; b: candidates [N, E], row i of b is the partner of row i of a.

    Returns:
        {k: fraction of queries whose partner ranks in the top k}, ties broken at random (in expectation), so that
        identical candidates (a collapsed projector, one vector per subject) score chance, k / N, and not 1.
    """
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T
    return dict(zip(ks, _in_top_k(sim, sim.diagonal(), ks).tolist(), strict=True))


def retrieval_null(a: Tensor, b: Tensor, ks: tuple[int, ...] = RECALL_AT, n: int = NULL_PERMUTATIONS,
                   seed: int = 0) -> np.ndarray:
    """Recall@k [n, len(ks)] of the same similarities with the partners shuffled: what the projectors score when
    the pairing carries no information, measured on these rows rather than assumed (k / N)."""
    sim = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(len(sim))
    out = []
    for start in range(0, n, 50):  # [50, N, N] comparisons at a time
        perms = torch.stack([torch.randperm(len(sim), generator=g) for _ in range(min(50, n - start))])
        out.append(_in_top_k(sim, sim[rows, perms], ks))
    return torch.cat(out).numpy()


def align(
    brain: np.ndarray,
    other: np.ndarray,
    *,
    subjects: np.ndarray | None = None,
    config: AlignConfig | None = None,
    device: str | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> AlignResult:
    """Train projectors for both sides on paired rows and report held-out retrieval against chance.

    Args:
        brain: brain embeddings [N, D_brain] (e.g. `embed_store(...).embeddings`).
        other: the other modality's embeddings [N, D_other]; row i pairs with brain row i.
        subjects: subject id per row [N]; all rows of a subject go to the same side of the split
            (None: every row is its own subject).
        config: architecture and training (default `AlignConfig()`).
        device: where to train (default: CUDA if available, else CPU).
        out: if given, write the projectors (`AlignedProjectors.save`) and ``metrics.json`` there.
        progress: show a tqdm bar over epochs.

    Returns:
        `AlignResult`; ``metrics`` holds ``recall`` (``brain_to_other`` / ``other_to_brain``: {k: value}),
        ``chance`` ({k: k / N_test}), ``n_train``, ``n_test``, ``temperature`` and ``final_loss``.

    Raises:
        DataError: inputs that are not finite 2-D arrays with the same row count, or too few subjects.
    """
    from tqdm.auto import tqdm

    cfg = config or AlignConfig()
    if out is not None:
        check_writable(out, folder=True)
    xb, xo = _check_pair(brain, other)
    groups = np.arange(len(xb)) if subjects is None else np.asarray(subjects)
    if groups.shape != (len(xb),):
        raise DataError(f"align: {groups.size} subject ids for {len(xb)} paired rows")
    train_rows, test_rows = _subject_split(groups, cfg.test_fraction, cfg.seed)
    dev = resolve_device(device, setting="device")

    gen = torch.Generator().manual_seed(cfg.seed)
    # Projector init and dropout draw from this seed; the caller's global RNG state is restored afterwards.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = AlignedProjectors(xb.shape[1], xo.shape[1], cfg)
        tb, to = torch.from_numpy(xb[train_rows]), torch.from_numpy(xo[train_rows])
        for side, t in (("brain", tb), ("other", to)):
            getattr(model, f"{side}_mean").copy_(t.mean(0))
            getattr(model, f"{side}_std").copy_(t.std(0, unbiased=False).clamp_min(1e-6))
        model.to(dev).train()
        opt = torch.optim.AdamW(param_groups(model.named_parameters(), cfg.weight_decay), lr=cfg.lr)
        history: list[float] = []
        bar = tqdm(range(cfg.epochs), desc="align", unit="epoch", disable=not progress)
        for _ in bar:
            order = torch.randperm(len(tb), generator=gen)
            losses = []
            for batch in order.split(cfg.batch_size):
                if len(batch) < 2:
                    continue
                loss = model.loss(tb[batch].to(dev), to[batch].to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
            history.append(float(torch.stack(losses).mean()))
            bar.set_postfix(loss=f"{history[-1]:.3f}", T=f"{model.temperature:.3f}")
    model.eval()
    with torch.no_grad():
        zb = model.encode_brain(torch.from_numpy(xb[test_rows]).to(dev)).cpu()
        zo = model.encode_other(torch.from_numpy(xo[test_rows]).to(dev)).cpu()
    n_test = len(test_rows)
    recall = {"brain_to_other": retrieval_recall(zb, zo), "other_to_brain": retrieval_recall(zo, zb)}
    nulls = {side: retrieval_null(q, c, seed=cfg.seed) for side, (q, c) in (("brain_to_other", (zb, zo)),
                                                                          ("other_to_brain", (zo, zb)))}
    metrics = {
        "n_train": int(len(train_rows)),
        "n_test": int(n_test),
        "recall": recall,
        "null": {side: {k: {"mean": float(values[:, i].mean()), "high": float(np.quantile(values[:, i], 0.95)),
                            "p": float((1 + (values[:, i] >= recall[side][k]).sum()) / (1 + len(values)))}
                        for i, k in enumerate(RECALL_AT)} for side, values in nulls.items()},
        "chance": {k: min(k, n_test) / n_test for k in RECALL_AT},
        "temperature": model.temperature,
        "final_loss": history[-1],
    }
    model.cpu()
    result = AlignResult(model, metrics, train_rows, test_rows, history)
    if out is not None:
        model.save(out)
        atomic_write_text(Path(out) / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    logger.info("held-out recall@1 brain->other %.3f (null mean %.3f, p = %.3f; nominal chance %.3f) on %d rows",
                recall["brain_to_other"][1], metrics["null"]["brain_to_other"][1]["mean"],
                metrics["null"]["brain_to_other"][1]["p"], metrics["chance"][1], n_test)
    return result


def _check_pair(brain: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, x in (("brain", brain), ("other", other)):
        arr = np.asarray(x)
        if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise DataError(f"align: {name} embeddings must be a numeric [N, D] array, got {arr.dtype} {arr.shape}")
        if not np.isfinite(arr).all():
            row = int(np.argwhere(~np.isfinite(arr))[0, 0])
            raise DataError(f"align: {name} embeddings contain NaN or Inf (first in row {row})")
        arrays.append(np.ascontiguousarray(arr, dtype=np.float32))
    if len(arrays[0]) != len(arrays[1]):
        raise DataError(f"align: brain has {len(arrays[0])} rows but other has {len(arrays[1])}; rows must pair up")
    return arrays[0], arrays[1]


def _subject_split(groups: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle the subjects with `seed`; round(test_fraction * subjects) of them (>= 2) form the test rows."""
    uniq, inverse = np.unique(groups, return_inverse=True)
    n_test = max(2, round(test_fraction * len(uniq)))
    if len(uniq) - n_test < 2:
        raise DataError(
            f"align: {len(uniq)} subjects are too few for a held-out split at test_fraction={test_fraction} "
            "(need at least 2 training and 2 test subjects)"
        )
    test_subjects = np.random.default_rng(seed).permutation(len(uniq))[:n_test]
    is_test = np.isin(inverse, test_subjects)
    return np.flatnonzero(~is_test).astype(np.int64), np.flatnonzero(is_test).astype(np.int64)
