"""fMRIPrep derivatives: discovery and filters, TR, nilearn confound strategies, CIFTI parcels, and prepare ->
embed -> probe on tiny synthetic derivatives (volumetric and grayordinate) built here."""

from __future__ import annotations

import json
import logging

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.interfaces.fmriprep import load_confounds_strategy
from nilearn.maskers import NiftiLabelsMasker
from nilearn.signal import clean

from brainjepa.cli import main
from brainjepa.data import RunStore
from brainjepa.data.atlases import merge_label_images, save_label_image
from brainjepa.data.fmriprep import FmriprepOptions, find_fmriprep_runs, read_fmriprep
from brainjepa.data.readers import ReadOptions, read_source
from brainjepa.data.validate import check_source
from brainjepa.errors import DataError
from conftest import tiny_model
from synthetic_derivatives import (
    CTX_NAMES,
    SUB_NAMES,
    cifti_labels,
    cortical_dlabel,
    cortical_volume,
    subcortical_dlabel,
    subcortical_volume,
    write_cifti_run,
    write_label_image,
    write_volume_run,
)

OFFICIAL = [*SUB_NAMES.values(), *CTX_NAMES.values()]


@pytest.fixture
def atlas_files(tmp_path):
    return [write_label_image(subcortical_volume(), tmp_path / "tian.nii.gz", SUB_NAMES),
            write_label_image(cortical_volume(), tmp_path / "schaefer.nii.gz", CTX_NAMES)]


@pytest.fixture
def merged(tmp_path, atlas_files):
    """Both atlases in one label image, the official order (a voxel both claim goes to the cortex)."""
    img, names = merge_label_images(atlas_files)
    return save_label_image(img, names, tmp_path / "merged.nii.gz")


@pytest.fixture
def dlabels(tmp_path):
    return [subcortical_dlabel(tmp_path / "tian.dlabel.nii"), cortical_dlabel(tmp_path / "schaefer.dlabel.nii")]


def _one(root, **options):
    (source,) = find_fmriprep_runs([root], FmriprepOptions(**options))
    return source


def test_runs_ids_and_filters(tmp_path):
    root = tmp_path / "deriv"
    write_volume_run(root, "01", "rest", ses="1", run=1)
    write_volume_run(root, "01", "rest", ses="1", run=2)
    write_volume_run(root, "02", "motor", run=None)
    write_volume_run(root, "02", "motor", run=None, space="MNI152NLin2009cAsym")
    with pytest.raises(DataError, match=r"several output spaces \(MNI152NLin2009cAsym, MNI152NLin6Asym\); "
                                        r"choose one \(space=, --space\)"):
        find_fmriprep_runs([root])
    runs = find_fmriprep_runs([root], FmriprepOptions(space="MNI152NLin6Asym"))
    assert [(s.subject, s.run) for s in runs] == [("01", "ses-1_task-rest_run-1"), ("01", "ses-1_task-rest_run-2"),
                                                   ("02", "task-motor")]
    assert [s.run for s in find_fmriprep_runs([root], FmriprepOptions(space="MNI152NLin6Asym", task="motor"))] == [
        "task-motor"]
    assert len(find_fmriprep_runs([root], FmriprepOptions(space="MNI152NLin2009cAsym"))) == 1
    assert len(find_fmriprep_runs([root], FmriprepOptions(session="1"))) == 2
    with pytest.raises(DataError, match=r"found tasks \['motor', 'rest'\]"):
        find_fmriprep_runs([root], FmriprepOptions(task="nback"))
    with pytest.raises(DataError, match="confounds must be one of"):
        FmriprepOptions(confounds="aroma")


def test_tr_comes_from_the_sidecar_or_is_refused(tmp_path, atlas_files, caplog):
    write_volume_run(tmp_path, "01", "rest", tr=None)
    with pytest.raises(DataError, match=r"no RepetitionTime in its JSON sidecar \S+bold.json; give the TR \(tr=, --tr"):
        read_fmriprep(_one(tmp_path), atlases=atlas_files)
    sidecar = next(tmp_path.rglob("*bold.json"))
    sidecar.unlink()  # no sidecar at all is said as such
    with pytest.raises(DataError, match=rf"no JSON sidecar \({sidecar.name} is missing\) to read the TR from"):
        read_fmriprep(_one(tmp_path), atlases=atlas_files)
    assert read_fmriprep(_one(tmp_path), atlases=atlas_files, tr=0.8).tr == 0.8
    write_volume_run(tmp_path, "02", "rest", tr=1.5)
    runs = find_fmriprep_runs([tmp_path])
    assert [s.subject for s in runs] == ["01", "02"]
    assert read_fmriprep(runs[1], atlases=atlas_files).tr == 1.5
    with caplog.at_level(logging.WARNING):
        assert read_fmriprep(runs[1], atlases=atlas_files, tr=2.0).tr == 2.0
    assert "sidecar says TR 1.5 s, using the given TR 2 s" in caplog.text


def test_sidecar_tr_in_milliseconds_is_refused_unless_confirmed(tmp_path, atlas_files):
    """A sidecar RepetitionTime written in milliseconds would resample and filter the run 1000 times too slowly;
    it is refused as for every other input, unless the unusual TR is confirmed."""
    write_volume_run(tmp_path, "01", "rest", tr=2000.0)
    with pytest.raises(DataError, match=r"the sidecar's TR 2000 s is outside what scanners use .*milliseconds"):
        read_fmriprep(_one(tmp_path), atlases=atlas_files)
    assert read_fmriprep(_one(tmp_path), atlases=atlas_files, allow_unusual_tr=True).tr == 2000.0


@pytest.mark.parametrize("strategy,high_pass,detrend", [("simple", None, False), ("scrubbing", 0.01, True),
                                                         ("compcor", 0.02, False)])
def test_volume_cleaning_is_nilearns(tmp_path, merged, strategy, high_pass, detrend):
    """The same numbers as NiftiLabelsMasker given the strategy's confounds and sample mask."""
    path = write_volume_run(tmp_path, "01", "rest", outliers=(10, 20), non_steady=2)
    run = read_fmriprep(_one(tmp_path, confounds=strategy, high_pass=high_pass, detrend=detrend), atlases=[merged])
    confounds, mask = load_confounds_strategy(str(path), denoise_strategy=strategy)
    masker = NiftiLabelsMasker(str(merged), standardize=None, detrend=detrend, high_pass=high_pass, t_r=2.0)
    expected = masker.fit_transform(str(path), confounds=confounds, sample_mask=mask).T
    np.testing.assert_allclose(run.ts, expected, atol=1e-4)
    assert run.roi_labels == OFFICIAL
    removed = 4 if strategy == "scrubbing" else 2  # 2 non-steady-state frames, plus 2 high-motion ones
    assert run.ts.shape == (7, 40 - removed) and run.info["frames_removed"] == removed
    assert run.info == {"task": "rest", "space": "MNI152NLin6Asym", "frames_removed": removed}


def test_a_high_pass_at_nyquist_is_refused(tmp_path, merged):
    """nilearn would lower the cut-off to Nyquist and filter the whole signal away; the run is refused instead."""
    write_volume_run(tmp_path, "01", "rest")  # TR 2 s: Nyquist 0.25 Hz
    with pytest.raises(DataError, match=r"--high-pass 0\.3 Hz is at or above the Nyquist frequency of this run "
                       r"\(0\.25 Hz at TR 2 s\)"):
        read_fmriprep(_one(tmp_path, high_pass=0.3), atlases=[merged])
    assert read_fmriprep(_one(tmp_path, high_pass=0.2), atlases=[merged]).ts.std() > 0


def test_a_high_pass_exactly_at_nyquist_is_refused(tmp_path, merged):
    """A cut-off equal to the Nyquist frequency leaves no pass band either; only a strictly lower one is usable."""
    write_volume_run(tmp_path, "01", "rest", tr=2.0)
    with pytest.raises(DataError, match="is at or above the Nyquist frequency of this run"):
        read_fmriprep(_one(tmp_path, high_pass=0.5 / 2.0), atlases=[merged])


def test_none_keeps_every_frame_and_the_raw_means(tmp_path, merged):
    path = write_volume_run(tmp_path, "01", "rest", outliers=(10,))
    run = read_fmriprep(_one(tmp_path, confounds="none"), atlases=[merged])
    raw = NiftiLabelsMasker(str(merged), standardize=None).fit_transform(str(path)).T
    np.testing.assert_allclose(run.ts, raw, rtol=1e-6)
    assert run.info["frames_removed"] == 0


def test_a_run_reads_itself_wherever_runs_are_read(tmp_path, merged):
    """`read_source` and the checks read an fMRIPrep run by its own `read`: cleaned, with ReadOptions' atlases and
    TR, the same run `read_fmriprep` gives (the checks never name the fMRIPrep reader)."""
    write_volume_run(tmp_path, "01", "rest", outliers=(10, 20))
    source = _one(tmp_path, confounds="scrubbing")
    expected = read_fmriprep(source, atlases=[merged], tr=2.5)
    options = ReadOptions(atlases=(merged,), tr=2.5)
    for run in (read_source(source, options), check_source(source, options).run):
        np.testing.assert_array_equal(run.ts, expected.ts)
        assert (run.tr, run.roi_labels, run.info) == (2.5, OFFICIAL, expected.info)
    removed = expected.info["frames_removed"]
    assert removed > 0 and expected.ts.shape[1] == 40 - removed  # scrubbed, not a plain NIfTI read
    (problem,) = check_source(source, ReadOptions()).problems  # no atlas given: a problem of the run, not a crash
    assert "atlas" in problem.message


def test_scrubbed_frames_are_reported(tmp_path, atlas_files, caplog):
    write_volume_run(tmp_path, "01", "rest", outliers=(10, 20, 30))
    with caplog.at_level(logging.INFO):
        run = read_fmriprep(_one(tmp_path, confounds="scrubbing"), atlases=atlas_files)
    assert run.ts.shape[1] == 36
    assert "removed 4 of 40 frames (confounds 'scrubbing')" in caplog.text


def test_cifti_parcel_means_then_cleaning(tmp_path, dlabels):
    path = write_cifti_run(tmp_path, "01", "rest", outliers=(15,))
    series = nib.load(path).get_fdata()
    means = np.stack([series[:, cifti_labels() == r].mean(1) for r in range(7)])
    raw = read_fmriprep(_one(tmp_path, confounds="none"), atlases=dlabels)
    np.testing.assert_allclose(raw.ts, means, rtol=1e-6)
    assert raw.roi_labels == OFFICIAL and raw.info["space"] == "fsLR_den-91k" and raw.tr == 2.0
    confounds, mask = load_confounds_strategy(str(path), denoise_strategy="scrubbing")
    run = read_fmriprep(_one(tmp_path, confounds="scrubbing", high_pass=0.01, detrend=True), atlases=dlabels)
    expected = clean(means.T, detrend=True, standardize=None, confounds=confounds, sample_mask=mask,
                     high_pass=0.01, t_r=2.0).T
    np.testing.assert_allclose(run.ts, expected, rtol=1e-4, atol=1e-4)
    assert run.info["frames_removed"] == 2


def test_bad_inputs_are_one_line(tmp_path, atlas_files, dlabels):
    path = write_volume_run(tmp_path, "01", "rest")
    confounds = path.parent / "sub-01_task-rest_run-1_desc-confounds_timeseries.tsv"
    table = pd.read_csv(confounds, sep="\t")
    table.drop(columns=["trans_x", "rot_z", "csf"]).to_csv(confounds, sep="\t", index=False)
    with pytest.raises(DataError) as err:  # nilearn itself names only csf: one noise component at a time
        read_fmriprep(_one(tmp_path), atlases=atlas_files)
    assert "\n" not in str(err.value) and "--confounds" in str(err.value)
    assert f"{confounds.name} lacks the columns trans_x, rot_z, csf" in str(err.value)
    table.drop(columns=["std_dvars"]).to_csv(confounds, sep="\t", index=False)
    with pytest.raises(DataError, match=r"lacks the columns std_dvars\)"):
        read_fmriprep(_one(tmp_path, confounds="scrubbing"), atlases=atlas_files)
    with pytest.raises(DataError, match="needs a NIfTI label image, got tian.dlabel.nii"):
        read_fmriprep(_one(tmp_path), atlases=dlabels)
    with pytest.raises(DataError, match=r"need an atlas \(atlases=, --atlas\)"):
        read_fmriprep(_one(tmp_path))
    (path.parent / "sub-01_task-rest_run-1_space-MNI152NLin6Asym_desc-preproc_bold.json").write_text(
        json.dumps({"RepetitionTime": "2"}))
    with pytest.raises(DataError, match="RepetitionTime must be a positive number"):
        read_fmriprep(_one(tmp_path, confounds="none"), atlases=atlas_files)


# ------------------------------------------------------------------------------------ prepare -> embed -> probe
def _pipeline(tmp_path, root, atlases, space, capsys):
    store, model = tmp_path / "store", str(tiny_model(7).save_pretrained(tmp_path / "model"))
    args = ["prepare", str(root), "--fmriprep", "--out", str(store), "--space", space, "--confounds", "scrubbing",
            "--high-pass", "0.01", "--no-progress"]
    assert main(args + [a for atlas in atlases for a in ("--atlas", str(atlas))]) == 0
    printed = capsys.readouterr().out
    data = RunStore(store)
    assert data.roi_labels == OFFICIAL and data.metadata["fmriprep"]["confounds"] == "scrubbing"
    manifest = data.manifest
    assert set(manifest["task"]) == {"rest", "motor"} and manifest["space"].str.startswith(space).all()
    assert (manifest["frames_removed"] == manifest["frames"].rsub(40)).all()
    assert "removed" in printed
    emb = tmp_path / "emb.npy"
    assert main(["embed", "--model", model, "--data", str(store), "--out", str(emb), "--no-progress"]) == 0
    assert np.load(emb).shape == (len(manifest), 32)
    assert main(["probe", "--data", str(store), "--label", "task", "--model", model, "--folds", "2", "--seeds", "1",
                 "--baselines", "--out", str(tmp_path / "probe"), "--no-progress"]) == 0
    table = pd.read_csv(tmp_path / "probe" / "probe.csv")
    assert len(table) == 1 and 0 <= table["balanced_acc_mean"].iloc[0] <= 1
    return manifest


def test_volumetric_derivatives_prepare_embed_probe(tmp_path, atlas_files, capsys):
    root = tmp_path / "deriv"
    for s in range(4):
        for task in ("rest", "motor"):
            write_volume_run(root, f"{s:02d}", task, seed=10 * s + len(task), outliers=(5 + s,) if s % 2 else ())
    manifest = _pipeline(tmp_path, root, atlas_files, "MNI152NLin6Asym", capsys)
    assert list(manifest["subject"].unique()) == ["00", "01", "02", "03"]
    assert manifest["frames_removed"].tolist() == [1, 1, 2, 2, 1, 1, 2, 2]


def test_cifti_derivatives_prepare_embed_probe(tmp_path, dlabels, capsys):
    root = tmp_path / "deriv"
    for s in range(4):
        for task in ("rest", "motor"):
            write_cifti_run(root, f"{s:02d}", task, seed=10 * s + len(task))
    manifest = _pipeline(tmp_path, root, dlabels, "fsLR", capsys)
    assert (manifest["frames"] == 39).all()


def test_cli_validate_and_refusals(tmp_path, merged, capsys):
    root = tmp_path / "deriv"
    write_volume_run(root, "01", "rest", outliers=(12,))
    assert main(["validate", str(root), "--fmriprep", "--confounds", "scrubbing", "--atlas", str(merged)]) == 0
    assert "1 runs checked: all good" in capsys.readouterr().out
    assert main(["prepare", str(root), "--out", str(tmp_path / "s"), "--task", "rest", "--no-detrend"]) == 2
    assert "--task, --detrend: only for fMRIPrep derivatives; add --fmriprep" in capsys.readouterr().err
    assert main(["prepare", str(root), "--fmriprep", "--out", str(tmp_path / "s"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "need an atlas (atlases=, --atlas)" in err


def _touch_runs(root, *names):
    """Empty files with fMRIPrep run names: enough for discovery, which reads only the names."""
    folder = root / "sub-01" / "func"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).touch()
    return root


def test_run_ids_keep_every_entity_that_tells_runs_apart(tmp_path):
    """Runs that differ only by acquisition get their own run ids (two runs never share one); entity values may
    hold '+', as fMRIPrep's do; a run with no run entity at all is run "1"."""
    root = _touch_runs(tmp_path / "a", "sub-01_task-rest_acq-mb+ge_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz",
                       "sub-01_task-rest_acq-sb_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz")
    assert [s.run for s in find_fmriprep_runs([root])] == ["task-rest_acq-mb+ge", "task-rest_acq-sb"]
    bare = _touch_runs(tmp_path / "b", "sub-01_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz")
    assert [s.run for s in find_fmriprep_runs([bare])] == ["1"]


def test_space_option_reads_its_entities_and_refuses_others():
    """--space takes the space with or without its 'space-' prefix, then res-/cohort-/den- parts; any other part
    is refused in one line rather than silently matching nothing."""
    assert FmriprepOptions(space="space-MNI152NLin2009cAsym_res-2").space_filter() == {
        "space": "MNI152NLin2009cAsym", "res": "2"}
    with pytest.raises(DataError, match=r"--space MNI152NLin6Asym_acq-2: cannot read 'acq-2'"):
        FmriprepOptions(space="MNI152NLin6Asym_acq-2").space_filter()


def test_a_high_pass_of_zero_hz_is_refused():
    """A 0 Hz high-pass is no filter: it is refused as a non-positive cut-off, not passed on to nilearn."""
    with pytest.raises(DataError, match="high_pass must be a positive frequency in Hz, got 0"):
        FmriprepOptions(high_pass=0.0)


def test_runs_of_several_inputs_come_in_path_order(tmp_path):
    """The runs are listed in path order whatever order the folders are given in, so a store's run order does not
    depend on the command line."""
    name = "sub-01_task-rest_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz"
    first, second = _touch_runs(tmp_path / "a", name), _touch_runs(tmp_path / "b", name)
    assert [s.path.parents[2] for s in find_fmriprep_runs([second, first])] == [first, second]


def test_a_sidecar_tr_of_zero_is_refused(tmp_path):
    """RepetitionTime 0 in a sidecar is no TR: one line naming the sidecar, never a TR of 0 s."""
    from brainjepa.data.fmriprep import sidecar_tr

    root = _touch_runs(tmp_path, "sub-01_task-rest_space-MNI152NLin6Asym_desc-preproc_bold.nii.gz")
    image = next(root.rglob("*_bold.nii.gz"))
    image.with_name(image.name.replace(".nii.gz", ".json")).write_text(json.dumps({"RepetitionTime": 0}))
    with pytest.raises(DataError, match="RepetitionTime must be a positive number of seconds, got 0"):
        sidecar_tr(image)


def test_a_confounds_file_of_another_length_is_refused(tmp_path, merged):
    """A confounds table with fewer rows than the run has frames belongs to another run: refused, naming both
    counts, before any cleaning."""
    path = write_volume_run(tmp_path, "01", "rest")
    confounds = path.parent / "sub-01_task-rest_run-1_desc-confounds_timeseries.tsv"
    pd.read_csv(confounds, sep="\t").iloc[:-1].to_csv(confounds, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(DataError, match="confounds file has 39 rows for 40 frames"):
        read_fmriprep(_one(tmp_path), atlases=[merged])


def test_a_missing_squared_motion_derivative_is_named(tmp_path, atlas_files):
    """The columns a strategy lacks are named in full, the squared derivatives of the 'full' motion model too."""
    path = write_volume_run(tmp_path, "01", "rest")
    confounds = path.parent / "sub-01_task-rest_run-1_desc-confounds_timeseries.tsv"
    pd.read_csv(confounds, sep="\t").drop(columns=["rot_y_derivative1_power2"]).to_csv(
        confounds, sep="\t", index=False, na_rep="n/a")
    with pytest.raises(DataError, match=r"lacks the columns rot_y_derivative1_power2\)"):
        read_fmriprep(_one(tmp_path), atlases=atlas_files)


def test_cohorts_of_one_template_are_different_spaces(tmp_path):
    """Two cohorts of a template are two output spaces: listed apart (cohort included) and one must be chosen."""
    root = _touch_runs(tmp_path, "sub-01_task-rest_space-MNIPediatricAsym_cohort-1_desc-preproc_bold.nii.gz",
                       "sub-01_task-rest_space-MNIPediatricAsym_cohort-2_desc-preproc_bold.nii.gz")
    with pytest.raises(DataError, match=r"several output spaces \(MNIPediatricAsym_cohort-1, "
                                        r"MNIPediatricAsym_cohort-2\)"):
        find_fmriprep_runs([root])
    (run,) = find_fmriprep_runs([root], FmriprepOptions(space="MNIPediatricAsym_cohort-2"))
    assert run.space == "MNIPediatricAsym"


def test_detrend_alone_cleans_the_signal(tmp_path, merged):
    """detrend without confounds or a high-pass still cleans: each ROI loses its mean and linear trend, as
    nilearn's clean(detrend=True) does."""
    write_volume_run(tmp_path, "01", "rest")
    raw = read_fmriprep(_one(tmp_path, confounds="none"), atlases=[merged]).ts
    run = read_fmriprep(_one(tmp_path, confounds="none", detrend=True), atlases=[merged])
    expected = clean(raw.T.astype(np.float64), detrend=True, standardize=None, t_r=2.0).T
    np.testing.assert_allclose(run.ts, expected, atol=1e-4)
    assert not np.allclose(run.ts, raw, atol=1e-3)


def test_a_strategy_that_censors_every_frame_is_refused(tmp_path, atlas_files):
    """When scrubbing flags every frame nothing is left to clean: one line naming the strategy, not a complaint
    about n/a cells the confounds file does not have (nilearn returns all-NaN confounds then; it used to blame
    column cosine00)."""
    write_volume_run(tmp_path, "01", "rest", outliers=tuple(range(1, 40)))
    with pytest.raises(DataError, match="confounds 'scrubbing' censor every frame"):
        read_fmriprep(_one(tmp_path, confounds="scrubbing"), atlases=atlas_files)
