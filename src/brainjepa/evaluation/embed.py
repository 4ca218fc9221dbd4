"""Frozen Brain-JEPA embeddings of ROI time series: windows -> normalisation -> encoder -> pooling.

The procedure, chosen to match the reference's downstream code and to be deterministic:

1. Windows: ``windows=1`` takes the centre window of ``model.config.num_frames`` frames at ``sampling_rate``
   (or resampled to ``target_tr``); ``windows=k`` takes k evenly spaced windows that cover the run and
   averages their embeddings. A run shorter than one window is an error unless ``pad`` (repeat last frame).
2. Normalisation of each window: the model's own ``metadata["normalization"]`` (written by pretraining), else
   a per-sample z-score over the whole [R, frames] window, as the reference's downstream loader does.
3. Encoder: the EMA target encoder by default (the reference's downstream loads ``target_encoder``), or the
   context encoder. ``layer`` picks the block whose tokens are used (default -1, the last: exactly
   `forward_features`; earlier blocks get the final LayerNorm too, via `forward_intermediates(norm=True)`).
   ``masked_views=v`` runs the encoder v times on random token subsets (each ROI keeps ``mask_keep`` of its
   time patches, drawn from ``(seed, sample index)``) and averages the views.
4. Pooling of the tokens [R*P, D] (ROI-major, token = r * P + t) by `BrainEncoder.pool`: ``"mean"`` over all
   tokens -> [D] (the reference's global pool), ``"roi"`` over the time patches of each ROI -> [R, D],
   ``"tokens"`` -> [R*P, D], ``"tokenfc"`` (token FC: Fisher-z ROI x ROI correlation of each ROI's centred
   token trajectory, `brainjepa.models.encoder.token_fc`) -> [R(R-1)/2]. Masked views average the pooled
   outputs (for tokenfc the Fisher z's).

Results are float32 CPU tensors; bf16 autocast is used where it is faster (`brainjepa.precision`: GPUs with bf16,
CPUs with bf16 matrix units; where a CPU's flags leave it open, `brainjepa.tuning` times the encoder,
which also picks the batch size on a CPU and, in bf16 on a CPU, the attention kernel: torch's SDPA or oneDNN's
fused attention), and the choices are logged once per call.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor

from brainjepa.bounds import field_default
from brainjepa.data.fmriprep import CIFTI_SUFFIX, VOLUME_SUFFIX, find_fmriprep_runs, read_fmriprep
from brainjepa.data.normalize import (
    Normalizer,
    SampleZScore,
    make_normalizer,
    normalizer_from_dict,
)
from brainjepa.data.readers import ReadOptions, find_sources, read_source
from brainjepa.data.store import RunStore, check_num_rois, open_runs
from brainjepa.data.validate import check_timeseries, raise_for_problems
from brainjepa.data.windows import WindowSpec, take_windows
from brainjepa.errors import ConfigError, DataError
from brainjepa.evaluation.options import EncoderOptions, option
from brainjepa.io import atomic_save_npy, atomic_write, atomic_writes, check_writable
from brainjepa.models import BrainJEPA
from brainjepa.models.encoder import POOLINGS, BrainEncoder, Pooling
from brainjepa.models.health import Health, HealthMeter, encoder_health
from brainjepa.models.layers import inference_attention
from brainjepa.tuning import DEFAULT_BATCH, EmbeddingPlan, plan_embedding

if TYPE_CHECKING:
    import pandas

    from brainjepa.data.fmriprep import FmriprepOptions
    from brainjepa.data.readers import Run

logger = logging.getLogger(__name__)

HEALTH_WINDOWS = 16  # runs the health check of an embedding call reads, one window each (the first runs)
_ID_COLUMNS = ("subject", "run")
_NOT_INDEX = ("offset", "frames", "tr", "source")  # manifest bookkeeping columns left out of the index
_FLAT_POOLINGS = ("mean", "tokenfc")  # one vector per run: the poolings a parquet file can hold


@dataclass(frozen=True)
class EmbedOptions(EncoderOptions):
    """How embeddings are computed (everything except the pooling of the output): the `EncoderOptions` shared with
    fine-tuning, and what only embedding has. Each field's meaning is its help text (the CLI's), and:

    Args:
        layer: any integer here; its range is the model's depth, checked when embedding. Every block's output
            passes through the final LayerNorm (the last block: exactly `forward_features`).
        device: None runs where the model is (the encoder is moved to a given device).
        precision: ``"auto"`` chooses by `brainjepa.precision.choose_precision`.
        check_roi_labels: refuse data whose ROI labels differ from the model's ``metadata["roi_labels"]`` (names
            or order; `check_roi_labels`). False embeds anyway (``--ignore-roi-labels``).
    """

    SECTION: ClassVar[str] = "embed"

    layer: int = option(-1, "encoder block whose tokens are pooled, negative from the end (default -1: the last "
                        "block); every block's output gets the final LayerNorm", metavar="BLOCK")
    windows: int = option(1, "average K evenly spaced windows per run (default 1: the centre window)", metavar="K",
                          ge=1)
    masked_views: int = option(0, "average V random masked views (default 0: the full input)", metavar="V", ge=0)
    mask_keep: float = option(0.85, "fraction of each ROI's time patches a masked view keeps (default %(default)s)",
                              gt=0, le=1)
    seed: int = option(0, "seed of the masked views (default %(default)s)", ge=0)
    batch_size: int | None = option(
        None, "windows per forward pass (default: 32 on a GPU; on a CPU, chosen by timing the encoder's first "
        "block once, in a call of 32 windows or more, and stored)", ge=1)
    check_roi_labels: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.masked_views:  # the views' settings would be accepted and ignored
            changed = [f"embed.{name}" for name in ("mask_keep", "seed")
                       if getattr(self, name) != field_default(self, name)]
            if changed:
                raise ConfigError(f"{' and '.join(changed)} set how masked views are drawn, and there are none: set "
                                  "embed.masked_views (1 or more) or leave them at their defaults")

    def window_spec(self, frames: int) -> WindowSpec:
        """The deterministic (centre-mode) window of `frames` samples these options describe."""
        return WindowSpec(frames=frames, sampling_rate=self.sampling_rate, mode="center",
                          target_tr=self.target_tr, short="pad" if self.pad else "error")


SCORING_PRECISION = "fp32"
SCORING_PRECISION_HELP = (
    "autocast dtype (default fp32 here: a score then does not depend on which precision this machine's stored "
    "timings pick; auto is faster where bf16 is, and bf16 embeddings differ from fp32 in their last digits, "
    "which can move a probe's predictions)")


def scoring_options(**settings: object) -> EmbedOptions:
    """`EmbedOptions` for embeddings that are scored (`probe`, `evaluate`): fp32 unless `settings` say otherwise, so
    that the same command gives the same scores on a machine whatever its stored timings ("auto" may choose bf16
    for a call that is too short to time, and fp32 once a longer call has timed the encoder)."""
    return EmbedOptions(**{"precision": SCORING_PRECISION, **settings})


class StoreEmbeddings(NamedTuple):
    """Embeddings of the runs of a store, with the ids needed to match rows to labels."""

    embeddings: Tensor  # float32 [N, D] ("mean"), [N, R, D] ("roi"), [N, R*P, D] ("tokens") or [N, R(R-1)/2]
    # ("tokenfc")
    index: pandas.DataFrame  # N rows: subject, run and the store's phenotype columns


def model_name(model: BrainJEPA) -> str:
    """How messages name a model: where it was loaded from, else its training store, else "the model"."""
    if getattr(model, "name_or_path", None):
        return f"model {model.name_or_path}"
    store = (model.metadata.get("training") or {}).get("store")
    return f"the model trained on {store}" if store else "the model (built in memory)"


_WARNED_UNLABELLED: set[str] = set()  # data already warned about (one line per data and process)


def check_roi_labels(data_labels: Sequence[str] | None, model: BrainJEPA, data: str, *,
                     check: bool = True) -> str | None:
    """Refuse data whose ROI labels are not the model's, in the model's order. Counts are checked elsewhere;
    labels of another count are left to that check.

    Args:
        data_labels: the data's ROI names in row order (a store's ``roi_labels``), or None.
        model: its ``metadata["roi_labels"]`` (written by pretraining from its store) are compared.
        data: how messages name the data (a store path, a file).
        check: False skips the comparison and the warning (``check_roi_labels=False``, ``--ignore-roi-labels``).

    Returns:
        When either side has no labels, the warning that they were not compared (None otherwise), for
        `warn_unlabelled` to log once the data are embedded, so a refusal later on stays one line.

    Raises:
        DataError: same count, different names or order; one line naming the data, the model, the first
            differing ROI and the flag that overrides the check.
    """
    if not check:
        return None
    model_labels = model.metadata.get("roi_labels")
    if data_labels is None or not model_labels:
        name = model_name(model)
        lacking = " or ".join(who for who, labels in ((data, data_labels), (name, model_labels)) if not labels)
        return (f"{data}: ROI labels not compared: none recorded by {lacking}; make sure the data have the atlas and "
                f"ROI order of {name} (--ignore-roi-labels skips this check)")
    ours, theirs = [str(v) for v in data_labels], [str(v) for v in model_labels]
    if len(ours) != len(theirs) or ours == theirs:
        return None
    i = next(i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
    order = " (the same ROIs in another order)" if sorted(ours) == sorted(theirs) else ""
    raise DataError(f"{data}: ROI labels differ from {model_name(model)}'s{order}: ROI {i} is {ours[i]!r} in the "
                    f"data but {theirs[i]!r} in the model; put the rows in the model's atlas and order, or embed "
                    "anyway with --ignore-roi-labels (check_roi_labels=False)")


def warn_unlabelled(message: str | None, data: str) -> None:
    """Log `check_roi_labels`' warning, once per data (random-init copies and later calls stay quiet)."""
    if message is not None and data not in _WARNED_UNLABELLED:
        _WARNED_UNLABELLED.add(data)
        logger.warning(message)


def model_normalizer(model: BrainJEPA, kind: str = "model") -> Normalizer:
    """The normaliser `kind` names; ``"model"`` is the model's stored record, else a per-sample z-score."""
    if kind != "model":
        return make_normalizer(kind)
    record = model.metadata.get("normalization")
    if record is None:
        logger.info("model carries no normalisation record; using a per-sample z-score of each window")
        return SampleZScore()
    return normalizer_from_dict(record)


def embed(
    model: BrainJEPA | str | Path,
    x: np.ndarray | Tensor | Sequence[np.ndarray],
    *,
    pooling: Pooling = "mean",
    options: EmbedOptions | None = None,
    tr: float | None = None,
    progress: bool = False,
) -> Tensor:
    """Embed in-memory time series with a (pretrained) Brain-JEPA.

    Args:
        model: a BrainJEPA, or a folder / file `BrainJEPA.load` reads.
        x: raw (un-normalised) series [N, R, T], or a sequence of N arrays [R, T_i] of any lengths.
        pooling: ``"mean"`` -> [N, D], ``"roi"`` -> [N, R, D], ``"tokens"`` -> [N, R*P, D], ``"tokenfc"`` (token
            FC, `brainjepa.models.encoder.token_fc`) -> [N, R(R-1)/2].
        options: windows, normalisation, encoder, masked views, batching (default `EmbedOptions()`).
        tr: TR in seconds of every sample (needed only with ``options.target_tr``).
        progress: show a tqdm bar over samples.

    Returns:
        float32 CPU tensor of the pooled embeddings.

    Raises:
        DataError: a sample with the wrong ROI count or too few frames (named by its index).
        ConfigError: bad pooling or options.
    """
    if isinstance(x, Tensor):
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ndarray) and x.ndim != 3:
        raise DataError(f"embed expects series [N, R, T] or a list of [R, T] arrays, got shape {x.shape}")
    samples = ((_numeric(s, f"sample {i}"), tr, f"sample {i}") for i, s in enumerate(x))
    return _embed_samples(BrainJEPA.load(model), samples, len(x), pooling=pooling, options=options or EmbedOptions(),
                          progress=progress)


def _numeric(sample: object, name: str) -> np.ndarray:
    """`sample` as an array of numbers; text or objects (a file read as strings) are refused, naming the sample."""
    array = np.asarray(sample)
    if array.dtype.kind not in "biuf":
        raise DataError(f"embed: {name} holds {array.dtype} values, not numbers (text read as strings?); parse it "
                        "first, e.g. np.loadtxt(path) or pandas.read_csv(path).to_numpy(float)")
    return array


def embed_store(
    model: BrainJEPA | str | Path,
    store: RunStore | str | Path,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    pooling: Pooling = "mean",
    options: EmbedOptions | None = None,
    progress: bool = True,
) -> StoreEmbeddings:
    """Embed the runs `indices` (None: all) of a store, reading one run at a time; see `embed`.

    Returns:
        `StoreEmbeddings` whose row i is run ``indices[i]``; the index has subject, run and phenotype columns.

    Raises:
        DataError: the store's ROI count differs from the model's, its ROI labels differ from the model's
            (`check_roi_labels`, unless ``options.check_roi_labels`` is False), or a run is too short (all named).
    """
    model = BrainJEPA.load(model)
    options = options or EmbedOptions()
    store, idx = open_runs(store, indices)
    check_num_rois(store, model.config.num_rois)
    what = f"store {store.path}"
    unchecked = check_roi_labels(store.roi_labels, model, what, check=options.check_roi_labels)
    names = [f"subject {s!r} run {r!r}" for s, r in zip(store.manifest["subject"].astype(str),
                                                         store.manifest["run"].astype(str), strict=True)]
    samples = ((store.run(int(i)), store.tr(int(i)), names[i]) for i in idx)
    emb = _embed_samples(model, samples, len(idx), pooling=pooling, options=options, progress=progress)
    warn_unlabelled(unchecked, what)
    return StoreEmbeddings(emb, store_index(store, idx))


def read_files(
    paths: str | Path | Sequence[str | Path],
    *,
    num_rois: int,
    atlases: Sequence[str | Path] = (),
    tr: float | None = None,
    fmriprep: FmriprepOptions | None = None,
    orientation: str = "auto",
    header: bool | None = None,
    index_col: bool | None = None,
) -> list[Run]:
    """Runs [R, T] read from files, folders or glob patterns by the readers `brainjepa prepare` uses: tables
    (CSV/TSV, with or without ROI names), .npy/.npz, 4-D NIfTI with `atlases`, and fMRIPrep BOLD runs (files
    named ``*_desc-preproc_bold.nii.gz`` / ``*_bold.dtseries.nii``, or every input when `fmriprep` is given),
    cleaned as `fmriprep` says (default `FmriprepOptions()`: the "simple" confound strategy) and parcellated
    with `atlases` (files or names such as ``schaefer400_tians3``).

    Raises:
        DataError: a missing or unreadable input (named).
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    derivatives = [p for p in items if fmriprep is not None or str(p).endswith((VOLUME_SUFFIX, CIFTI_SUFFIX))]
    plain = [p for p in items if p not in derivatives]
    runs = []
    if derivatives:
        runs += [read_fmriprep(src, atlases=atlases, tr=tr) for src in find_fmriprep_runs(derivatives, fmriprep)]
    if plain:
        read = ReadOptions(num_rois=num_rois, orientation=orientation, header=header, index_col=index_col,
                           atlases=tuple(atlases), tr=tr)
        beside = [a for a in atlases if Path(a).exists()]  # atlas files next to the inputs are not runs
        runs += [read_source(src, read) for src in find_sources(plain, skip=beside)]
    return runs


def embed_files(
    model: BrainJEPA | str | Path,
    paths: str | Path | Sequence[str | Path],
    *,
    atlases: Sequence[str | Path] = (),
    tr: float | None = None,
    fmriprep: FmriprepOptions | None = None,
    orientation: str = "auto",
    header: bool | None = None,
    index_col: bool | None = None,
    pooling: Pooling = "mean",
    options: EmbedOptions | None = None,
    progress: bool = False,
) -> StoreEmbeddings:
    """Embed runs straight from files (no store): what `read_files` reads, then as `embed_store`.

    Example: ``embed_files("runs/mine", "sub-01_task-rest_bold.tsv").embeddings[0]`` is the run's [D] embedding.

    Args:
        model: a BrainJEPA, or a folder / checkpoint / Hub id / known name `BrainJEPA.load` reads.
        paths: one or more files, folders or glob patterns.
        atlases: label images for NIfTI and fMRIPrep runs, joined in order (e.g. ``["schaefer400_tians3"]``).
        tr: TR in seconds where a file has none (needed with ``options.target_tr``); overrides a file's own.
        fmriprep: how fMRIPrep runs are selected and cleaned (default `FmriprepOptions()`).
        orientation, header, index_col: how tables and arrays are laid out, where the file cannot tell (as in
            `brainjepa.data.readers.ReadOptions`; None and "auto" decide from the evidence or refuse).
        pooling, options, progress: as `embed_store`.

    Returns:
        `StoreEmbeddings`, one row per run read (fMRIPrep runs first, then the others in input order); the index
        has subject, run, source and tr.

    Raises:
        DataError: unreadable inputs, another ROI count, ROI labels (table header or atlas names) that differ
            from the model's (unless ``options.check_roi_labels`` is False), runs too short (all named).
    """
    import pandas as pd

    model = BrainJEPA.load(model)
    options = options or EmbedOptions()
    runs = read_files(paths, num_rois=model.config.num_rois, atlases=atlases, tr=tr, fmriprep=fmriprep,
                      orientation=orientation, header=header, index_col=index_col)
    for run in runs:  # refusals first; one warning for the runs that could not be compared
        if run.roi_labels is not None and model.metadata.get("roi_labels"):
            check_roi_labels(run.roi_labels, model, str(run.source), check=options.check_roi_labels)
    unlabelled = [run for run in runs if run.roi_labels is None or not model.metadata.get("roi_labels")]
    what = ", ".join(map(str, [paths] if isinstance(paths, str | Path) else paths))
    unchecked = (check_roi_labels(unlabelled[0].roi_labels, model, what, check=options.check_roi_labels)
                 if unlabelled else None)
    samples = ((run.ts, run.tr, run.source) for run in runs)
    emb = _embed_samples(model, samples, len(runs), pooling=pooling, options=options, progress=progress)
    warn_unlabelled(unchecked, what)
    index = pd.DataFrame({"subject": [r.subject for r in runs], "run": [r.run for r in runs],
                          "source": [r.source for r in runs], "tr": [r.tr for r in runs]})
    return StoreEmbeddings(emb, index)


def store_index(store: RunStore, indices: np.ndarray) -> pandas.DataFrame:
    """Id and phenotype columns of the runs `indices`, one row each (what an embedding row belongs to)."""
    keep = [c for c in store.manifest.columns if c not in _NOT_INDEX]
    return store.manifest.iloc[np.asarray(indices, dtype=np.int64)][keep].reset_index(drop=True)


def save_embeddings(result: StoreEmbeddings, out: str | Path) -> Path:
    """Write embeddings to ``.npy`` (array + ``<out>.index.csv`` sidecar) or ``.parquet`` (ids + emb_0..emb_{D-1}).

    Written to temporary files and renamed: a failed write (a full disk) leaves the previous files as they were.

    Raises:
        OutputError: the write failed (naming the file, and the disk when it is full).
        ConfigError: another suffix, a non-[N, D] array for parquet, or pyarrow missing for parquet.
    """
    emb = result.embeddings.numpy()
    out = check_embeddings_path(out, "mean" if emb.ndim == 2 else "roi/tokens")
    _refuse_non_finite(emb, result.index, f"{out}: refusing to write")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":  # the array and its index are replaced together, or neither is
        atomic_writes([(out, atomic_save_npy(out, emb)),
                       (index_path(out), lambda tmp: result.index.to_csv(tmp, index=False))])
    else:
        import pandas as pd

        cols = pd.DataFrame(emb, columns=[f"emb_{d}" for d in range(emb.shape[1])])
        table = pd.concat([result.index.reset_index(drop=True), cols], axis=1)
        atomic_write(out, lambda tmp: table.to_parquet(tmp, index=False))
    logger.info("wrote embeddings %s to %s", list(emb.shape), out)
    return out


def check_embeddings_path(out: str | Path, pooling: str = "mean") -> Path:
    """The file `save_embeddings` writes for embeddings of `pooling`, checked before any work.

    Raises:
        ConfigError: a suffix other than .npy / .parquet, parquet for embeddings that are not [N, F] (mean or
            tokenfc pooling), or pyarrow missing for parquet.
    """
    out = Path(out)
    if out.suffix not in (".npy", ".parquet"):
        raise ConfigError(f"{out}: embeddings are written to .npy or .parquet, not {out.suffix or 'no suffix'!r}")
    if out.suffix == ".parquet":
        if pooling not in _FLAT_POOLINGS:
            raise ConfigError(f"{out}: parquet holds [N, D] embeddings only (pooling mean or tokenfc); write "
                              f"pooling {pooling} (--pooling) to a .npy file")
        _require_pyarrow(out)
    return check_writable(out, folder=False)


def load_embeddings(path: str | Path) -> StoreEmbeddings:
    """Read what `save_embeddings` wrote (the .npy needs its ``.index.csv`` sidecar to match rows)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such embeddings file")
    ids = {c: str for c in _ID_COLUMNS}
    if path.suffix == ".npy":
        sidecar = index_path(path)
        if not sidecar.is_file():
            raise DataError(f"{path}: index sidecar {sidecar.name} is missing, so rows cannot be matched to runs")
        try:
            emb, index = np.load(path, allow_pickle=False), pd.read_csv(sidecar, dtype=ids)
        except Exception as err:  # numpy and pandas raise many types for corrupt files
            raise DataError(f"{path}: cannot read embeddings ({type(err).__name__}: {err})") from err
        if not np.issubdtype(emb.dtype, np.number) or emb.ndim < 2:
            raise DataError(f"{path}: expected numeric embeddings [N, D], got {emb.dtype} of shape {emb.shape}")
    elif path.suffix == ".parquet":
        _require_pyarrow(path)
        try:
            table = pd.read_parquet(path)
            emb_cols = [c for c in table.columns if str(c).startswith("emb_")]
            emb = table[emb_cols].to_numpy(np.float32)
            index = table.drop(columns=emb_cols).astype(ids)
        except Exception as err:
            raise DataError(f"{path}: cannot read embeddings ({type(err).__name__}: {err})") from err
    else:
        raise DataError(f"{path}: embeddings are read from .npy or .parquet, not {path.suffix!r}")
    if len(index) != len(emb) or any(c not in index.columns for c in _ID_COLUMNS):
        raise DataError(f"{path}: index has {len(index)} rows / columns {list(index.columns)}; need {len(emb)} "
                        f"rows with {list(_ID_COLUMNS)}")
    _refuse_non_finite(emb, index, f"{path}: holds")
    return StoreEmbeddings(torch.from_numpy(np.array(emb, dtype=np.float32)), index)


def non_finite_rows(emb: np.ndarray) -> np.ndarray:
    """Boolean [N]: rows of an embeddings array holding a NaN or Inf."""
    return ~np.isfinite(np.asarray(emb).reshape(len(emb), -1)).all(axis=1)


def _refuse_non_finite(emb: np.ndarray, index: pandas.DataFrame, what: str) -> None:
    bad = non_finite_rows(emb)
    if bad.any():
        first = index.iloc[int(np.flatnonzero(bad)[0])]
        raise DataError(f"{what} {int(bad.sum())} rows of non-finite embeddings (first: subject "
                        f"{first['subject']!r} run {first['run']!r})")


def index_path(out: Path) -> Path:
    """The row-index sidecar of a .npy embeddings file: ``<out>.index.csv``."""
    return out.with_name(out.name + ".index.csv")


def _require_pyarrow(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"{path}: parquet needs pyarrow; install it with `pip install 'brainjepa[data]'` (or use .npy)"
        ) from err


# --------------------------------------------------------------------------------------------------- core
def _embed_samples(
    model: BrainJEPA,
    samples: Iterable[tuple[np.ndarray, float | None, str]],
    n: int,
    *,
    pooling: str,
    options: EmbedOptions,
    progress: bool,
) -> Tensor:
    """Embed (series [R, T], tr, name) samples in order; chunks of samples share one forward pass."""
    from tqdm.auto import tqdm

    if pooling not in POOLINGS:
        raise ConfigError(f"pooling must be one of {list(POOLINGS)}, got {pooling!r}")
    if pooling == "tokens" and options.masked_views:
        raise ConfigError("masked views average pooled embeddings; use pooling 'mean', 'roi' or 'tokenfc' with "
                          "masked_views")
    cfg = model.config
    if pooling == "tokenfc" and options.masked_views and _kept_patches(options, cfg.num_time_patches) < 2:
        raise ConfigError(f"tokenfc pooling correlates each ROI's tokens over time, but mask_keep "
                          f"{options.mask_keep} keeps {_kept_patches(options, cfg.num_time_patches)} of "
                          f"{cfg.num_time_patches} time patches per ROI; keep at least 2")
    if not -cfg.depth <= options.layer < cfg.depth:
        raise ConfigError(f"embed.layer must be in [{-cfg.depth}, {cfg.depth}) for this "
                          f"{cfg.depth}-block encoder, got {options.layer}")
    net = model.target_encoder if options.encoder == "target" else model.encoder
    run = options.runtime(next(net.parameters()).device)
    device = run.device
    net.to(device)
    spec = options.window_spec(cfg.num_frames)
    normalizer = model_normalizer(model, options.normalization)
    out: list[Tensor] = []
    non_finite: list[str] = []  # samples whose embedding is not finite: refused, never returned
    was_training = net.training
    net.eval()
    # The health check reads one window of each of the first HEALTH_WINDOWS runs. Embedding the full input with the
    # last block computes their stream anyway, so the check is fed from those passes; otherwise it is its own pass.
    fused = not options.masked_views and options.layer % cfg.depth == cfg.depth - 1
    off_clock: list[tuple[str, float]] = []  # (run, seconds between its frames) where the model's clock differs
    samples = _watch_clock(iter(samples), model, options, off_clock)
    head = list(itertools.islice(samples, 1 if fused else HEALTH_WINDOWS))  # the plan's window (and the check's)
    samples = itertools.chain(head, samples)
    try:
        plan = EmbeddingPlan(run, options.batch_size or DEFAULT_BATCH)
        if head:
            centre = torch.from_numpy(np.concatenate([_windows(*sample, spec, 1, normalizer, cfg.num_rois)
                                                      for sample in head])).to(device)
            plan = plan_embedding(net, centre[:1], run, precision_auto=options.precision == "auto",
                                  batch_size=options.batch_size, windows=n * options.windows)
        plan.log(logger)
        run, chunk = plan.run, max(1, plan.batch_size // options.windows)
        meter = HealthMeter(net) if fused and n >= 2 else None
        with (tqdm(total=n, desc="embedding", unit="run", disable=not progress) as bar,
              inference_attention(net, plan.attention)):
            if not fused and len(head) >= 2:  # a pass of its own, in the embedding's precision and kernel
                with run.autocast():
                    report_health(model, encoder_health(net, centre, plan.batch_size), len(centre), normalizer)
            for first, block in _chunks(samples, chunk):
                x = np.stack([_windows(ts, tr, name, spec, options.windows, normalizer, cfg.num_rois)
                              for ts, tr, name in block])
                x = torch.from_numpy(x.reshape(-1, *x.shape[2:])).to(device)
                with run.autocast():
                    pooled = _encode(net, x, pooling, options, first, len(block), plan.batch_size, meter)
                if meter is not None and (meter.windows == HEALTH_WINDOWS or first + len(block) == n):
                    report_health(model, meter.result(), meter.windows, normalizer)
                    meter = None
                out.append(pooled.view(len(block), options.windows, *pooled.shape[1:]).mean(1))
                bad = non_finite_rows(out[-1].numpy())
                non_finite += [name for (_, _, name), b in zip(block, bad.tolist(), strict=True) if b]
                bar.update(len(block))
    finally:
        net.train(was_training)
    if non_finite:
        raise DataError(f"non-finite embeddings for {len(non_finite)} of {n} runs ({', '.join(non_finite[:3])}"
                        f"{', ...' if len(non_finite) > 3 else ''}); nothing is written. Check these runs' values, "
                        "the model's weights, the normalisation (normalization=, --normalization) and precision "
                        "fp32 (precision=, --precision)")
    _warn_off_clock(off_clock, n, model)
    if not out:
        return torch.empty(0, *net.pooled_shape(pooling))
    return torch.cat(out)


_WARNED_CLOCK: set[str] = set()  # off-clock warnings already logged (random-init copies repeat the same runs)


def _watch_clock(samples: Iterator[tuple[np.ndarray, float | None, str]], model: BrainJEPA, options: EmbedOptions,
                 off_clock: list[tuple[str, float]]) -> Iterator[tuple[np.ndarray, float | None, str]]:
    """`samples` unchanged; those whose frames (TR x sampling_rate) are not the model's pretraining frame spacing
    are noted in `off_clock` (none with target_tr, which resamples every run to the clock asked for)."""
    spacing = model.frame_spacing if options.target_tr is None else None
    for ts, tr, name in samples:
        if spacing and tr is not None and not np.isclose(tr * options.sampling_rate, spacing, rtol=0.01):
            off_clock.append((name, tr * options.sampling_rate))
        yield ts, tr, name


def _warn_off_clock(off_clock: Sequence[tuple[str, float]], n: int, model: BrainJEPA) -> None:
    """One warning line for the runs embedded on another clock than the model's (see `_watch_clock`)."""
    if not off_clock:
        return
    spacing = model.frame_spacing
    names = ", ".join(name for name, _ in off_clock[:3]) + (", ..." if len(off_clock) > 3 else "")
    apart = sorted({round(s, 4) for _, s in off_clock})
    message = (f"{len(off_clock)} of {n} runs ({names}) have frames {', '.join(f'{s:g}' for s in apart[:3])} s "
               f"apart (TR x sampling_rate), but {model_name(model)} was pretrained on frames {spacing:g} s apart; "
               f"give target_tr={spacing:g} (--target-tr {spacing:g}) to resample them to its clock")
    if message not in _WARNED_CLOCK:
        _WARNED_CLOCK.add(message)
        logger.warning(message)


def report_health(model: BrainJEPA, health: Health, windows: int, normalizer: Normalizer) -> None:
    """Log the encoder's health on the first windows embedded (`brainjepa.models.health`), and warn when these
    data put it in a degenerate regime, or when the model's normalisation gives them another input scale than
    its training data had (the model's ``metadata["input_sd"]``, written by pretraining)."""
    logger.info("encoder health on %d windows: %s", windows, health.summary())
    for problem in health.problems():
        logger.warning("DEGENERATE ENCODER? %s", problem)
    trained = model.metadata.get("input_sd")
    if isinstance(trained, int | float) and trained > 0 and not 0.25 <= health.input_sd / trained <= 4:
        logger.warning(
            "the model's normalisation (%r) gives these data an input SD of %.3g, but its training data had %.3g: "
            "they are on another scale than the model was trained on (raw vs demeaned or z-scored series?). The "
            "embeddings describe the scale, not the model: prepare the data as its training data were, or pass "
            "--normalization roi_zscore if the model was trained on z-scored windows", normalizer,
            health.input_sd, trained)


def _chunks(samples: Iterable, size: int) -> Iterator[tuple[int, list]]:
    block: list = []
    first = 0
    for sample in samples:
        block.append(sample)
        if len(block) == size:
            yield first, block
            first, block = first + size, []
    if block:
        yield first, block


def _windows(ts: np.ndarray, tr: float | None, name: str, spec: WindowSpec, k: int,
             normalizer: Normalizer, num_rois: int) -> np.ndarray:
    """k normalised windows [k, R, frames] of one run; the whole run is checked as `validate` checks it (NaN/Inf,
    constant ROIs), so a bad value is named where it is, not as a non-finite embedding; errors name the sample."""
    if ts.ndim != 2 or ts.shape[0] != num_rois:
        raise DataError(
            f"{name}: series has shape {list(ts.shape)} but the model expects [{num_rois}, T] (ROIs x frames)"
        )
    raise_for_problems(check_timeseries(ts, source=name))
    wins = take_windows(ts, spec, k, tr=tr, subject=name)
    try:
        return np.stack([normalizer(w) for w in wins])
    except DataError as err:
        raise DataError(f"{name}: {err}") from err


@torch.inference_mode()
def _encode(net: BrainEncoder, x: Tensor, pooling: Pooling, options: EmbedOptions, first: int, count: int,
            batch: int, health: HealthMeter | None = None) -> Tensor:
    """Pooled float32 CPU embeddings of windows x [count * k, R, F], averaged over masked views if any, in forward
    passes of at most `batch` windows (a run's k windows may take several).

    `health` (full input and the last block only) takes the stream of each run's first window, up to
    `HEALTH_WINDOWS` in all: windows of one run are alike, so the check compares runs.
    """
    if not options.masked_views:
        stream = _in_passes(lambda xs: net.forward_intermediates(xs, [options.layer])[0], batch, x)
        if health is not None:
            take = slice(None, (HEALTH_WINDOWS - health.windows) * (len(x) // count), len(x) // count)
            health.add(x[take], stream[take])
        return net.pool(net.norm(stream).float(), pooling).cpu()
    idx = _view_indices(first, count, options, x.shape[1], net.cfg.num_time_patches).to(x.device)
    total = sum(net.pool(_in_passes(partial(_features, net, layer=options.layer), batch, x, idx[v]), pooling)
                for v in range(options.masked_views))
    return (total / options.masked_views).cpu()


def _in_passes(forward: Callable[..., Tensor], batch: int, *rows: Tensor) -> Tensor:
    """`forward` over the rows of `rows` (aligned tensors) in passes of at most `batch`, concatenated."""
    if len(rows[0]) <= batch:
        return forward(*rows)
    return torch.cat([forward(*(r[i:i + batch] for r in rows)) for i in range(0, len(rows[0]), batch)])


def _features(net: BrainEncoder, x: Tensor, context_idx: Tensor | None, *, layer: int) -> Tensor:
    """float32 tokens of block `layer` after the final norm (the last block: `forward_features`)."""
    return net.forward_intermediates(x, [layer], norm=True, context_idx=context_idx)[0].float()


def _view_indices(first: int, count: int, options: EmbedOptions, num_rois: int, num_patches: int) -> Tensor:
    """Token indices [views, count * k, R * keep]: each ROI keeps the same number of its time patches, drawn
    from numpy's generator seeded by (seed, sample index), so results do not depend on batching."""
    keep = _kept_patches(options, num_patches)
    views, k = options.masked_views, options.windows
    per_sample = []
    for i in range(first, first + count):
        keys = np.random.default_rng((options.seed, i)).random((views, k, num_rois, num_patches))
        patches = np.sort(np.argsort(keys, axis=-1)[..., :keep], axis=-1)
        per_sample.append(patches + np.arange(num_rois)[:, None] * num_patches)
    idx = np.stack(per_sample, axis=1)  # [views, count, k, R, keep]
    return torch.from_numpy(idx.reshape(views, count * k, num_rois * keep))


def _kept_patches(options: EmbedOptions, num_patches: int) -> int:
    """Time patches per ROI that a masked view keeps."""
    return max(1, round(options.mask_keep * num_patches))
