"""Brain-JEPA models on the Hugging Face Hub: load by repo id, push with a generated model card.

A Hub repository holds what `BrainJEPA.save_pretrained` writes (``config.json``, ``model.safetensors``: loading
stays safetensors-only) plus ``README.md``, the model card made by `model_card` from the model itself:
architecture, ROI space and order, gradient, normalisation statistics, training record and evaluation table.
`download` honours the usual Hub settings (``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE=1`` reads the cache
only, ``HF_TOKEN``). ``huggingface_hub`` is optional (``pip install "brainjepa[hub]"``) and imported only here.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from brainjepa.errors import BrainJEPAError, CheckpointError
from brainjepa.io import atomic_write_text

HUB_FILES = ("config.json", "model.safetensors", "README.md")
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


PAPER_URL = "https://arxiv.org/abs/2409.19407"  # Dong et al., Brain-JEPA, NeurIPS 2024
PACKAGE_URL = "https://pypi.org/project/brainjepa/"
REFERENCE_URL = "https://github.com/Eric-LRL/Brain-JEPA"  # the authors' code
# evaluate.csv's rows of the evaluated model itself ("brainjepa, ROI mean", ...): evaluation.results.PRETRAINED
# names them; the file format is read here without importing the evaluation layer (tests/test_hub.py ties the two)
MODEL_ROW_PREFIX = "brainjepa, "
_FILE_SUFFIXES = (".pth", ".tar", ".pt", ".ckpt", ".safetensors", ".bin", ".json")


def is_hub_id(path: str | Path) -> bool:
    """True for ``org/name`` that is not an existing local path (a local folder always wins) nor a checkpoint
    file name (``checkpoints/jepa-ep300.pth.tar`` that is missing stays a missing file)."""
    return (isinstance(path, str) and bool(_REPO_ID.fullmatch(path)) and not path.endswith(_FILE_SUFFIXES)
            and not Path(path).exists())


def _hub(purpose: str, error: type[BrainJEPAError] = CheckpointError):
    try:
        import huggingface_hub
    except ImportError as err:
        raise error(f"{purpose} needs huggingface_hub: pip install 'brainjepa[hub]'") from err
    return huggingface_hub


def download(repo_id: str, *, force_download: bool = False, token: str | bool | None = None,
             cache_dir: str | Path | None = None, local_files_only: bool = False,
             revision: str | None = None) -> Path:
    """The local snapshot folder of a Hub model (downloaded once into the HF cache; only the cache offline).

    The options mean what they mean in ``huggingface_hub.snapshot_download`` (and `ModelHubMixin.from_pretrained`):
    `cache_dir` instead of ``HF_HUB_CACHE``, `token` for a private or gated repository (True: the saved login),
    `force_download` to fetch again what is cached, `local_files_only` to read the cache only, `revision` a
    branch, tag or commit.

    Raises:
        CheckpointError: one line when the repository or revision cannot be found, or is not cached offline.
    """
    hub = _hub(f"{repo_id}: no such local folder; loading it from the Hugging Face Hub")
    try:
        folder = hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                       force_download=force_download, local_files_only=local_files_only,
                                       allow_patterns=list(HUB_FILES))
    except Exception as err:  # huggingface_hub raises many types (offline, not found, gated, HTTP)
        reason = " ".join(str(err).split())[:300]
        raise CheckpointError(
            f"{repo_id}: no such local folder, and not loadable from the Hugging Face Hub "
            f"({type(err).__name__}: {reason})"
        ) from err
    return Path(folder)


def resolve(path: str | Path, *, force_download: bool = False, token: str | bool | None = None,
            cache_dir: str | Path | None = None, local_files_only: bool = False,
            revision: str | None = None) -> Path:
    """The folder `path` names: a Hub id's snapshot (`download`, with these options), else the local path.

    A local path ignores `token`, `cache_dir` and `local_files_only` (it is local already) and refuses `revision`
    and `force_download`, which cannot apply to it, so that a mistyped id does not load a local folder quietly.
    """
    if is_hub_id(path):
        return download(str(path), force_download=force_download, token=token, cache_dir=cache_dir,
                        local_files_only=local_files_only, revision=revision)
    refused = [name for name, value in (("revision", revision), ("force_download", force_download)) if value]
    if refused:
        raise CheckpointError(f"{path}: a local path, not a Hugging Face Hub id, so {' and '.join(refused)} cannot "
                              f"be used (drop {'them' if len(refused) > 1 else 'it'}, or pass org/name)")
    return Path(path)


# ----------------------------------------------------------------------------------------------- model card
def _table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _evaluation_markdown(evaluation: Any) -> str | None:
    """A table from markdown text, a pandas DataFrame, a list of row dicts, a {name: {metric: value}} dict, or a
    Path to a probe.md / probe.csv."""
    if evaluation is None:
        return None
    if isinstance(evaluation, Path):
        if evaluation.suffix == ".csv":
            import pandas as pd

            evaluation = pd.read_csv(evaluation)
        else:
            evaluation = evaluation.read_text()
    if isinstance(evaluation, str):
        return evaluation.strip()
    if hasattr(evaluation, "to_dict") and hasattr(evaluation, "columns"):  # pandas DataFrame
        frame = evaluation.reset_index() if evaluation.index.name else evaluation
        return _table(frame.to_dict(orient="records"))
    if isinstance(evaluation, Mapping):
        return _table([{"model": name, **dict(values)} for name, values in evaluation.items()])
    return _table(list(evaluation))


def _summary(values: Sequence[float]) -> str:
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return f"{arr.size} values, min {arr.min():.4g}, median {np.median(arr):.4g}, max {arr.max():.4g}"


def _roi_section(model: nn.Module) -> list[str]:
    meta, rois = model.metadata, model.config.num_rois
    lines = [f"{rois} ROIs; inputs are `[ROIs, frames]` with rows in this order."]
    if meta.get("atlas"):
        lines.append(f"Atlas: {meta['atlas']}.")
    labels = meta.get("roi_labels")
    if labels:
        head = ", ".join(map(str, labels[:3]))
        lines.append(f"ROI labels (also in `config.json`, metadata `roi_labels`): {head}, ..., {labels[-1]}.")
    elif str(meta.get("source", "")).startswith("reference checkpoint"):
        lines.append("The official Brain-JEPA order: the 50 Tian S3 subcortical ROIs first, then the 400 "
                     "Schaefer-2018 parcels (17 networks), as `brainjepa prepare --atlas schaefer400_tians3` writes.")
    else:
        lines.append("The ROI labels were not recorded with the model: use the atlas and order of its training data.")
    return lines


def _normalization_section(meta: Mapping[str, Any]) -> list[str]:
    record = meta.get("normalization")
    if not record:
        return ["None recorded: `brainjepa embed` applies a per-sample z-score to each window."]
    lines = [f"Kind `{record.get('kind')}`, stored in `config.json` (metadata `normalization`) and applied by "
             "`brainjepa embed` / `probe` / `finetune`."]
    if record.get("kind") == "robust":
        lines.append(f"`x = (x - median[roi]) / iqr[roi]`, fitted on {record.get('num_subjects')} subjects "
                     f"({record.get('num_runs')} runs).")
        lines += [f"- median: {_summary(record['median'])}", f"- IQR: {_summary(record['iqr'])}"]
    return lines


def _record_lines(record: Any, indent: str = "") -> list[str]:
    if not isinstance(record, Mapping):
        return [f"{indent}- {record}"]
    lines = []
    for key, value in record.items():
        if isinstance(value, Mapping):
            lines += [f"{indent}- {key}:"] + _record_lines(value, indent + "  ")
        else:
            lines.append(f"{indent}- {key}: {json.dumps(value) if isinstance(value, (list, dict)) else value}")
    return lines


def _evaluate_csv(model: nn.Module, evaluation: Any) -> Path | None:
    """The ``evaluate.csv`` of `brainjepa evaluate` that `evaluation` names (the file, or a folder holding it or an
    ``evaluate/`` folder with it); by default, one in the folder the model was loaded from."""
    if evaluation is None:
        origin = getattr(model, "name_or_path", None)
        evaluation = Path(origin) if origin and Path(origin).is_dir() else None
    if not isinstance(evaluation, Path):
        return None
    found = [f for f in (evaluation, evaluation / "evaluate.csv", evaluation / "evaluate" / "evaluate.csv")
             if f.name == "evaluate.csv" and f.is_file()]
    return found[0] if found else None


def _suite_scores(csv: Path):
    """The done scores of an evaluate.csv (one row per task and row: the model, random init, baselines)."""
    import pandas as pd

    frame = pd.read_csv(csv)
    return frame[(frame["type"] == "score") & (frame["status"] == "done")]


def _eval_results(hub, scores) -> list:
    """The pretrained model's scores (rows ``brainjepa, <readout>``) as the Hub's machine-readable
    ``model-index``: one result per task and readout, with its interval and null in ``metric_args``."""
    import math

    results = []
    for row in scores[scores["row"].str.startswith(MODEL_ROW_PREFIX)].itertuples(index=False):
        dataset = row.task.split("/")[0]
        extra = {k: float(getattr(row, k)) for k in ("ci_low", "ci_high", "chance", "null_high", "p_value")
                 if not math.isnan(float(getattr(row, k)))}
        results.append(hub.EvalResult(
            task_type=row.kind, task_name=row.task, dataset_type=dataset, dataset_name=dataset,
            metric_type=row.metric, metric_name=f"{row.metric} ({row.row})", metric_value=float(row.mean),
            metric_config=row.row.split(", ", 1)[1], metric_args={**extra, "n_subjects": int(row.n_units)},
        ))
    return results


def _card_data(hub, repo_id: str, license: str | None, eval_results: list) -> str:
    """The card's YAML front matter, written by huggingface_hub's `ModelCardData`."""
    data = hub.ModelCardData(
        model_name=repo_id, library_name="brainjepa", pipeline_tag="feature-extraction", license=license,
        tags=["fmri", "neuroscience", "brain-jepa", "self-supervised", f"arxiv:{PAPER_URL.rsplit('/', 1)[1]}"],
        eval_results=eval_results or None,
    )
    return f"---\n{data.to_yaml()}\n---\n"


def model_card(model: nn.Module, repo_id: str, *, evaluation: Any = None, license: str | None = None) -> str:
    """The README.md of a Hub repository, written from the model's config and metadata.

    Args:
        model: the model to describe.
        repo_id: ``org/name``, used in the usage examples.
        evaluation: the ``evaluate.csv`` of `brainjepa evaluate` (a Path to it, or to a folder holding it or an
            ``evaluate/`` folder with it: rendered as a table and, for the model's own rows, as machine-readable
            eval results), or a probe / fine-tuning table (markdown, DataFrame, row dicts, {model: {metric:
            value}}, or a Path to a probe.md / probe.csv); default: an evaluate.csv in the folder the model was
            loaded from, else ``model.metadata["evaluation"]`` when present.
        license: SPDX id for the card's metadata (e.g. ``apache-2.0``), if known.

    Raises:
        BrainJEPAError: huggingface_hub (``brainjepa[hub]``), which writes the metadata, is not installed.
    """
    hub = _hub("writing a Hub model card", BrainJEPAError)
    cfg, meta = model.config, model.metadata
    count = lambda m: sum(p.numel() for p in m.parameters())
    grad = model.gradient.detach().cpu()
    training = {k: meta[k] for k in ("training", "data", "schedule", "pretraining") if k in meta}
    suite = _evaluate_csv(model, evaluation)
    scores = _suite_scores(suite) if suite is not None else None
    if scores is not None:
        columns = ["task", "row", "metric", "mean", "ci_low", "ci_high", "chance", "p_value"]
        table = (f"From `brainjepa evaluate` ({suite.name}): every row's score with its 95% interval over subjects, "
                 f"the task's chance level and the permutation p-value.\n\n"
                 + _table(scores[columns].to_dict(orient="records")))
    else:
        table = _evaluation_markdown(evaluation if evaluation is not None else meta.get("evaluation"))
    sections = [
        f"# {repo_id}", "",
        "A Brain-JEPA model (joint-embedding predictive architecture for parcellated fMRI) in the "
        f"[brainjepa]({PACKAGE_URL}) format.", "",
        f"- Paper: [Brain-JEPA: Brain Dynamics Foundation Model with Gradient Positioning and Spatiotemporal "
        f"Masking]({PAPER_URL}) (Dong et al., NeurIPS 2024)",
        f"- Code: [brainjepa]({PACKAGE_URL}); the authors' reference implementation: {REFERENCE_URL}", "",
        "## Use", "", "```python", "from brainjepa import BrainJEPA", "",
        f'model = BrainJEPA.from_pretrained("{repo_id}")     # safetensors only; cached by huggingface_hub',
        "```", "", "```bash",
        f"brainjepa embed --model {repo_id} --data STORE --out embeddings.npy", "```", "",
        "## Architecture", "",
        _table([
            {"part": "encoder", "width": cfg.embed_dim, "depth": cfg.depth, "heads": cfg.num_heads,
             "parameters": count(model.encoder)},
            {"part": "predictor", "width": cfg.pred_embed_dim, "depth": cfg.pred_depth,
             "heads": cfg.predictor_heads, "parameters": count(model.predictor)},
        ]), "",
        f"Input `[{cfg.num_rois} ROIs, {cfg.num_frames} frames]`, patches of {cfg.patch_size} frames: "
        f"{cfg.num_rois * cfg.num_time_patches} tokens (token = roi * {cfg.num_time_patches} + time patch). "
        f"Positions: `{cfg.pos_embed}`. The EMA target encoder is included (the one `embed` uses by default). "
        f"Full configuration in `config.json`.", "",
        "## ROI space and order", "", *_roi_section(model), "",
        "## Brain gradient", "",
        f"`[{grad.shape[0]}, {grad.shape[1]}]` functional gradients, one row per ROI in the order above, stored in "
        f"`model.safetensors` (`encoder.pos_embed.gradient`); {_summary(grad.flatten().tolist())}."
        + (f" Source: {meta['gradient']}." if meta.get("gradient") else ""), "",
        "## Normalisation", "", *_normalization_section(meta), "",
        "## Training", "",
        *(_record_lines(training) if training else [f"Source: {meta['source']}." if meta.get("source") else
                                                    "No training record was stored with the model."]), "",
    ]
    if table:
        sections += ["## Evaluation", "", table, ""]
    return _card_data(hub, repo_id, license, _eval_results(hub, scores) if scores is not None else []) + "\n" + \
        "\n".join(sections)


def save_for_hub(model: nn.Module, folder: str | Path, repo_id: str, *, evaluation: Any = None,
                 license: str | None = None) -> Path:
    """Write the files of a Hub repository (`save_pretrained` + README.md) into `folder`."""
    folder = model.save_pretrained(folder)
    atomic_write_text(folder / "README.md", model_card(model, repo_id, evaluation=evaluation, license=license))
    return folder


def push_to_hub(model: nn.Module, repo_id: str, *, private: bool = False, token: str | None = None,
                commit_message: str = "Upload Brain-JEPA model", evaluation: Any = None,
                license: str | None = None, revision: str | None = None) -> str:
    """Create the repository if needed and upload config.json, model.safetensors and the model card.
    `private=True` makes a new repository private and refuses to upload to an existing public one.

    Returns:
        The URL of the commit.
    """
    hub = _hub(f"pushing to {repo_id} on the Hugging Face Hub", BrainJEPAError)
    if not _REPO_ID.fullmatch(repo_id):
        raise BrainJEPAError(f"{repo_id!r} is not a Hub repository id (expected org/name)")
    api = hub.HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    if private and api.repo_info(repo_id).private is False:  # the Hub ignores `private` for an existing repo
        raise BrainJEPAError(f"{repo_id} already exists and is public, so private=True would not keep these weights "
                             "private: make the repository private on the Hub first, or push with private=False")
    with tempfile.TemporaryDirectory() as tmp:
        save_for_hub(model, tmp, repo_id, evaluation=evaluation, license=license)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message,
                                 revision=revision, allow_patterns=list(HUB_FILES))
    return str(getattr(info, "commit_url", info))
