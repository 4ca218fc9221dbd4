"""fMRIPrep derivatives -> ROI time series, with nilearn's fMRIPrep confound strategies.

`find_fmriprep_runs` finds the runs of a derivatives folder by name: volumetric ``*_desc-preproc_bold.nii.gz``
(parcellated with NIfTI label atlases) and grayordinate ``*_bold.dtseries.nii`` (parcellated with ``.dlabel.nii``
atlases), with subject / session / task / run from the BIDS entities and ``--task`` / ``--space`` /
``--session`` filters. `read_fmriprep` reads one: the parcel means, the TR from the run's JSON sidecar, then
`nilearn.signal.clean` with the confounds and sample mask that
`nilearn.interfaces.fmriprep.load_confounds_strategy` selects from ``*_desc-confounds_timeseries.tsv``
(``simple``, ``scrubbing``, ``compcor``; ``none`` keeps the signal as it is), and the optional high-pass and
detrend. `NiftiLabelsMasker` cleans its region signals with the same call, so both formats are treated alike.

Frames the strategy censors (non-steady-state volumes, and high-motion frames with ``scrubbing``) are removed,
as its sample mask says; how many is logged per run and kept in the manifest column ``frames_removed``.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from brainjepa.data.atlases import CiftiLabels, is_cifti_atlas, resolve_atlas
from brainjepa.data.nifti import read_nifti
from brainjepa.data.readers import ReadOptions, Run, Source, pick_tr, walk
from brainjepa.errors import DataError

logger = logging.getLogger(__name__)

CONFOUND_STRATEGIES = ("simple", "scrubbing", "compcor", "none")
VOLUME_SUFFIX = "_desc-preproc_bold.nii.gz"
CIFTI_SUFFIX = "_bold.dtseries.nii"
# Entities that tell runs of one subject apart; they make the store's run id ("ses-1_task-rest_run-2").
RUN_ENTITIES = ("ses", "task", "acq", "ce", "rec", "dir", "run", "echo")
# Entities that tell versions of one run apart (the output space); `--space` selects one.
SPACE_ENTITIES = ("space", "cohort", "res", "den")


@dataclass(frozen=True)
class FmriprepOptions:
    """How fMRIPrep runs are selected and cleaned (the ``brainjepa prepare --fmriprep`` flags).

    Args:
        confounds: nilearn strategy ``simple`` | ``scrubbing`` | ``compcor``, or ``none`` (no confound removal).
        high_pass: Butterworth high-pass cut-off in Hz (None: none beyond the strategy's cosine regressors).
        detrend: remove a linear trend (and with it the mean) from each ROI.
        task: keep only runs of this task.
        space: keep only runs in this output space, e.g. ``MNI152NLin2009cAsym`` or ``fsLR``; add ``_res-2`` /
            ``_den-91k`` where one space has several resolutions.
        session: keep only runs of this session.
    """

    confounds: str = "simple"
    high_pass: float | None = None
    detrend: bool = False
    task: str | None = None
    space: str | None = None
    session: str | None = None

    def __post_init__(self) -> None:
        if self.confounds not in CONFOUND_STRATEGIES:
            raise DataError(f"confounds must be one of {CONFOUND_STRATEGIES}, got {self.confounds!r}")
        if self.high_pass is not None and not self.high_pass > 0:
            raise DataError(f"high_pass must be a positive frequency in Hz, got {self.high_pass}")

    def space_filter(self) -> dict[str, str]:
        """``--space MNI152NLin2009cAsym_res-2`` -> {"space": "MNI152NLin2009cAsym", "res": "2"}."""
        if self.space is None:
            return {}
        head, *rest = self.space.split("_")
        wanted = {"space": head.removeprefix("space-")}
        for part in rest:
            key, sep, value = part.partition("-")
            if not sep or key not in SPACE_ENTITIES:
                raise DataError(f"--space {self.space}: cannot read {part!r} (expected e.g. res-2 or den-91k)")
            wanted[key] = value
        return wanted


@dataclass(frozen=True)
class FmriprepSource(Source):
    """One fMRIPrep run to read: its BIDS entities and the options it is read with."""

    entities: tuple[tuple[str, str], ...] = ()
    options: FmriprepOptions = field(default_factory=FmriprepOptions)

    @property
    def cifti(self) -> bool:
        return self.path.name.endswith(CIFTI_SUFFIX)

    @property
    def space(self) -> str | None:
        return dict(self.entities).get("space")

    def read(self, options: ReadOptions) -> Run:
        """Parcellate and clean this run with `options`' atlases and TR (`read_fmriprep`)."""
        return read_fmriprep(self, atlases=options.atlases, tr=options.tr, allow_unusual_tr=options.allow_unusual_tr)


def bids_entities(name: str) -> dict[str, str]:
    """The key-value entities of a BIDS file name (``sub-01_task-rest_bold.nii.gz`` -> sub, task)."""
    stem = name.split(".", 1)[0]
    return dict(re.findall(r"(?:^|_)([a-zA-Z]+)-([a-zA-Z0-9+]+)", stem))


def _space_key(entities: dict[str, str]) -> str:
    """How `--space` names the output space of a run (``MNI152NLin2009cAsym_res-2``; ``native`` without one)."""
    parts = [entities.get("space", "native")]
    parts += [f"{k}-{entities[k]}" for k in SPACE_ENTITIES[1:] if k in entities]
    return "_".join(parts)


def _run_id(entities: dict[str, str]) -> str:
    return "_".join(f"{k}-{entities[k]}" for k in RUN_ENTITIES if k in entities) or "1"


def find_fmriprep_runs(inputs: Sequence[str | Path], options: FmriprepOptions | None = None) -> list[FmriprepSource]:
    """The runs under fMRIPrep derivatives folders (or given image files) that pass the filters, in name order.

    Raises:
        DataError: an input does not exist; nothing matches (the message lists the tasks / spaces found); a
            file has no ``sub-`` entity; or the runs are in several spaces and ``--space`` does not pick one.
    """
    options = options or FmriprepOptions()
    wanted = {"task": options.task, "ses": options.session, **options.space_filter()}
    found: list[tuple[Path, dict[str, str]]] = []
    for item in inputs:
        root = Path(item)
        if not root.exists():
            raise DataError(f"{root}: no such fMRIPrep derivatives folder or file")
        files = [root] if root.is_file() else [  # symbolic links to subject folders are followed
            p for p in walk(root) if p.name.endswith((VOLUME_SUFFIX, CIFTI_SUFFIX)) and p.is_file()]
        for path in files:
            if not path.name.endswith((VOLUME_SUFFIX, CIFTI_SUFFIX)):
                raise DataError(f"{path}: not an fMRIPrep BOLD run (*{VOLUME_SUFFIX} or *{CIFTI_SUFFIX})")
            entities = bids_entities(path.name)
            if "sub" not in entities:
                raise DataError(f"{path}: no sub- entity in the file name")
            found.append((path, entities))
    if not found:
        raise DataError(f"{', '.join(map(str, inputs))}: no fMRIPrep runs (*{VOLUME_SUFFIX}, *{CIFTI_SUFFIX})")
    keep = [(p, e) for p, e in found if all(v is None or e.get(k) == v for k, v in wanted.items())]
    if not keep:
        seen = {k: sorted({e.get(k, "-") for _, e in found}) for k in ("task", "ses")}
        raise DataError(
            f"no fMRIPrep run matches task={options.task}, session={options.session}, space={options.space}; "
            f"found tasks {seen['task']}, sessions {seen['ses']}, spaces {sorted({_space_key(e) for _, e in found})}"
        )
    spaces = sorted({_space_key(e) for _, e in keep})
    if len(spaces) > 1:
        raise DataError(f"the runs are in several output spaces ({', '.join(spaces)}); choose one (space=, --space)")
    sources = [
        FmriprepSource("fmriprep", p, e["sub"], _run_id(e), entities=tuple(sorted(e.items())), options=options)
        for p, e in sorted(keep, key=lambda pe: str(pe[0]))
    ]
    logger.info("fMRIPrep: %d runs of %d subjects in space %s", len(sources), len({s.subject for s in sources}),
                spaces[0])
    return sources


def sidecar_path(path: Path) -> Path:
    """The run's JSON sidecar: the image's name with ``.json`` for its extension."""
    return path.with_name(path.name.split(".", 1)[0] + ".json")


def sidecar_tr(path: Path) -> float | None:
    """RepetitionTime (s) from the run's JSON sidecar (`sidecar_path`), None if the sidecar or the key is absent."""
    sidecar = sidecar_path(path)
    if not sidecar.is_file():
        return None
    try:
        value = json.loads(sidecar.read_text()).get("RepetitionTime")
    except (OSError, ValueError, AttributeError) as err:
        raise DataError(f"{sidecar}: unreadable JSON sidecar ({err})") from err
    if value is None:
        return None
    if not isinstance(value, (int, float)) or not value > 0:
        raise DataError(f"{sidecar}: RepetitionTime must be a positive number of seconds, got {value!r}")
    return float(value)


def fmriprep_confounds(image: Path, strategy: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(confounds [T, C] or None, sample mask of kept frames or None) for one run, as nilearn's strategy says."""
    if strategy == "none":
        return None, None
    from nilearn.interfaces.fmriprep import load_confounds_strategy

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "all volumes scrubbed" is checked below, in one line
            confounds, sample_mask = load_confounds_strategy(str(image), denoise_strategy=strategy)
    except (ValueError, OSError, KeyError) as err:
        table = confounds_table(image)
        lacking = missing_columns(table, strategy)  # nilearn's message names only some of them
        reason = f"{table.name} lacks the columns {', '.join(lacking)}" if lacking else " ".join(str(err).split())
        raise DataError(f"{image}: confounds '{strategy}' ({reason}); try another strategy (confounds=, "
                        "--confounds), or none") from err
    if sample_mask is not None and len(sample_mask) == 0:  # nilearn then returns all-NaN confounds: say why first
        raise DataError(f"{image}: confounds '{strategy}' censor every frame, so nothing is left to read; try another "
                        "strategy (confounds=, --confounds), or none")
    values = None if confounds is None or confounds.shape[1] == 0 else confounds.to_numpy(dtype=np.float64)
    if values is not None and not np.isfinite(values).all():  # an n/a the strategy does not fill (mid-column)
        row, col = np.argwhere(~np.isfinite(values))[0]
        count = int((~np.isfinite(values)).sum())
        table = confounds_table(image).name
        raise DataError(f"{image}: confounds file {table}: column {confounds.columns[col]!r} has {count} n/a or "
                        f"non-finite value(s) that strategy '{strategy}' does not fill (first in data row "
                        f"{row + 1}, line {row + 2}); fix the confounds file or choose another strategy (none: "
                        "no cleaning)")
    return values, None if sample_mask is None else np.asarray(sample_mask, dtype=np.int64)


def confounds_table(image: Path) -> Path:
    """The ``*_desc-confounds_timeseries.tsv`` fMRIPrep writes beside a run (space and desc entities dropped)."""
    return image.with_name(image.name.split("_desc-")[0].split("_space-")[0] + "_desc-confounds_timeseries.tsv")


def missing_columns(table: Path, strategy: str) -> list[str]:
    """The named fMRIPrep columns that nilearn's `strategy` reads and `table` lacks (in fMRIPrep's order).

    nilearn reports the missing columns of one noise component at a time (``simple`` without ``trans_x`` and
    ``csf`` names only ``csf``), so a user would fix the table once per column. Components read by pattern
    (cosine, CompCor) are left to nilearn's message. [] when the table cannot be read."""
    from nilearn.interfaces.fmriprep.load_confounds_strategy import preset_strategies

    try:
        with open(table, encoding="utf-8") as handle:
            header = set(handle.readline().rstrip("\r\n").split("\t"))
    except (OSError, UnicodeDecodeError):
        return []
    preset = preset_strategies[strategy]
    expansions = {"basic": ("",), "full": ("", "_derivative1", "_power2", "_derivative1_power2")}
    wanted = []
    if "motion" in preset["strategy"]:
        wanted += [f"{axis}{tail}" for axis in ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
                   for tail in expansions[preset["motion"]]]
    if "wm_csf" in preset["strategy"]:
        wanted += [f"{tissue}{tail}" for tissue in ("csf", "white_matter") for tail in expansions[preset["wm_csf"]]]
    if "scrub" in preset["strategy"]:
        wanted += ["framewise_displacement", "std_dvars"]
    return [column for column in wanted if column not in header]


def parcellate_cifti(path: Path, atlases: Sequence[Path]) -> tuple[np.ndarray, list[str]]:
    """Mean of each dlabel parcel over a dtseries' grayordinates -> ([R, T] float32, R names); atlases joined in
    order. A parcel with no grayordinate in the file would shift every later ROI, so it is an error."""
    import nibabel as nib

    try:
        img = nib.load(path)
        series = np.asarray(img.get_fdata(dtype=np.float32))  # [T, grayordinates]
        models = img.header.get_axis(1)
    except (OSError, ValueError, TypeError, nib.filebasedimages.ImageFileError) as err:
        raise DataError(f"{path}: unreadable CIFTI file ({err})") from err
    if not isinstance(models, nib.cifti2.BrainModelAxis):
        raise DataError(f"{path}: not a dense time series (second axis is {type(models).__name__})")
    rows, names = [], []
    for atlas in atlases:
        table = CiftiLabels.load(atlas)
        labels = table.lookup(models, str(path))
        for key in sorted(table.table):
            mask = labels == key
            if not mask.any():
                raise DataError(f"{path}: atlas {atlas.name} label {key} ({table.table[key][0]}) has no grayordinates")
            rows.append(series[:, mask].mean(axis=1, dtype=np.float64))
            names.append(table.table[key][0])
    return np.asarray(rows, dtype=np.float32), names


def _atlas_files(source: FmriprepSource, atlases: Sequence[str | Path]) -> list[Path]:
    if not atlases:
        raise DataError(f"{source.path}: fMRIPrep runs need an atlas (atlases=, --atlas): a label image for "
                        "volumes, a .dlabel.nii for "
                        "CIFTI, or a name such as schaefer400_tians3)")
    files = [resolve_atlas(a, kind="cifti" if source.cifti else "volume", space=source.space) for a in atlases]
    wrong = [f.name for f in files if is_cifti_atlas(f) != source.cifti]
    if wrong:
        need = "a .dlabel.nii atlas" if source.cifti else "a NIfTI label image"
        raise DataError(f"{source.path}: this run needs {need}, got {', '.join(wrong)}")
    return files


def read_fmriprep(source: FmriprepSource, *, atlases: Sequence[str | Path] = (), tr: float | None = None,
                  allow_unusual_tr: bool = False) -> Run:
    """Parcellate and clean one fMRIPrep run (see the module docstring) into a `Run`.

    Args:
        source: from `find_fmriprep_runs`.
        atlases: files or names, joined in this order (e.g. Tian S3, then Schaefer 400).
        tr: TR in seconds; required when the sidecar has no RepetitionTime, and overrides it (with a warning).
        allow_unusual_tr: accept a TR outside what scanners use (`brainjepa.data.readers.check_tr`).
    """
    path, options = source.path, source.options
    files = _atlas_files(source, atlases)
    file_tr = sidecar_tr(path)
    if tr is None and file_tr is None:
        sidecar = sidecar_path(path)
        what = (f"no RepetitionTime in its JSON sidecar {sidecar.name}" if sidecar.is_file()
                else f"no JSON sidecar ({sidecar.name} is missing) to read the TR from")
        raise DataError(f"{path}: {what}; give the TR (tr=, --tr)")
    t_r = float(pick_tr(path, tr, file_tr, found_in="sidecar", allow_unusual=allow_unusual_tr))
    nyquist = 0.5 / t_r
    if options.high_pass is not None and options.high_pass >= nyquist:  # nilearn would lower it and warn, and the
        # filter would then remove the whole signal
        raise DataError(f"{path}: --high-pass {options.high_pass:g} Hz is at or above the Nyquist frequency of this "
                        f"run ({nyquist:g} Hz at TR {t_r:g} s), so nothing of the signal would be left; choose a "
                        "cut-off below it (0.008-0.01 Hz is usual)")
    if source.cifti:
        ts, names = parcellate_cifti(path, files)
    else:
        ts, _, names = read_nifti(path, files)
    confounds, sample_mask = fmriprep_confounds(path, options.confounds)
    frames = ts.shape[1]
    if confounds is not None and len(confounds) != frames:
        raise DataError(f"{path}: confounds file has {len(confounds)} rows for {frames} frames")
    if confounds is not None or options.high_pass or options.detrend or sample_mask is not None:
        from nilearn.signal import clean

        try:
            ts = clean(ts.T.astype(np.float64), detrend=options.detrend, standardize=None, confounds=confounds,
                       sample_mask=sample_mask, high_pass=options.high_pass, t_r=t_r).T.astype(np.float32)
        except ValueError as err:  # nilearn refuses e.g. non-finite signals
            raise DataError(f"{path}: signal cleaning failed ({' '.join(str(err).split())})") from err
    removed = frames - ts.shape[1]
    if removed:
        logger.info("%s: removed %d of %d frames (confounds '%s')", path.name, removed, frames, options.confounds)
    entities = dict(source.entities)
    return Run(
        ts=np.ascontiguousarray(ts), subject=source.subject, run=source.run, tr=t_r, source=str(path),
        roi_labels=names,
        info={k: v for k, v in (("session", entities.get("ses")), ("task", entities.get("task")),
                                 ("space", _space_key(entities)), ("frames_removed", removed)) if v is not None},
    )


def options_record(options: FmriprepOptions) -> dict:
    """The options as stored in the store's metadata ("fmriprep")."""
    return asdict(options)
