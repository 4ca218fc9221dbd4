"""The catalogue of known pretrained weights: short names -> Hugging Face Hub repositories.

Kept apart from the architecture presets (`brainjepa.models.registry`), as timm keeps `default_cfgs` apart from
its models. An entry without a `repo_id` is a placeholder for weights that are not published yet: listing it says
so, and loading it by name is refused in one line that says where to get the files instead (docs/official_model.md).
`BrainJEPA.from_pretrained(name)` and `BrainJEPA.load(name)` resolve a known name to its repository; a local
folder of the same name always wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brainjepa.errors import CheckpointError


@dataclass(frozen=True)
class KnownWeights:
    """One named set of weights.

    Args:
        name: the short name `from_pretrained` accepts.
        description: what the weights are (architecture, data, ROI space).
        repo_id: ``org/name`` on the Hugging Face Hub in the brainjepa format; None while unpublished.
        licence: SPDX id of the weights' licence, where known.
        instead: how to get the same model while `repo_id` is None.
    """

    name: str
    description: str
    repo_id: str | None = None
    licence: str | None = None
    instead: str = ""

    @property
    def published(self) -> bool:
        return self.repo_id is not None


_OFFICIAL_INSTEAD = ("load the official jepa-ep300.pth.tar with its gradient_mapping_450.csv: "
                     "BrainJEPA.load('jepa-ep300.pth.tar', gradient='gradient_mapping_450.csv') "
                     "(where to get both: docs/official_model.md)")

KNOWN_WEIGHTS: dict[str, KnownWeights] = {w.name: w for w in (
    KnownWeights(
        "brainjepa-vitb-ep300",
        "the official Brain-JEPA ViT-B (768 x 12 blocks, predictor 384 x 6), 300 epochs on UK Biobank; 450 ROIs: "
        "50 Tian S3 subcortical, then Schaefer-400 (17 networks); frames ~2.2 s apart",
        instead=_OFFICIAL_INSTEAD,
    ),
)}


def list_weights() -> list[KnownWeights]:
    """Every known name, published or not, in name order."""
    return [KNOWN_WEIGHTS[name] for name in sorted(KNOWN_WEIGHTS)]


def is_known_name(path: str | Path) -> bool:
    """True for a catalogue name that is not an existing local path (a local folder always wins)."""
    return isinstance(path, str) and path in KNOWN_WEIGHTS and not Path(path).exists()


def resolve_weights(name: str) -> str:
    """The Hub repository of a known name.

    Raises:
        CheckpointError: the name is in the catalogue but its weights are not published (saying what to do), or
            it is not in the catalogue (listing the known names).
    """
    entry = KNOWN_WEIGHTS.get(name)
    if entry is None:
        raise CheckpointError(f"{name!r} is not a known weights name; known: {', '.join(sorted(KNOWN_WEIGHTS))} "
                              "(brainjepa info --weights)")
    if entry.repo_id is None:
        raise CheckpointError(f"{name}: these weights are not published on the Hugging Face Hub yet; {entry.instead}")
    return entry.repo_id
