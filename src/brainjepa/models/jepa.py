"""BrainJEPA: context encoder, predictor and EMA target encoder, with loading and saving."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from brainjepa import hub
from brainjepa.errors import CheckpointError, ConfigError
from brainjepa.io import check_finite_weights, load_gradient, load_weights_folder, no_such, save_weights_folder
from brainjepa.models.config import ModelConfig
from brainjepa.models.convert import (
    MODULES,
    convert_reference_state_dict,
    infer_config,
    read_reference_checkpoint,
    reference_rois,
)
from brainjepa.models.encoder import BrainEncoder
from brainjepa.models.layers import set_fused_attn
from brainjepa.models.optim import param_groups
from brainjepa.models.predictor import BrainPredictor
from brainjepa.models.weights import is_known_name, resolve_weights
from brainjepa.version import __version__

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "brainjepa-model"
# The official checkpoint's ROI space (the reference's UKB loader: Tian S3 rows first, then Schaefer-400 17n).
REFERENCE_ATLAS = "Tian S3 subcortex (50 ROIs), then Schaefer-2018 400 parcels, 17 networks (450 ROIs)"
# Seconds between the official model's frames: UKB at TR 0.735 s taken every 3rd frame (docs/official_model.md).
REFERENCE_FRAME_SPACING_S = 2.2


class JEPAOutput(NamedTuple):
    """One JEPA objective evaluation."""

    loss: Tensor  # scalar smooth-L1 between prediction and target
    prediction: Tensor  # [B, K_pred, D] predictor output at the targets
    target: Tensor  # [B, K_pred, D] layer_norm(target_encoder(x)) at the targets


class BrainJEPA(nn.Module):
    """The three networks of Brain-JEPA.

    Args:
        cfg: architecture.
        gradient: brain gradients [R, G] (numpy or tensor) in the model's ROI order.
        metadata: JSON-serialisable facts carried with the weights and saved in `config.json`: ``roi_labels`` (R
            names in row order), ``atlas``, ``training`` (the pretraining record), ``normalization``, ``input_sd``.
            `embed` / `probe` / `evaluate` compare ``roi_labels`` with a store's.

    Attributes:
        name_or_path: where the model was loaded from (a folder, checkpoint file, Hub id or known name); None for
            a model built in memory. Used to name the model in messages; not saved.
    """

    def __init__(self, cfg: ModelConfig, gradient: Tensor | np.ndarray, *, metadata: dict[str, Any] | None = None):
        super().__init__()
        gradient = torch.as_tensor(np.asarray(gradient, dtype=np.float32))
        self.config = cfg
        self.metadata = dict(metadata or {})
        self.name_or_path: str | None = None
        self.encoder = BrainEncoder(cfg, gradient)
        self.predictor = BrainPredictor(cfg, gradient)
        self.apply(_init_weights)
        nn.init.trunc_normal_(self.predictor.mask_token, std=0.02)
        self.target_encoder = copy.deepcopy(self.encoder)
        self.target_encoder.requires_grad_(False)

    # ----------------------------------------------------------------------------------------------- objective
    def forward(self, x: Tensor, context_idx: Tensor, target_idx: Tensor) -> JEPAOutput:
        """Predict the target encoder's features at target_idx from the context tokens at context_idx."""
        target = self.target_features(x, target_idx)
        z = self.encoder(x, context_idx)
        prediction = self.predictor(z, context_idx, target_idx)
        loss = F.smooth_l1_loss(prediction.float(), target.float())
        return JEPAOutput(loss, prediction, target)

    @torch.no_grad()
    def target_features(self, x: Tensor, target_idx: Tensor) -> Tensor:
        """layer_norm(target_encoder(x)) over all tokens, gathered at target_idx -> [B, K_pred, D].

        Layer norm is per token, so gathering first is exact; the last block runs only at the targets.
        """
        h = self.target_encoder.forward_at(x, target_idx)
        return F.layer_norm(h, (h.shape[-1],))

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """EMA: target <- m * target + (1 - m) * encoder, over all parameters (one fused multi-tensor lerp)."""
        target = list(self.target_encoder.parameters())
        online = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_lerp_(target, online, 1.0 - momentum)

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """Pretraining AdamW groups of encoder + predictor (the target encoder is not optimised), by the rule
        fine-tuning uses too (`brainjepa.models.optim.param_groups`): ``[decayed, exempt]``, each with
        ``wd_exempt`` (the weight-decay schedule skips the exempt group) and ``lr_scale`` 1."""
        named = [(f"{prefix}.{name}", p) for prefix in ("encoder", "predictor")
                 for name, p in getattr(self, prefix).named_parameters()]
        return param_groups(named, weight_decay)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.encoder.set_grad_checkpointing(enable)
        self.predictor.set_grad_checkpointing(enable)

    def set_fused_attn(self, enable: bool = True) -> None:
        """Switch every attention layer between SDPA (fused) and the explicit softmax path (`set_fused_attn`)."""
        set_fused_attn(self, enable)

    @property
    def gradient(self) -> Tensor:
        return self.encoder.pos_embed.gradient

    @property
    def frame_spacing(self) -> float | None:
        """Seconds between the frames the model was pretrained on, where known: its training record's (pretraining
        writes it when the runs share a TR or `target_tr` is set), or 2.2 s for a reference checkpoint in the
        official 450-ROI space; None otherwise. Feeding frames at this spacing matches the model's clock."""
        recorded = (self.metadata.get("training") or {}).get("frame_spacing_s")
        if isinstance(recorded, int | float) and recorded > 0:
            return float(recorded)
        official = str(self.metadata.get("source", "")).startswith("reference checkpoint")
        return REFERENCE_FRAME_SPACING_S if official and self.metadata.get("atlas") == REFERENCE_ATLAS else None

    # ------------------------------------------------------------------------------------------- persistence
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write `config.json` (architecture, `metadata`, the brainjepa version writing it) and `model.safetensors`
        (gradient included) into directory, atomically per file.

        Raises:
            CheckpointError: ``metadata["roi_labels"]`` does not hold one name per ROI.
        """
        labels = self.metadata.get("roi_labels")
        if labels is not None and len(labels) != self.config.num_rois:
            raise CheckpointError(f"metadata roi_labels has {len(labels)} names but the model has "
                                  f"{self.config.num_rois} ROIs; give one name per ROI, in row order")
        record = {"model": self.config.to_dict(), "metadata": self.metadata, "brainjepa_version": __version__}
        return save_weights_folder(directory, self, record, config_name=CONFIG_NAME, weights_name=WEIGHTS_NAME,
                                   fmt=FORMAT)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, force_download: bool = False, token: str | bool | None = None,
                        cache_dir: str | Path | None = None, local_files_only: bool = False,
                        revision: str | None = None, map_location: str | torch.device = "cpu") -> BrainJEPA:
        """Restore a model written by `save_pretrained`: a folder, a training run folder holding `model/`, a
        Hugging Face Hub id ``org/name`` that is not a local path, or a known weights name
        (`brainjepa.models.weights`, `brainjepa info --weights`).

        The Hub options are `huggingface_hub.ModelHubMixin.from_pretrained`'s, passed to ``snapshot_download``:
        `force_download`, `token` (True: the saved login), `cache_dir`, `local_files_only`, `revision` (a branch,
        tag or commit). A local folder ignores them, but refuses `revision` and `force_download` by name
        (`brainjepa.hub.resolve`). `map_location`: where the tensors are loaded.
        """
        name = str(path)
        if is_known_name(path):
            path = resolve_weights(path)
        directory = hub.resolve(path, force_download=force_download, token=token, cache_dir=cache_dir,
                                local_files_only=local_files_only, revision=revision)
        if not (directory / CONFIG_NAME).is_file() and (directory / "model" / CONFIG_NAME).is_file():
            directory = directory / "model"
        _refuse_unfinished_run(directory)
        meta, state = load_weights_folder(directory, config_name=CONFIG_NAME, weights_name=WEIGHTS_NAME, fmt=FORMAT,
                                          what="brainjepa model", map_location=str(map_location))
        try:  # config.json is untyped and may be hand-edited: name the file with the key
            cfg = ModelConfig.from_dict(meta["model"])
        except ConfigError as err:
            raise CheckpointError(f"{directory / CONFIG_NAME}: {err}") from None
        model = cls(cfg, state["encoder.pos_embed.gradient"], metadata=meta.get("metadata"))
        _load_strict(model, state, str(directory / WEIGHTS_NAME))
        model.name_or_path = name
        return model

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload config.json, model.safetensors and a generated model card to the Hugging Face Hub (see
        `brainjepa.hub.push_to_hub` for the options); returns the commit URL."""
        return hub.push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def load(cls, path: BrainJEPA | str | Path, *, gradient: str | Path | np.ndarray | None = None,
             num_heads: int | None = None) -> BrainJEPA:
        """Any model a user may point at, in eval mode: a `save_pretrained` folder, a training run folder, the
        official `jepa-ep*.pth.tar` (which needs `gradient`, e.g. `gradient_mapping_450.csv`), a Hub id
        ``org/name``, or a known weights name (`brainjepa info --weights`). A BrainJEPA is returned as it is (so
        every API taking "a model" takes either). `gradient` and `num_heads` build a reference checkpoint's model:
        given with any other model, which carries its own, they are refused rather than ignored."""
        given = [n for n, v in (("gradient= (--gradient)", gradient), ("num_heads=", num_heads)) if v is not None]
        if given and (isinstance(path, BrainJEPA) or hub.is_hub_id(path) or is_known_name(path) or Path(path).is_dir()):
            what = "the given model" if isinstance(path, BrainJEPA) else str(path)
            raise CheckpointError(f"{' and '.join(given)}: for an official jepa-ep*.pth.tar only; {what} carries its "
                                  "own gradient and heads")
        if isinstance(path, BrainJEPA):
            return path
        if hub.is_hub_id(path) or is_known_name(path):
            return cls.from_pretrained(path).eval()
        path = Path(path)
        if path.is_dir():
            return cls.from_pretrained(path).eval()
        if not path.exists():
            raise CheckpointError(no_such(path, "model folder or checkpoint file"))
        if gradient is None:
            raise CheckpointError(f"{path}: a reference checkpoint needs its gradient CSV (gradient=, --gradient)")
        return cls.from_reference_checkpoint(path, gradient, num_heads=num_heads).eval()

    @classmethod
    def from_reference_checkpoint(
        cls, path: str | Path, gradient: str | Path | np.ndarray | Tensor, *,
        num_heads: int | None = None, pred_num_heads: int | None = None,
    ) -> BrainJEPA:
        """Load the official `jepa-ep*.pth.tar` (safe torch.load; 'module.' stripped; dims read off the weights).

        Args:
            path: the reference checkpoint (or a safetensors conversion with encoder./predictor./target_encoder. keys).
            gradient: [R, G] array or a headerless CSV such as `gradient_mapping_450.csv`.
            num_heads: encoder heads; needed only when the width/depth matches no preset.
            pred_num_heads: predictor heads (default: the encoder's, as in the reference).
        """
        grad = _as_gradient(gradient)
        sds = read_reference_checkpoint(path)
        rois = reference_rois(sds)
        if rois is not None and rois != grad.shape[0]:
            where = f"gradient {gradient}" if isinstance(gradient, str | Path) else "the gradient"
            raise CheckpointError(f"{where} has {grad.shape[0]} rows (one per ROI), but {Path(path).name} was trained "
                                  f"with {rois} ROIs: give the gradient file of its ROI space")
        cfg = infer_config(sds, grad.shape[0], num_heads=num_heads, pred_num_heads=pred_num_heads)
        if grad.shape[1] != cfg.gradient_dim:
            raise CheckpointError(
                f"gradient has {grad.shape[1]} components but the checkpoint expects {cfg.gradient_dim}"
            )
        metadata = {"source": f"reference checkpoint {Path(path).name}"}
        if cfg.num_rois == 450:  # the official ROI space; the reference ships no label names (docs/official_model.md)
            metadata["atlas"] = REFERENCE_ATLAS
        model = cls(cfg, grad, metadata=metadata)
        model.name_or_path = str(path)
        state = {}
        for module in MODULES:
            if module not in sds and module == "target_encoder":
                logger.warning("%s holds no target_encoder: the target (EMA) encoder, the one embeddings use by "
                               "default, is a copy of the context encoder", path)
            sd = sds.get(module, sds["encoder"] if module == "target_encoder" else None)
            weights, tables = convert_reference_state_dict(module, sd)
            _check_tables(getattr(model, module), tables, path)
            state.update({f"{module}.{k}": v for k, v in weights.items()})
            state[f"{module}.pos_embed.gradient"] = getattr(model, module).pos_embed.gradient
        check_finite_weights(state, path)
        _load_strict(model, state, str(path))
        return model


def _refuse_unfinished_run(directory: Path) -> None:
    """A training run folder without `model/` (stopped before its end) is not a model folder, but each of its
    checkpoints is one: say so, naming the newest."""
    if (directory / CONFIG_NAME).is_file() or not (directory / "checkpoints").is_dir():
        return
    steps = sorted(p for p in (directory / "checkpoints").glob("step-*") if (p / CONFIG_NAME).is_file())
    if steps:
        raise CheckpointError(f"{directory}: an unfinished training run (no model/ yet: it stopped before its "
                              f"end); its checkpoints are model folders, the newest is {steps[-1]}; or finish the "
                              "run by resuming it (pretrain with resume=True, --resume)")


def _init_weights(m: nn.Module) -> None:
    """The reference's effective init (helper.init_model): trunc-normal(0.02) Linear, zero bias, unit LayerNorm."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _as_gradient(gradient: str | Path | np.ndarray | Tensor) -> np.ndarray:
    if isinstance(gradient, (str, Path)):
        return load_gradient(gradient)
    return np.asarray(gradient, dtype=np.float32)


def _check_tables(module: nn.Module, tables: dict[str, Tensor], source: str | Path) -> None:
    """The reference stores its fixed temporal sin-cos table; it must equal the one we compute."""
    ours = module.pos_embed()[:, : module.pos_embed.temporal.shape[1]]
    for key, table in tables.items():
        if key.endswith("emb_h") and not torch.allclose(table.reshape(ours.shape), ours, atol=1e-5):
            raise CheckpointError(f"{source}: fixed positional table {key} differs from the expected sin-cos code")


def _load_strict(model: nn.Module, state: dict[str, Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
             for k in set(state) & set(expected) if state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{source}: weights do not match the model; missing {missing[:8]}, unexpected {unexpected[:8]}, "
            f"shape mismatch {wrong[:8]}"
        )
    model.load_state_dict(state, strict=True)
