"""The feature sets `brainjepa evaluate` compares, every one computed from the frames the encoders see.

Each run is cut into the embedding's window(s) (`EmbedOptions.window_spec`: by default the centre window of the
model's frame count) and normalised as the encoders' input is (the model's normaliser). From those windows:

* encoder rows (``brainjepa`` per pretrained model, ``random-init`` per weight seed): the frozen tokens [R*P, D],
  read out by each requested pooling: ``roi`` (ROI mean, first order: [R, D]), ``tokenfc`` (token FC, second
  order: Fisher-z correlation between ROIs of their centred token trajectories, [R(R-1)/2]), ``mean`` or
  ``tokens`` (the attentive head's input);
* ``patch embedding``: a no-learning baseline (brainmarks' ``patch_embed``): the random-init model's per-patch
  linear map plus a parameter-free LayerNorm, no positions, no blocks, read out like the encoders;
* ``raw window``: the normalised window itself, first order: each ROI's time patches averaged, [R, patch];
* ``GLM``: per ROI, the betas of the task's event regressors (`brainjepa.evaluation.glm`) on the window's frames
  as stored (not normalised: betas in the data's units, the same whatever model is evaluated; the probe
  standardises each beta across runs);
* ``FC``: Fisher-z Pearson correlations of the window's ROIs; ``tangent``: tangent-space connectivity of the
  window, reference fitted on training runs only;
* ``FC, whole run``: FC over every frame of the run, the classic connectome, for reference: it sees more frames
  than the encoders do.

With several windows per run, window features are averaged (as the encoders' embeddings are); tangent and GLM
use every window's frames.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from brainjepa.data.store import RunStore
from brainjepa.data.windows import sample_at, window_positions, window_starts
from brainjepa.errors import DataError
from brainjepa.evaluation.baselines import (
    TangentFeatures,
    functional_connectivity,
    mean_patch_profile,
    patch_embedding_tokens,
    token_fc,
)
from brainjepa.evaluation.embed import EmbedOptions, embed_store, model_normalizer
from brainjepa.evaluation.glm import glm_betas, sample_events
from brainjepa.models import BrainJEPA
from brainjepa.models.encoder import POOLINGS

logger = logging.getLogger(__name__)

READOUT_NAMES = {"roi": "ROI mean", "tokenfc": "token FC", "mean": "mean", "tokens": "tokens"}
ENCODERS = ("brainjepa", "random-init")
PATCH = "patch embedding"
RAW, GLM, FC, FC_WHOLE, TANGENT = "raw window", "GLM", "FC", "FC, whole run", "tangent"
BASELINES = (PATCH, RAW, GLM, FC, FC_WHOLE, TANGENT)
_TOKEN_BYTES = 512 * 2**20  # token arrays embedded at a time stay below this (large models: a few runs at a time)


@dataclass
class FeatureSet:
    """One row's features of every run of a data set (store order).

    Attributes:
        method: ``brainjepa``, ``random-init`` or a baseline name.
        readout: how tokens were read out (`READOUT_NAMES` value), "" for baselines without tokens.
        values: one array [N, ...] per model seed (several pretrained models, several random-init seeds).
        tangent: instead of `values`, tangent features fitted per fold (training runs only).
        head: "linear" or "attentive" (encoder token rows).
        note: what a reader must know (e.g. it sees more frames than the encoders).
        reason: why the row could not be computed ("" if it could).
    """

    method: str
    readout: str = ""
    values: list[np.ndarray] = field(default_factory=list)
    tangent: TangentFeatures | None = None
    head: str = "linear"
    note: str = ""
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.method}, {self.readout}" if self.readout else self.method

    @property
    def seeds(self) -> int:
        return max(len(self.values), 1)

    def rows(self, runs: np.ndarray, seed: int = 0) -> np.ndarray | Callable:
        """The features of the store runs `runs` for model seed `seed`: an array, or for tangent a function
        (training positions, test positions) -> their features, positions being into `runs`."""
        if self.tangent is not None:
            tangent = self.tangent
            return lambda train, test: tangent(runs[train], runs[test])
        return self.values[seed][runs]

    def label_free(self, runs: np.ndarray, seed: int = 0) -> np.ndarray:
        """Features of the store runs `runs` for label-free use (identification); tangent's reference is fitted on
        those runs."""
        if self.tangent is not None:
            return self.tangent(runs, runs[:0])[0]
        return self.values[seed][runs]


@dataclass
class Windows:
    """The normalised window(s) of every run [N, k, R, F], the same frames as stored (`raw`), their frame times
    (seconds from the run start) [N, k, F], and the whole runs."""

    data: np.ndarray
    raw: np.ndarray
    times: np.ndarray
    series: list[np.ndarray]

    @property
    def flat(self) -> np.ndarray:
        """The k windows of each run joined in time: [N, R, k * F]."""
        n, k, r, f = self.data.shape
        return self.data.transpose(0, 2, 1, 3).reshape(n, r, k * f)


def run_windows(store: RunStore, model: BrainJEPA, options: EmbedOptions) -> Windows:
    """The windows `embed_store` feeds the encoder, normalised the same way, with their frame times."""
    cfg = model.config
    spec = options.window_spec(cfg.num_frames)
    normalizer = model_normalizer(model, options.normalization)
    data, raw, times, series = [], [], [], []
    manifest = store.manifest
    for i in range(len(store)):
        ts, tr = store.run(i), store.tr(i)
        name = f"subject {manifest['subject'].iloc[i]!r} run {manifest['run'].iloc[i]!r}"
        starts = window_starts(ts.shape[1], spec, options.windows, tr=tr, subject=name)
        positions = [window_positions(ts.shape[1], spec, start=s, tr=tr, subject=name) for s in starts]
        frames = [sample_at(ts, p) for p in positions]
        raw.append(np.stack(frames))
        data.append(np.stack([normalizer(f) for f in frames]))
        times.append(np.stack(positions) * (tr if tr else 1.0))
        series.append(ts)
    return Windows(np.stack(data).astype(np.float32), np.stack(raw).astype(np.float32), np.stack(times), series)


def encoder_features(model: BrainJEPA, store: RunStore, poolings: Sequence[str], options: EmbedOptions,
                     progress: bool) -> dict[str, np.ndarray]:
    """Each pooling's embeddings of every run [N, ...] from one pass over the encoder where possible: tokens are
    embedded (as many runs at a time as `_TOKEN_BYTES` allows) and pooled here; with several windows or masked
    views, `embed_store` pools each window (view) itself and is called once per pooling."""
    if options.windows > 1 or options.masked_views:
        return {p: embed_store(model, store, pooling=p, options=options, progress=progress).embeddings.numpy()
                for p in poolings}
    parts: dict[str, list[np.ndarray]] = {p: [] for p in poolings}
    chunk = max(1, _TOKEN_BYTES // (4 * model.config.num_patches * model.config.embed_dim))
    for start in range(0, len(store), chunk):
        idx = np.arange(start, min(start + chunk, len(store)))
        tokens = embed_store(model, store, indices=idx, pooling="tokens", options=options,
                             progress=progress).embeddings
        for p in poolings:
            parts[p].append(pool_tokens(model, tokens, p))
    return {p: np.concatenate(v) for p, v in parts.items()}


def pool_tokens(model: BrainJEPA, tokens: torch.Tensor, pooling: str) -> np.ndarray:
    """`BrainEncoder.pool` of tokens [B, R*P, D]."""
    if pooling not in POOLINGS:
        raise DataError(f"unknown pooling {pooling!r}")
    with torch.inference_mode():
        return model.target_encoder.pool(tokens, pooling).float().numpy()


def _pool_array(tokens: np.ndarray, pooling: str, num_rois: int) -> np.ndarray:
    n, t, d = tokens.shape
    if pooling == "roi":
        return tokens.reshape(n, num_rois, t // num_rois, d).mean(2)
    if pooling == "tokenfc":
        return token_fc(tokens, num_rois)
    if pooling == "mean":
        return tokens.mean(1)
    return tokens


def dataset_feature_sets(
    store: RunStore,
    models: Sequence[BrainJEPA],
    fresh: Sequence[BrainJEPA],
    *,
    poolings: Sequence[str],
    head: str,
    options: EmbedOptions,
    cache: str | Path | None,
    progress: bool,
) -> tuple[list[FeatureSet], Windows]:
    """Every row's features of every run of `store`: encoder rows for the pretrained `models` and the `fresh`
    (random-init) ones, then the baselines (`BASELINES`), all from the same windows. Every pooled row is read by
    `head` (`SuiteOptions` checked that it takes each of `poolings`)."""
    windows = run_windows(store, models[0], options)
    sets: list[FeatureSet] = []
    for method, nets in (("brainjepa", models), ("random-init", fresh)):
        embedded = [encoder_features(net, store, poolings, options, progress) for net in nets]
        sets += [FeatureSet(method, READOUT_NAMES[p], [e[p] for e in embedded], head=head) for p in poolings]
    with threadpool_limits(1, user_api="blas"):  # small matrices: BLAS threads only add contention
        sets += _baselines(store, windows, fresh[0], poolings, head, cache)
    return sets, windows


def _baselines(store: RunStore, windows: Windows, fresh: BrainJEPA, poolings: Sequence[str], head: str,
               cache: str | Path | None) -> list[FeatureSet]:
    sets = []
    n, k, r, f = windows.data.shape
    cfg = fresh.config
    tokens = patch_embedding_tokens(fresh, windows.data.reshape(n * k, r, f))
    tokens = tokens.reshape(n, k, *tokens.shape[1:])
    for p in poolings:
        pooled = np.mean([_pool_array(tokens[:, w], p, r) for w in range(k)], axis=0)
        sets.append(FeatureSet(PATCH, READOUT_NAMES[p], [pooled], head=head,
                               note="random per-patch linear map + LayerNorm, no positions, no blocks"))
    raw = np.mean([mean_patch_profile(windows.data[:, w], cfg.patch_size) for w in range(k)], axis=0)
    sets.append(FeatureSet(RAW, values=[raw], note="each ROI's time patches averaged"))
    sets.append(_glm(store, windows, cache))
    names = [f"subject {s!r}" for s in store.manifest["subject"].astype(str)]
    fc = np.mean([functional_connectivity(windows.data[:, w], names=names) for w in range(k)], axis=0)
    sets.append(FeatureSet(FC, values=[fc], note="the encoders' window(s)"))
    sets.append(FeatureSet(FC_WHOLE, values=[functional_connectivity(windows.series, names=names)],
                           note="every frame of the run: more than the encoders see"))
    sets.append(FeatureSet(TANGENT, tangent=TangentFeatures(list(windows.flat)), note="the encoders' window(s)"))
    return sets


def _glm(store: RunStore, windows: Windows, cache: str | Path | None) -> FeatureSet:
    try:
        events = sample_events(store, cache)
    except DataError as err:
        return FeatureSet(GLM, reason=str(err))
    betas = [np.concatenate([glm_betas(windows.raw[i, w], windows.times[i, w], events[i])
                             for w in range(windows.data.shape[1])], axis=1) for i in range(len(events))]
    return FeatureSet(GLM, values=[np.stack(betas).astype(np.float32)],
                      note="heat and rating regressors (canonical HRF) per ROI, on the window(s) as stored")


__all__ = ["BASELINES", "ENCODERS", "FC", "FC_WHOLE", "GLM", "PATCH", "RAW", "READOUT_NAMES", "TANGENT",
           "FeatureSet", "Windows", "dataset_feature_sets", "encoder_features", "run_windows"]
