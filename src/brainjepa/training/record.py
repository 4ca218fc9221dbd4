"""What a pretrained model says about its data: ROI labels, atlas and a training record, saved in its metadata.

`pretrain` writes them into ``model.metadata`` (and so into every checkpoint's and the final model's
`config.json`): ``roi_labels`` and ``atlas`` come from the store when it has them (`data_record`), ``training``
from the run (`training_record`). `embed` / `probe` / `evaluate` compare ``roi_labels`` with the store they read
(`brainjepa.evaluation.embed.check_roi_labels`); the Hub card renders all three. For a model built in Python,
``model.metadata.update(data_record(store))`` records the same facts before `save_pretrained`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from brainjepa.config import TrainConfig
from brainjepa.data.store import RunStore
from brainjepa.version import __version__


def store_atlas(store: RunStore) -> str | None:
    """The atlas a store's ROIs come from, where its metadata says: a sample's or simulation's ``atlas``, else
    the atlases `prepare` joined (names, or file names), else None."""
    meta = store.metadata
    if isinstance(meta.get("atlas"), str):
        return meta["atlas"]
    atlases = (meta.get("prepare") or {}).get("atlases") or []
    return " + ".join(Path(str(a)).name for a in atlases) or None


def data_record(store: RunStore) -> dict[str, Any]:
    """``roi_labels`` (the store's R names) and ``atlas``, each only when the store has it."""
    record: dict[str, Any] = {}
    if store.roi_labels is not None:
        record["roi_labels"] = [str(label) for label in store.roi_labels]
    atlas = store_atlas(store)
    if atlas:
        record["atlas"] = atlas
    return record


def _tr_summary(trs: Sequence[float | None]) -> float | dict[str, float] | None:
    """One TR when the runs share it, else its range; None when no run has one."""
    known = np.array([t for t in trs if t is not None], dtype=float)
    if known.size == 0:
        return None
    low, high = float(known.min()), float(known.max())
    return low if np.isclose(low, high) else {"min": low, "max": high}


def training_record(cfg: TrainConfig, store: RunStore, train: Sequence[int], held: Sequence[int]) -> dict[str, Any]:
    """The run's data and sampling: store, subjects and runs (trained on / held out), normalisation, TR and frame
    spacing, seed and the brainjepa version. ``steps`` is kept up to date by the trainer."""
    subjects = store.manifest["subject"].astype(str).to_numpy()
    tr = _tr_summary([store.tr(int(i)) for i in train])
    data = cfg.data
    if data.target_tr is not None:
        spacing: float | None = data.target_tr
    elif isinstance(tr, float):
        spacing = tr * data.sampling_rate
    else:
        spacing = None
    return {
        "store": str(Path(store.path).resolve()),
        "subjects": len(set(subjects[np.asarray(train, dtype=np.int64)])),
        "runs": len(train),
        "heldout_subjects": len(set(subjects[np.asarray(held, dtype=np.int64)])),
        "heldout_runs": len(held),
        "steps": 0,
        "normalization": data.normalization,
        "tr": tr,
        "sampling_rate": data.sampling_rate,
        "target_tr": data.target_tr,
        "frame_spacing_s": spacing,
        "frames": cfg.model.num_frames,
        "seed": cfg.meta.seed,
        "brainjepa_version": __version__,
    }
