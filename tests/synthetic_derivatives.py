"""Tiny synthetic fMRIPrep derivatives and atlases, built inside the tests (no downloads).

Volumes live on a 6 x 6 x 6 grid (3 mm): a "cortical" atlas with 4 labels in the bottom slices and a
"subcortical" one with 3 labels (values 5, 7, 9) in the top slices, plus one voxel both claim. Grayordinates:
two 10-vertex hemispheres (8 vertices in the data, 2 medial-wall vertices left out) and 6 voxels on a 4^3 grid.
Each ROI carries its own sine plus noise, so every ROI is distinct and never constant.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.cifti2 import BrainModelAxis, LabelAxis, SeriesAxis

AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
SUB_NAMES = {5: "HIP-rh", 7: "THA-rh", 9: "CAU-lh"}
CTX_NAMES = {1: "17Networks_LH_VisCent_1", 2: "17Networks_LH_DefaultA_1", 3: "17Networks_RH_VisCent_1",
             4: "17Networks_RH_DefaultA_1"}
MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]


def cortical_volume() -> np.ndarray:
    data = np.zeros((6, 6, 6), dtype=np.int16)
    data[:3, :3, :2], data[3:, :3, :2], data[:3, 3:, :2], data[3:, 3:, :2] = 1, 2, 3, 4
    return data


def subcortical_volume() -> np.ndarray:
    data = np.zeros((6, 6, 6), dtype=np.int16)
    data[:2, :, 3:], data[2:4, :, 3:], data[4:, :, 3:] = 5, 7, 9
    data[0, 0, 1] = 5  # also cortical label 1: the cortex keeps it
    return data


def write_label_image(data: np.ndarray, path: Path, names: dict[int, str] | None = None,
                      affine: np.ndarray = AFFINE) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    if names:
        pd.DataFrame({"index": list(names), "name": list(names.values())}).to_csv(
            path.with_name(path.name.split(".", 1)[0] + ".tsv"), sep="\t", index=False)
    return path


def roi_signals(n_rois: int, frames: int, seed: int) -> np.ndarray:
    """[R, T]: a distinct sine per ROI, noise and an offset (like raw BOLD)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)
    freq = 0.02 + 0.015 * np.arange(n_rois)[:, None]
    return 100 + 5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6, (n_rois, 1))) + rng.normal(0, 1, (n_rois, frames))


def bold_volume(frames: int, seed: int) -> np.ndarray:
    """[6, 6, 6, T]: each voxel follows the signal of its merged ROI (subcortical 5/7/9, then cortical 1..4)."""
    rng = np.random.default_rng(seed + 1000)
    merged = np.where(cortical_volume() > 0, cortical_volume() + 10, subcortical_volume())
    values = sorted(np.unique(merged[merged > 0]))
    signals = roi_signals(len(values), frames, seed)
    data = 50 + rng.normal(0, 0.5, (6, 6, 6, frames))
    for i, v in enumerate(values):
        data[merged == v] = signals[i] + rng.normal(0, 0.5, ((merged == v).sum(), frames))
    return data.astype(np.float32)


def confounds_table(frames: int, seed: int, *, outliers: tuple[int, ...] = (), non_steady: int = 1,
                    compcor: int = 3, cosines: int = 2) -> tuple[pd.DataFrame, dict]:
    """An fMRIPrep-style confounds table with the columns nilearn's strategies need, and its JSON metadata.

    `outliers` get framewise displacement 1.2 mm (scrubbing at 0.5 mm flags them); the first `non_steady`
    frames get non_steady_state_outlier columns.
    """
    rng = np.random.default_rng(seed + 2000)
    cols: dict[str, np.ndarray] = {}
    for base in [*MOTION, "csf", "white_matter", "global_signal"]:
        x = np.cumsum(rng.normal(0, 0.02, frames))
        d = np.r_[np.nan, np.diff(x)]
        cols |= {base: x, f"{base}_derivative1": d, f"{base}_power2": x**2, f"{base}_derivative1_power2": d**2}
    fd = np.abs(rng.normal(0.1, 0.03, frames))
    fd[0] = np.nan
    fd[list(outliers)] = 1.2
    cols["framewise_displacement"] = fd
    cols["std_dvars"] = np.r_[np.nan, np.abs(rng.normal(1.0, 0.1, frames - 1))]
    meta = {}
    for k in range(compcor):
        cols[f"a_comp_cor_{k:02d}"] = rng.normal(0, 1, frames)
        meta[f"a_comp_cor_{k:02d}"] = {"Method": "aCompCor", "Mask": "combined", "Retained": True}
    for k in range(cosines):
        cols[f"cosine{k:02d}"] = np.cos(np.pi * (k + 1) * (np.arange(frames) + 0.5) / frames)
    for k in range(non_steady):
        col = np.zeros(frames)
        col[k] = 1
        cols[f"non_steady_state_outlier{k:02d}"] = col
    return pd.DataFrame(cols), meta


def _func_dir(root: Path, sub: str, ses: str | None) -> tuple[Path, str]:
    folder = root / f"sub-{sub}" / (f"ses-{ses}" if ses else "") / "func"
    folder.mkdir(parents=True, exist_ok=True)
    return folder, f"sub-{sub}" + (f"_ses-{ses}" if ses else "")


def write_confounds(folder: Path, prefix: str, frames: int, seed: int, **kwargs) -> Path:
    table, meta = confounds_table(frames, seed, **kwargs)
    path = folder / f"{prefix}_desc-confounds_timeseries.tsv"
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    path.with_suffix(".json").write_text(json.dumps(meta))
    return path


def write_volume_run(root: Path, sub: str, task: str, *, ses: str | None = None, run: int | None = 1,
                     space: str = "MNI152NLin6Asym", frames: int = 40, tr: float | None = 2.0, seed: int = 0,
                     **confounds) -> Path:
    """One volumetric fMRIPrep run: preproc BOLD, its JSON sidecar (RepetitionTime) and confounds."""
    folder, prefix = _func_dir(root, sub, ses)
    prefix += f"_task-{task}" + (f"_run-{run}" if run is not None else "")
    img = nib.Nifti1Image(bold_volume(frames, seed), AFFINE)
    img.header.set_xyzt_units("mm", "sec")
    path = folder / f"{prefix}_space-{space}_desc-preproc_bold.nii.gz"
    nib.save(img, path)
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(
        json.dumps({} if tr is None else {"RepetitionTime": tr}))
    write_confounds(folder, prefix, frames, seed, **confounds)
    return path


# ---------------------------------------------------------------------------------------------- grayordinates
NVERT = 10
VOXEL_GRID = (4, 4, 4)
VOXEL_AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
VOXELS = np.array([[0, 0, 0], [0, 1, 0], [1, 0, 0], [2, 2, 2], [3, 2, 2], [3, 3, 3]])


def data_axis() -> BrainModelAxis:
    """Grayordinates of the dtseries: 8 of 10 vertices per hemisphere, then 6 thalamus voxels."""
    left = BrainModelAxis.from_surface(np.arange(8), NVERT, "CortexLeft")
    right = BrainModelAxis.from_surface(np.arange(8), NVERT, "CortexRight")
    vox = BrainModelAxis("ThalamusLeft", voxel=VOXELS, affine=VOXEL_AFFINE, volume_shape=VOXEL_GRID)
    return left + right + vox


def _dlabel(models: BrainModelAxis, values: np.ndarray, names: dict[int, str], path: Path) -> Path:
    table = {0: ("???", (0.0, 0.0, 0.0, 0.0))} | {k: (n, (0.5, 0.5, 0.5, 1.0)) for k, n in names.items()}
    header = nib.cifti2.Cifti2Header.from_axes((LabelAxis(["parcellation"], [table]), models))
    nib.save(nib.Cifti2Image(values[None].astype(np.float32), header), path)
    return path


def cortical_dlabel(path: Path) -> Path:
    """Schaefer-like: labels 1..4 on all 10 vertices of each hemisphere (medial wall included)."""
    models = (BrainModelAxis.from_surface(np.arange(NVERT), NVERT, "CortexLeft")
              + BrainModelAxis.from_surface(np.arange(NVERT), NVERT, "CortexRight"))
    values = np.r_[[1] * 5 + [2] * 5, [3] * 5 + [4] * 5]
    return _dlabel(models, values, CTX_NAMES, path)


def subcortical_dlabel(path: Path) -> Path:
    models = BrainModelAxis("ThalamusLeft", voxel=VOXELS, affine=VOXEL_AFFINE, volume_shape=VOXEL_GRID)
    return _dlabel(models, np.array([5, 5, 7, 7, 9, 9]), SUB_NAMES, path)


def combined_dlabel(path: Path) -> Path:
    """Cortex first (keys 1..4), subcortex after (keys 5, 6, 7), as a downloaded combined file might be."""
    models = (BrainModelAxis.from_surface(np.arange(NVERT), NVERT, "CortexLeft")
              + BrainModelAxis.from_surface(np.arange(NVERT), NVERT, "CortexRight")
              + BrainModelAxis("ThalamusLeft", voxel=VOXELS, affine=VOXEL_AFFINE, volume_shape=VOXEL_GRID))
    values = np.r_[[1] * 5 + [2] * 5, [3] * 5 + [4] * 5, [5, 5, 6, 6, 7, 7]]
    return _dlabel(models, values, CTX_NAMES | {5: SUB_NAMES[5], 6: SUB_NAMES[7], 7: SUB_NAMES[9]}, path)


def cifti_labels() -> np.ndarray:
    """Merged ROI (0-based, subcortex first) of each grayordinate of `data_axis`."""
    left = np.r_[[3] * 5 + [4] * 3]
    right = np.r_[[5] * 5 + [6] * 3]
    return np.r_[left, right, [0, 0, 1, 1, 2, 2]]


def write_cifti_run(root: Path, sub: str, task: str, *, run: int | None = 1, frames: int = 40, tr: float = 2.0,
                    seed: int = 0, **confounds) -> Path:
    """One grayordinate fMRIPrep run (space-fsLR_den-91k dtseries), its sidecar and confounds."""
    folder, prefix = _func_dir(root, sub, None)
    prefix += f"_task-{task}" + (f"_run-{run}" if run is not None else "")
    rng = np.random.default_rng(seed + 3000)
    signals = roi_signals(7, frames, seed)
    data = signals[cifti_labels()].T + rng.normal(0, 0.5, (frames, len(cifti_labels())))
    header = nib.cifti2.Cifti2Header.from_axes((SeriesAxis(0, tr, frames), data_axis()))
    path = folder / f"{prefix}_space-fsLR_den-91k_bold.dtseries.nii"
    nib.save(nib.Cifti2Image(data.astype(np.float32), header), path)
    path.with_name(path.name.replace(".dtseries.nii", ".json")).write_text(json.dumps({"RepetitionTime": tr}))
    write_confounds(folder, prefix, frames, seed, **confounds)
    return path
