"""Label atlases given as files or by name, and the official 450-ROI order.

Brain-JEPA's official checkpoint and ``gradient_mapping_450.csv`` use 450 ROIs: the 50 Tian S3 subcortical
regions first, then the 400 Schaefer-2018 parcels in the 17-network order (the UK Biobank files
``fMRI.Tian_Subcortex_S3_3T`` then ``fMRI.Schaefer17n400p``). `merge_label_images` (NIfTI) and `merge_dlabels`
(CIFTI) join atlases in the order given, renumbering labels 1..R, so Tian S3 then Schaefer 400 gives that order
and the ROI names with it; where two atlases claim the same voxel the later one (the cortex) keeps it, as in
Tian's own combined atlases.

`resolve_atlas` turns an ``--atlas`` value into a file: an existing file as is, or a name from `ATLAS_NAMES`
fetched once (nilearn's Schaefer fetcher or TemplateFlow for the cortex, Tian's repository for the subcortex and
the fsLR grayordinate file), merged, and cached under ``$BRAINJEPA_CACHE/atlases`` (default
``~/.cache/brainjepa/atlases``). Offline, a name that is not cached is a one-line error naming the files to pass.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from brainjepa.errors import DataError, DownloadError
from brainjepa.io import atomic_write, cache_root, download

logger = logging.getLogger(__name__)

AtlasKind = Literal["volume", "cifti"]

# Cortical parts: Schaefer 2018, 400 parcels, by network order (17: the UK Biobank / Brain-JEPA order).
CORTICAL = {"schaefer400": 17, "schaefer400_7n": 7}
SUBCORTICAL = {"tians3": 3}
ATLAS_NAMES = (*CORTICAL, *SUBCORTICAL, *(f"{c}_{s}" for c in CORTICAL for s in SUBCORTICAL))
DEFAULT_VOLUME_SPACE = "MNI152NLin6Asym"  # FSL's MNI152: the space of the CBIG and Tian NIfTI releases
CIFTI_SPACES = ("fsLR",)
_TIAN_URL = "https://github.com/yetianmed/subcortex/raw/master/Group-Parcellation/3T"
_TIAN_VOLUME = {"MNI152NLin6Asym": "Tian_Subcortex_S{s}_3T.nii.gz", "MNI152NLin2009cAsym":
                "Tian_Subcortex_S{s}_3T_2009cAsym.nii.gz"}
_TIAN_CIFTI = "Schaefer2018_400Parcels_{n}Networks_order_Tian_Subcortex_S{s}.dlabel.nii"
_SCHAEFER_FILE = {"MNI152NLin6Asym": "Schaefer2018_400Parcels_{n}Networks_order_FSLMNI152_2mm.nii.gz",
                  "MNI152NLin2009cAsym": "tpl-MNI152NLin2009cAsym_res-02_atlas-Schaefer2018_desc-400Parcels{n}"
                  "Networks_dseg.nii.gz"}


def cache_dir() -> Path:
    """Where named atlases are kept: ``atlases`` in the cache folder (`brainjepa.io.cache_root`)."""
    return cache_root() / "atlases"


def is_cifti_atlas(path: str | Path) -> bool:
    return str(path).lower().endswith(".dlabel.nii")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".dlabel.nii", ".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def label_table_path(path: str | Path) -> Path:
    """Where an atlas's label table lies: ``<stem>.tsv`` beside it (columns index, name)."""
    path = Path(path)
    return path.with_name(_stem(path) + ".tsv")


def is_label_table(path: Path) -> bool:
    """Whether `path` is a readable tab-separated table headed by ``index`` and ``name`` columns."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            header = fh.readline()
    except (OSError, UnicodeDecodeError):
        return False
    return {"index", "name"} <= {cell.strip() for cell in header.split("\t")}


def label_names(path: str | Path) -> dict[int, str]:
    """ROI names by label value: a dlabel's label table, or a NIfTI's sidecar ``<stem>.tsv`` (index, name)."""
    import nibabel as nib

    path = Path(path)
    if is_cifti_atlas(path):
        return {k: name for k, (name, _) in nib.load(path).header.get_axis(0).label[0].items() if k != 0}
    sidecar = label_table_path(path)
    if not sidecar.is_file():
        return {}
    import pandas as pd

    table = pd.read_csv(sidecar, sep="\t")
    if not {"index", "name"} <= set(table.columns):
        raise DataError(f"{sidecar}: atlas label table needs 'index' and 'name' columns, has {list(table.columns)}")
    return {int(i): str(n) for i, n in zip(table["index"], table["name"], strict=True) if int(i) != 0}


# ----------------------------------------------------------------------------------------------- NIfTI volumes
def _label_volume(atlas, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(integer label array [X, Y, Z], affine) of a 3-D label image or its path."""
    import nibabel as nib

    try:
        img = nib.load(atlas) if isinstance(atlas, (str, Path)) else atlas
        data = np.asanyarray(img.dataobj)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as err:
        raise DataError(f"{what}: unreadable atlas ({err})") from err
    data = data.reshape(data.shape[:3]) if data.ndim == 4 and data.shape[3] == 1 else data
    if data.ndim != 3:
        raise DataError(f"{what}: expected a 3-D label image, got shape {data.shape}")
    labels = np.rint(data).astype(np.int64)
    if not np.array_equal(labels, data):
        raise DataError(f"{what}: label image has non-integer values (is it a probabilistic atlas?)")
    return labels, np.asarray(img.affine, dtype=float)


def _nearest(data: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target: np.ndarray) -> np.ndarray:
    """`data` resampled onto the grid (`shape`, `target` affine) by nearest neighbour; 0 outside."""
    ijk = np.indices(shape).reshape(3, -1)
    world = target @ np.vstack([ijk, np.ones(ijk.shape[1])])
    src = np.rint(np.linalg.solve(affine, world)[:3]).astype(np.int64)
    inside = np.all((src >= 0) & (src < np.asarray(data.shape)[:, None]), axis=0)
    out = np.zeros(ijk.shape[1], dtype=data.dtype)
    out[inside] = data[tuple(src[:, inside])]
    return out.reshape(shape)


def merge_label_images(
    atlases: Sequence, names: Sequence[Mapping[int, str] | None] | None = None
) -> tuple[object, list[str]]:
    """Join label images into one, labels renumbered 1..R in the order given (e.g. Tian S3, then Schaefer 400).

    Args:
        atlases: 3-D label images or paths; all are put on the last one's grid (nearest neighbour), and where
            two claim a voxel the later one keeps it.
        names: per atlas, ROI names by label value (default: `label_names` of a path, else "<atlas i>:<value>").

    Returns:
        (int16 Nifti1Image, R names in label order).

    Raises:
        DataError: an unreadable or non-integer atlas, or a label that loses every voxel to a later atlas.
    """
    import nibabel as nib

    if not atlases:
        raise DataError("merge_label_images needs at least one atlas")
    what = [str(a) if isinstance(a, (str, Path)) else f"atlas {i + 1}" for i, a in enumerate(atlases)]
    volumes = [_label_volume(a, w) for a, w in zip(atlases, what, strict=True)]
    shape, affine = volumes[-1][0].shape, volumes[-1][1]
    out = np.zeros(shape, dtype=np.int16)
    roi_names: list[str] = []
    for i, (data, aff) in enumerate(volumes):
        given = names[i] if names is not None else None
        part = given if given is not None else (label_names(atlases[i]) if isinstance(atlases[i], (str, Path)) else {})
        if data.shape != shape or not np.allclose(aff, affine):
            data = _nearest(data, aff, shape, affine)
        values = np.unique(data[data > 0])
        lut = np.zeros(int(values.max(initial=0)) + 1, dtype=np.int16)
        lut[values] = np.arange(len(roi_names) + 1, len(roi_names) + 1 + len(values))
        out = np.where(data > 0, lut[np.clip(data, 0, None)], out)
        roi_names += [part.get(int(v), f"{_stem(Path(what[i]))}:{v}") for v in values]
    kept = np.bincount(out.ravel(), minlength=len(roi_names) + 1)[1:]
    if (kept == 0).any():
        lost = [roi_names[i] for i in np.flatnonzero(kept == 0)]
        raise DataError(f"merged atlas: labels {lost[:10]} have no voxels left (covered by a later atlas)")
    return nib.Nifti1Image(out, affine), roi_names


def save_label_image(img, roi_names: Sequence[str], path: str | Path) -> Path:
    """Write a merged label image and its ``<stem>.tsv`` (index, name) so `label_names` finds the names again."""
    import pandas as pd

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"index": np.arange(1, len(roi_names) + 1), "name": list(roi_names)})
    atomic_write(path.with_name(_stem(path) + ".tsv"), lambda p: table.to_csv(p, sep="\t", index=False))
    write_image(img, path)
    return path


def write_image(img, path: str | Path) -> Path:
    """Write a NIfTI / CIFTI image atomically (gzip-compressed for a ``.gz`` name)."""
    import gzip

    path = Path(path)
    data = img.to_bytes()
    atomic_write(path, lambda p: p.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data))
    return path


# ------------------------------------------------------------------------------------------------ CIFTI dlabel
@dataclass
class CiftiLabels:
    """A dlabel's labels by grayordinate: per surface a [nvertices] array, and one label volume for voxels."""

    surfaces: dict[str, np.ndarray] = field(default_factory=dict)
    volume: np.ndarray | None = None  # [X, Y, Z] label per voxel
    structure: np.ndarray | None = None  # [X, Y, Z] index into `voxel_structures` (for writing back)
    voxel_structures: list[str] = field(default_factory=list)
    affine: np.ndarray | None = None
    table: dict[int, tuple[str, tuple[float, ...]]] = field(default_factory=dict)  # label -> (name, rgba)

    @classmethod
    def load(cls, atlas) -> CiftiLabels:
        """Read a ``.dlabel.nii`` (path or Cifti2Image); its first map is the parcellation."""
        import nibabel as nib

        what = str(atlas) if isinstance(atlas, (str, Path)) else "dlabel"
        try:
            img = nib.load(atlas) if isinstance(atlas, (str, Path)) else atlas
            labels_axis, models = img.header.get_axis(0), img.header.get_axis(1)
            values = np.rint(np.asanyarray(img.dataobj)[0]).astype(np.int64)
        except (OSError, ValueError, TypeError, AttributeError, nib.filebasedimages.ImageFileError) as err:
            raise DataError(f"{what}: unreadable dlabel atlas ({err})") from err
        if not isinstance(labels_axis, nib.cifti2.LabelAxis) or not isinstance(models, nib.cifti2.BrainModelAxis):
            raise DataError(f"{what}: not a dlabel file (axes {type(labels_axis).__name__}, {type(models).__name__})")
        out = cls(table={k: (n, tuple(c)) for k, (n, c) in labels_axis.label[0].items() if k != 0})
        for name, slc, sub in models.iter_structures():
            if sub.volume_mask.any():
                out._add_voxels(name, sub.voxel, values[slc], sub.affine, sub.volume_shape, what)
            else:
                arr = np.zeros(sub.nvertices[name], dtype=np.int64)
                arr[sub.vertex] = values[slc]
                out.surfaces[name] = arr
        return out

    def _add_voxels(self, name, voxel, values, affine, shape, what) -> None:
        if self.volume is None:
            self.volume = np.zeros(shape, dtype=np.int64)
            self.structure = np.full(shape, -1, dtype=np.int64)
            self.affine = np.asarray(affine, dtype=float)
        elif self.volume.shape != tuple(shape) or not np.allclose(self.affine, affine):
            raise DataError(f"{what}: voxel grid of {name} differs from the other volume structures")
        if name not in self.voxel_structures:
            self.voxel_structures.append(name)
        idx = tuple(np.asarray(voxel).T)
        self.volume[idx] = values
        self.structure[idx] = self.voxel_structures.index(name)

    def part(self, *, surfaces: bool) -> CiftiLabels:
        """Only the surface structures (cortex) or only the voxels (subcortex), with their labels."""
        keep = CiftiLabels(table=self.table)
        if surfaces:
            keep.surfaces = dict(self.surfaces)
        else:
            keep.volume, keep.structure, keep.affine = self.volume, self.structure, self.affine
            keep.voxel_structures = list(self.voxel_structures)
        used = {int(v) for arr in keep.surfaces.values() for v in np.unique(arr)}
        used |= set(np.unique(keep.volume).tolist()) if keep.volume is not None else set()
        keep.table = {k: v for k, v in self.table.items() if k in used}
        return keep

    def lookup(self, models, source: str) -> np.ndarray:
        """Label of every grayordinate of a BrainModelAxis (0 where the atlas has none)."""
        out = np.zeros(models.size, dtype=np.int64)
        for name, slc, sub in models.iter_structures():
            if sub.volume_mask.any():
                if self.volume is None:
                    continue
                if self.volume.shape != tuple(sub.volume_shape) or not np.allclose(self.affine, sub.affine):
                    raise DataError(f"{source}: voxel grid of {name} differs from the atlas's")
                out[slc] = self.volume[tuple(sub.voxel.T)]
            elif name in self.surfaces:
                arr = self.surfaces[name]
                if len(arr) != sub.nvertices[name]:
                    raise DataError(
                        f"{source}: {name} has {sub.nvertices[name]} vertices, the atlas {len(arr)} (another mesh)"
                    )
                out[slc] = arr[sub.vertex]
        return out

    def to_image(self):
        """A dlabel Cifti2Image of the labelled grayordinates (surfaces first, then voxels)."""
        import nibabel as nib
        from nibabel.cifti2 import BrainModelAxis, LabelAxis

        axes, values = [], []
        for name, arr in self.surfaces.items():
            vertices = np.flatnonzero(arr)
            axes.append(BrainModelAxis.from_surface(vertices, len(arr), name))
            values.append(arr[vertices])
        for i, name in enumerate(self.voxel_structures):
            voxels = np.argwhere((self.structure == i) & (self.volume > 0))
            axes.append(BrainModelAxis(name, voxel=voxels, affine=self.affine, volume_shape=self.volume.shape))
            values.append(self.volume[tuple(voxels.T)])
        if not axes:
            raise DataError("dlabel atlas has no labelled grayordinates")
        models = functools.reduce(lambda a, b: a + b, axes)
        table = {0: ("???", (0.0, 0.0, 0.0, 0.0)), **self.table}
        header = nib.cifti2.Cifti2Header.from_axes((LabelAxis(["parcellation"], [table]), models))
        return nib.Cifti2Image(np.concatenate(values)[None].astype(np.float32), header)


def merge_dlabels(atlases: Sequence) -> tuple[object, list[str]]:
    """Join dlabel atlases into one, labels renumbered 1..R in the order given (e.g. Tian S3, then Schaefer 400).

    Grayordinates are matched by structure and vertex (surfaces) or voxel (volume, same grid); where two atlases
    label the same grayordinate the later one keeps it. Accepts paths, Cifti2Images or `CiftiLabels`.

    Returns:
        (dlabel Cifti2Image, R names in label order).
    """
    if not atlases:
        raise DataError("merge_dlabels needs at least one atlas")
    merged = CiftiLabels()
    names: list[str] = []
    for i, atlas in enumerate(atlases):
        part = atlas if isinstance(atlas, CiftiLabels) else CiftiLabels.load(atlas)
        keys = sorted(part.table)
        lut = np.zeros(max(keys, default=0) + 1, dtype=np.int64)
        lut[keys] = np.arange(len(names) + 1, len(names) + 1 + len(keys))
        for key in keys:
            name, rgba = part.table[key]
            merged.table[int(lut[key])] = (name, rgba)
            names.append(name)
        for structure, arr in part.surfaces.items():
            base = merged.surfaces.setdefault(structure, np.zeros(len(arr), dtype=np.int64))
            if len(base) != len(arr):
                raise DataError(f"atlas {i + 1}: {structure} has {len(arr)} vertices, an earlier atlas {len(base)}")
            merged.surfaces[structure] = np.where(arr > 0, lut[np.clip(arr, 0, len(lut) - 1)], base)
        if part.volume is not None:
            for s, structure in enumerate(part.voxel_structures):
                voxels = np.argwhere((part.structure == s) & (part.volume > 0))
                merged._add_voxels(structure, voxels, lut[part.volume[tuple(voxels.T)]], part.affine,
                                   part.volume.shape, f"atlas {i + 1}")
    present = {int(v) for arr in merged.surfaces.values() for v in np.unique(arr)}
    present |= set(np.unique(merged.volume).tolist()) if merged.volume is not None else set()
    lost = [names[k - 1] for k in range(1, len(names) + 1) if k not in present]
    if lost:
        raise DataError(f"merged dlabel: labels {lost[:10]} have no grayordinates left (covered by a later atlas)")
    return merged.to_image(), names


# -------------------------------------------------------------------------------------------- named atlases
def _download(url: str, dest: Path) -> Path:
    """`url` into `dest`, once. Tian's files are not pinned by hash in this release (GitHub could not be reached
    where it was made): the first download's sha256 is recorded beside it and checked on every later use."""
    return download(url, dest, sha256=None)


def _fetch_schaefer_volume(networks: int, space: str, folder: Path) -> tuple[Path, dict[int, str]]:
    """Schaefer 400 in a volumetric template: nilearn for FSL's MNI152 (NLin6Asym), TemplateFlow otherwise."""
    if space == "MNI152NLin6Asym":
        from nilearn.datasets import fetch_atlas_schaefer_2018

        atlas = fetch_atlas_schaefer_2018(n_rois=400, yeo_networks=networks, resolution_mm=2,
                                          data_dir=str(folder / "nilearn"), verbose=0)
        lut = getattr(atlas, "lut", None)
        if lut is not None:
            return Path(atlas.maps), {int(i): str(n) for i, n in zip(lut["index"], lut["name"], strict=True)}
        labels = [str(n) for n in atlas.labels if str(n) != "Background"]
        return Path(atlas.maps), dict(enumerate(labels, start=1))
    try:
        from templateflow import api as tflow
    except ImportError as err:
        raise OSError(f"Schaefer 400 in {space} comes from TemplateFlow: pip install templateflow") from err
    desc = f"400Parcels{networks}Networks"
    path = tflow.get(space, atlas="Schaefer2018", desc=desc, resolution=2, suffix="dseg", extension=".nii.gz")
    table = tflow.get(space, atlas="Schaefer2018", desc=desc, suffix="dseg", extension=".tsv")
    if not path or not table:
        raise OSError(f"TemplateFlow has no Schaefer 400 ({networks} networks) in {space}")
    import pandas as pd

    df = pd.read_csv(table, sep="\t")
    return Path(path), {int(i): str(n) for i, n in zip(df["index"], df["name"], strict=True)}


def _fetch_tian_volume(scale: int, space: str, folder: Path) -> tuple[Path, dict[int, str]]:
    image = _download(f"{_TIAN_URL}/Subcortex-Only/{_TIAN_VOLUME[space].format(s=scale)}",
                      folder / space / _TIAN_VOLUME[space].format(s=scale))
    labels = _download(f"{_TIAN_URL}/Subcortex-Only/Tian_Subcortex_S{scale}_3T_label.txt",
                       folder / f"Tian_Subcortex_S{scale}_3T_label.txt")
    names = [line.strip() for line in labels.read_text().splitlines() if line.strip()]
    return image, dict(enumerate(names, start=1))


def _fetch_tian_cifti(networks: int, scale: int, folder: Path) -> Path:
    name = _TIAN_CIFTI.format(n=networks, s=scale)
    return _download(f"{_TIAN_URL}/Cortex-Subcortex/{name}", folder / name)


def _parts(name: str) -> tuple[str | None, str | None]:
    """(cortical, subcortical) parts of a name in ATLAS_NAMES: "schaefer400_7n_tians3" -> (schaefer400_7n, tians3)."""
    subcortical = next((s for s in SUBCORTICAL if name == s or name.endswith("_" + s)), None)
    cortical = name[: len(name) - len(subcortical or "")].rstrip("_") or None
    return cortical, subcortical


def _files_instead(name: str, kind: AtlasKind, space: str) -> str:
    """What to pass offline: the source files of a named atlas, in the order they are joined."""
    cortical, subcortical = _parts(name)
    if kind == "cifti":
        return f"--atlas {_TIAN_CIFTI.format(n=CORTICAL.get(cortical, 17), s=SUBCORTICAL.get(subcortical, 3))}"
    files = []
    if subcortical:
        files.append(_TIAN_VOLUME.get(space, _TIAN_VOLUME[DEFAULT_VOLUME_SPACE]).format(s=SUBCORTICAL[subcortical]))
    if cortical:
        files.append(_SCHAEFER_FILE.get(space, _SCHAEFER_FILE[DEFAULT_VOLUME_SPACE]).format(n=CORTICAL[cortical]))
    return " ".join(f"--atlas {f}" for f in files)


def _build_named(name: str, kind: AtlasKind, space: str, dest: Path) -> None:
    cortical, subcortical = _parts(name)
    folder = cache_dir() / "sources"
    if kind == "cifti":
        combined = CiftiLabels.load(_fetch_tian_cifti(CORTICAL.get(cortical, 17), SUBCORTICAL.get(subcortical, 3),
                                                      folder))
        parts = ([combined.part(surfaces=False)] if subcortical else []) + (
            [combined.part(surfaces=True)] if cortical else [])
        img, _ = merge_dlabels(parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_image(img, dest)
        return
    parts = ([_fetch_tian_volume(SUBCORTICAL[subcortical], space, folder)] if subcortical else []) + (
        [_fetch_schaefer_volume(CORTICAL[cortical], space, folder)] if cortical else [])
    img, names = merge_label_images([p for p, _ in parts], [n for _, n in parts])
    save_label_image(img, names, dest)


def resolve_atlas(spec: str | Path, *, kind: AtlasKind, space: str | None = None) -> Path:
    """The atlas file for an ``--atlas`` value: an existing file, or a name in `ATLAS_NAMES` for this space.

    Args:
        spec: a label image / dlabel path, or a name such as ``schaefer400_tians3`` (Tian S3 first, then
            Schaefer 400 in the 17-network order: the official checkpoint's 450 ROIs).
        kind: "volume" (NIfTI label image) or "cifti" (dlabel).
        space: template of the data (a BIDS ``space-`` entity); default MNI152NLin6Asym for volumes, fsLR for
            CIFTI. Named volumetric atlases exist in MNI152NLin6Asym and MNI152NLin2009cAsym.

    Raises:
        DataError: neither a file nor a known name, or a space the name does not exist in.
        DownloadError: a name that cannot be fetched (offline): one line naming the files to pass instead; it
            stops a `prepare` at once instead of failing each run alike.
    """
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec).lower()
    if name not in ATLAS_NAMES:
        raise DataError(f"{spec}: no such atlas file, and not a known atlas name ({', '.join(ATLAS_NAMES)})")
    if kind == "cifti":
        space = space or "fsLR"
        if space not in CIFTI_SPACES:
            raise DataError(f"atlas {name}: no grayordinate version in space {space} (have {CIFTI_SPACES})")
        dest = cache_dir() / f"{name}_space-{space}_den-91k.dlabel.nii"
    else:
        space = space or DEFAULT_VOLUME_SPACE
        if space not in _TIAN_VOLUME:
            raise DataError(f"atlas {name}: no version in space {space} (have {', '.join(_TIAN_VOLUME)}); "
                            "pass a label image in your data's space with --atlas FILE")
        dest = cache_dir() / f"{name}_space-{space}_res-2_dseg.nii.gz"
    if not dest.is_file():
        try:
            _build_named(name, kind, space, dest)
        except DataError as err:
            if not isinstance(err, DownloadError):
                raise
            raise DownloadError(f"atlas {name} ({space}): {err}; offline, pass the files instead: "
                                f"{_files_instead(name, kind, space)}") from err
        except Exception as err:  # nilearn and TemplateFlow raise many types offline (URLError, requests, OSError)
            raise DownloadError(
                f"atlas {name} ({space}) could not be fetched ({type(err).__name__}: {' '.join(str(err).split())}); "
                f"offline, pass the files instead: {_files_instead(name, kind, space)}"
            ) from err
        logger.info("atlas %s (%s) cached at %s", name, space, dest)
    return dest
