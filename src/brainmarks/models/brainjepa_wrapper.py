"""brainmarks plugin: any brainjepa model (ours or the official checkpoint) in brainmarks' 450-ROI space.

brainmarks (https://github.com/MedARC-AI/Brainmarks) imports every module under the ``brainmarks.models``
namespace package; this one ships in the brainjepa wheel and registers the model ``brainjepa``::

    BRAINJEPA_WEIGHTS=path/to/model_folder python -m brainmarks.models.test_models brainjepa
    BRAINJEPA_WEIGHTS=jepa-ep300.pth.tar BRAINJEPA_GRADIENT=gradient_mapping_450.csv python -m ...

``BRAINJEPA_WEIGHTS`` is a ``save_pretrained`` folder, a training run folder, or the official
``jepa-ep*.pth.tar`` (which also needs ``BRAINJEPA_GRADIENT``; ``BRAINJEPA_NUM_HEADS`` only for a reference
checkpoint whose width and depth match no preset). Keyword arguments of `brainjepa` (brainmarks'
``model_kwargs``) override the environment.

ROI order. brainmarks' ``schaefer400_tians3`` space averages Tian's combined CIFTI label file
``Schaefer2018_400Parcels_17Networks_order_Tian_Subcortex_S3.dlabel.nii`` by label value (row = value - 1),
and brainmarks' own ``test_nisc.py`` notes "subcortex at front of schaefer+tians3" (it subtracts 50 from the
labels to recover Schaefer-400). So rows 0-49 are the 50 Tian S3 subcortical regions and rows 50-449 the
Schaefer-400 17-network parcels: the order Brain-JEPA was trained in (subcortical first, issue #15). No
reordering is needed; a model must simply have 450 ROIs in that order.

Per sample (`BrainJEPATransform`): brainmarks' per-ROI z-score is undone (``bold * std + mean``); the run is
resampled to ``target_tr`` (by default the model's own frame spacing, `BrainJEPA.frame_spacing`: 2.2 s for the
official checkpoint, docs/official_model.md; 2 s, brainmarks' own wrapper's, for a model that records none) by
linear interpolation, its centre window of the
model's frame count is taken (a short run repeats its last frame), and the model's own normalisation is applied
(the official checkpoint has none recorded, so a whole-sample z-score, as the reference's downstream code does).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from brainmarks.models.base import Embeddings
from brainmarks.models.registry import register_model
from torch import Tensor, nn

from brainjepa import BrainJEPA
from brainjepa.data.normalize import Normalizer
from brainjepa.data.windows import WindowSpec, take_window
from brainjepa.evaluation.embed import model_normalizer
from brainjepa.models.encoder import BrainEncoder

WEIGHTS_ENV = "BRAINJEPA_WEIGHTS"
GRADIENT_ENV = "BRAINJEPA_GRADIENT"
HEADS_ENV = "BRAINJEPA_NUM_HEADS"
SPACE = "schaefer400_tians3"
SPACE_ROIS = 450
BRAINMARKS_TR = 2.0  # brainmarks' own Brain-JEPA wrapper resamples to 2 s: the default for a model without a record

logger = logging.getLogger(__name__)


class BrainJEPATransform:
    """brainmarks sample (``bold`` [T, 450] z-scored per ROI, ``mean`` / ``std`` [1, 450], ``tr``) -> ``bold``
    [450, frames], resampled, windowed and normalised as the model expects. Other keys pass through.

    Args:
        normalizer: the model's normaliser, applied to each [R, frames] window.
        frames: the model's input length.
        target_tr: seconds between model frames.
    """

    def __init__(self, normalizer: Normalizer, frames: int, target_tr: float = BRAINMARKS_TR) -> None:
        self.normalizer = normalizer
        self.window = WindowSpec(frames=frames, mode="center", target_tr=target_tr, short="pad")

    def __call__(self, sample: dict[str, Tensor]) -> dict[str, Tensor]:
        raw = (sample["bold"].double() * sample["std"].double() + sample["mean"].double()).T.numpy()
        x = self.normalizer(take_window(raw, self.window, tr=float(sample["tr"]), subject="brainmarks sample"))
        return {**sample, "bold": torch.from_numpy(x)}


class BrainJEPAWrapper(nn.Module):
    """Frozen encoder: batch ``bold`` [B, 450, frames] -> patch tokens [B, 450 * frames / patch, D] of block
    `layer` after the final norm (-1: the last block, `BrainEncoder.forward_features`); brainmarks pools them.

    Raises:
        ValueError: `layer` outside [-depth, depth).
    """

    __space__: str = SPACE

    def __init__(self, encoder: BrainEncoder, layer: int = -1) -> None:
        super().__init__()
        depth = len(encoder.blocks)
        if isinstance(layer, bool) or not isinstance(layer, int) or not -depth <= layer < depth:
            raise ValueError(f"brainjepa: layer must be a block index in [{-depth}, {depth}), got {layer!r}")
        self.encoder = encoder
        self.layer = layer

    def forward(self, batch: dict[str, Tensor]) -> Embeddings:
        tokens = self.encoder.forward_intermediates(batch["bold"], [self.layer], norm=True)[0]
        return Embeddings(cls_embeds=None, reg_embeds=None, patch_embeds=tokens)


@register_model
def brainjepa(
    weights: str | None = None,
    gradient: str | None = None,
    num_heads: int | None = None,
    encoder: str = "target",
    target_tr: float | None = None,
    layer: int = -1,
) -> tuple[BrainJEPATransform, BrainJEPAWrapper]:
    """Transform and frozen wrapper of the model at `weights` (default: ``$BRAINJEPA_WEIGHTS``).

    Args:
        weights: model folder or official checkpoint.
        gradient: gradient CSV for an official checkpoint (default: ``$BRAINJEPA_GRADIENT``).
        num_heads: attention heads of a reference checkpoint that matches no preset (default:
            ``$BRAINJEPA_NUM_HEADS``).
        encoder: "target" (EMA encoder, the reference's downstream choice) or "context".
        target_tr: seconds between the frames fed to the model (default: the spacing it was pretrained at,
            `BrainJEPA.frame_spacing`, e.g. 2.2 s for the official model; 2.0 s, as brainmarks' own wrapper, where
            the model records none). Pass 2.0 to reproduce brainmarks' own wrapper exactly.
        layer: encoder block whose tokens are returned (default -1: the last; see `EmbedOptions.layer`).
    """
    weights = weights or os.environ.get(WEIGHTS_ENV)
    gradient = gradient or os.environ.get(GRADIENT_ENV)
    heads = num_heads or os.environ.get(HEADS_ENV)
    if not weights:
        raise ValueError(
            f"brainjepa: set {WEIGHTS_ENV} to a brainjepa model folder or an official jepa-ep*.pth.tar "
            f"(plus {GRADIENT_ENV} for the latter), or pass model_kwargs weights=..."
        )
    if encoder not in ("target", "context"):
        raise ValueError(f"brainjepa: encoder must be 'target' or 'context', got {encoder!r}")
    given = [name for name, value in ((GRADIENT_ENV, gradient), (HEADS_ENV, heads)) if value]
    if given and Path(weights).is_dir():  # a folder carries its own gradient and heads: they would be ignored
        raise ValueError(f"brainjepa: {' and '.join(given)} (or model_kwargs) apply to an official jepa-ep*.pth.tar "
                         f"only, and {weights} is a model folder: unset them")
    model = BrainJEPA.load(Path(weights), gradient=gradient, num_heads=int(heads) if heads else None)
    if model.config.num_rois != SPACE_ROIS:
        raise ValueError(
            f"brainjepa: {weights} has {model.config.num_rois} ROIs but brainmarks' {SPACE} space has {SPACE_ROIS} "
            "(50 Tian S3 subcortical, then Schaefer-400 17-network)"
        )
    net = model.target_encoder if encoder == "target" else model.encoder
    net.requires_grad_(False)
    if target_tr is None:
        target_tr = model.frame_spacing or BRAINMARKS_TR
        why = "its pretraining frame spacing" if model.frame_spacing else "brainmarks' default; the model records none"
        logger.info("brainjepa: resampling runs to TR %.3g s (%s; model_kwargs.target_tr overrides)", target_tr, why)
    transform = BrainJEPATransform(model_normalizer(model), model.config.num_frames, target_tr)
    return transform, BrainJEPAWrapper(net, layer).eval()
