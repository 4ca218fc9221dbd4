"""4-D NIfTI + label atlases -> ROI time series, through nilearn's `NiftiLabelsMasker`.

Several atlases are joined in the order given (e.g. Tian S3 then Schaefer 400, the reference's ROI order). The
TR comes from the image header. A label that has no voxels on the image grid would silently shift every later
ROI, so it is an error instead.
"""

from __future__ import annotations

import functools
import logging
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainjepa.data.atlases import label_names
from brainjepa.data.tables import to_float32
from brainjepa.errors import DataError

logger = logging.getLogger(__name__)

_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def header_tr(img) -> float | None:
    """TR in seconds from a 4-D NIfTI header (pixdim[4] and its time unit), None if absent or zero."""
    zooms = img.header.get_zooms()
    if len(zooms) < 4 or not float(zooms[3]) > 0:
        return None
    unit = img.header.get_xyzt_units()[1]
    return float(zooms[3]) * _TIME_UNITS.get(unit, 1.0)


def _atlas_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@functools.lru_cache(maxsize=8)
def _load_atlas(path: Path) -> tuple[object, tuple[float, ...]]:
    # Cached: `prepare` applies the same atlases to every image, and finding the labels scans every voxel.
    import nibabel as nib

    try:
        img = nib.load(path)
        values = np.unique(np.asanyarray(img.dataobj))
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise DataError(f"{path}: unreadable atlas ({err})") from err
    if values.size == 0 or len(img.shape) != 3:
        raise DataError(f"{path}: expected a 3-D label image, got shape {img.shape}")
    if not np.array_equal(np.rint(values), values):  # fractional "labels" would each become an ROI
        raise DataError(f"{path}: label image has non-integer values (is it a probabilistic atlas?)")
    return img, tuple(float(v) for v in values if v != 0)


def _non_finite_voxels(path: Path, img):
    """(the image, mask [x, y, z] of its voxels with a NaN or Inf in any frame, or None when there are none).

    A float image's data are read here, once, and handed on in memory, so the masker does not read the file again;
    integer data cannot hold NaN and are left to the masker."""
    if img.get_data_dtype().kind != "f":
        return img, None
    try:
        data = np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt or truncated image ({err})") from err
    bad = ~np.isfinite(data.sum(axis=3, dtype=np.float64))  # NaN or Inf in any frame (a float64 sum cannot overflow)
    return img.__class__(data, img.affine, img.header), (bad if bad.any() else None)


def _refuse_non_finite_in_labels(path: Path, img, bad: np.ndarray, atlas_img, atlas: Path) -> None:
    """nilearn sets non-finite voxels to 0 and averages them into their ROI: refuse where a label holds one (the
    atlas resampled to the image as the masker does, by nearest neighbour)."""
    from nilearn.image import resample_img

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # defaults that change between nilearn versions
        grid = resample_img(atlas_img, interpolation="nearest", target_shape=img.shape[:3], target_affine=img.affine)
    on_grid = np.asanyarray(grid.dataobj)
    inside = bad & (on_grid != 0)
    if inside.any():
        hit = sorted({int(v) for v in np.unique(on_grid[inside])})
        raise DataError(f"{path}: {int(inside.sum())} voxel(s) with NaN or Inf values inside atlas {atlas.name} "
                        f"label(s) {hit[:10]}{' ...' if len(hit) > 10 else ''} (a NaN-masked image under an atlas "
                        "that reaches beyond the mask?); their ROI means would be wrong; fill or mask those voxels, or "
                        "use an atlas inside the image's mask")


def read_nifti(path: str | Path, atlases: Sequence[str | Path]) -> tuple[np.ndarray, float | None, list[str]]:
    """Mean signal per atlas label for one 4-D image.

    Args:
        path: 4-D NIfTI image (x, y, z, time).
        atlases: 3-D label images (0 = background), joined in this order along the ROI axis.

    Returns:
        ([R, T] float32, TR in seconds or None, R labels: names from the atlas's ``<stem>.tsv`` (index, name)
        where it has one, else "<atlas>:<label>").

    Raises:
        DataError: no atlas, unreadable or non-4-D image, an atlas label with no voxels on the image grid, or
            NaN/Inf voxels inside an atlas label (named).
    """
    import nibabel as nib
    from nilearn.maskers import NiftiLabelsMasker

    path = Path(path)
    if not atlases:
        raise DataError(f"{path}: NIfTI input needs at least one label atlas (atlases=, --atlas)")
    try:
        img = nib.load(path)
        shape = img.shape
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise DataError(f"{path}: unreadable file ({err})") from err
    if len(shape) != 4 or shape[3] < 1:
        raise DataError(f"{path}: expected a 4-D image (x, y, z, time), got shape {shape}")
    img, bad = _non_finite_voxels(path, img)
    parts, labels = [], []
    for atlas in atlases:
        atlas = Path(atlas).resolve()
        atlas_img, wanted = _load_atlas(atlas)
        if bad is not None:
            _refuse_non_finite_in_labels(path, img, bad, atlas_img, atlas)
        masker = NiftiLabelsMasker(labels_img=atlas_img, standardize=None, resampling_target="data")
        try:
            with warnings.catch_warnings():  # lost labels are this function's own error below, naming the files
                warnings.filterwarnings("ignore", message=".*the following labels were removed", category=UserWarning)
                # non-finite voxels are outside every label here (refused above otherwise): their zeros change nothing
                warnings.filterwarnings("ignore", message="Non-finite values detected", category=UserWarning)
                signals = masker.fit_transform(img)
        except (OSError, EOFError, zlib.error) as err:  # the image data are read here, not at nib.load
            raise DataError(f"{path}: corrupt or truncated image ({err})") from err
        except (ValueError, TypeError) as err:
            raise DataError(f"{path}: cannot apply atlas {atlas} ({err})") from err
        found = [v for k, v in masker.region_ids_.items() if k != "background"]
        if len(found) != len(wanted):
            lost = sorted(set(wanted) - {float(v) for v in found})
            raise DataError(f"{path}: atlas {atlas.name} labels {lost[:10]} have no voxels on this image's grid")
        signals = np.asarray(signals).T
        parts.append(to_float32(signals, path, lambda i, j, a=atlas.name: f"atlas {a} ROI {i}, frame {j}"))
        names = label_names(atlas)  # from the atlas's <stem>.tsv (index, name), when it has one
        labels += [names.get(int(v), f"{_atlas_name(atlas)}:{v:g}") for v in np.asarray(found, dtype=float)]
    return np.concatenate(parts, axis=0), header_tr(img), labels
