"""Atlases: merging into the official order (subcortex first), label names, named atlases offline and cached."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest

from brainjepa.data import atlases
from brainjepa.data.atlases import CiftiLabels, label_names, merge_dlabels, merge_label_images, resolve_atlas
from brainjepa.errors import DataError, DownloadError
from local_http import LocalServer
from synthetic_derivatives import (
    AFFINE,
    CTX_NAMES,
    SUB_NAMES,
    cifti_labels,
    combined_dlabel,
    cortical_dlabel,
    cortical_volume,
    data_axis,
    subcortical_dlabel,
    subcortical_volume,
    write_label_image,
    write_volume_run,
)

OFFICIAL = [*SUB_NAMES.values(), *CTX_NAMES.values()]  # 3 subcortical, then 4 cortical


@pytest.fixture
def volumes(tmp_path):
    return (write_label_image(subcortical_volume(), tmp_path / "tian.nii.gz", SUB_NAMES),
            write_label_image(cortical_volume(), tmp_path / "schaefer.nii.gz", CTX_NAMES))


def test_merged_volume_puts_the_subcortex_first(volumes):
    img, names = merge_label_images(volumes)
    assert names == OFFICIAL
    merged, sub, ctx = np.asarray(img.dataobj), subcortical_volume(), cortical_volume()
    for new, old in enumerate([5, 7, 9], start=1):
        assert np.array_equal(merged[(sub == old) & (ctx == 0)], np.full(((sub == old) & (ctx == 0)).sum(), new))
    for new, old in enumerate([1, 2, 3, 4], start=4):
        assert (merged[ctx == old] == new).all()
    assert merged[0, 0, 1] == 4  # claimed by both: the later (cortical) atlas keeps it
    assert set(np.unique(merged)) == set(range(8))


def test_merge_resamples_onto_the_last_grid(tmp_path, volumes):
    # The subcortical atlas at twice the resolution (1.5 mm), same field of view: nearest neighbour maps it back.
    fine = np.repeat(np.repeat(np.repeat(subcortical_volume(), 2, 0), 2, 1), 2, 2)
    fine_affine = np.diag([1.5, 1.5, 1.5, 1.0])
    fine_affine[:3, 3] = -0.75  # voxel centres of the fine grid sit around the coarse ones
    path = write_label_image(fine, tmp_path / "tian_fine.nii.gz", SUB_NAMES, fine_affine)
    img, names = merge_label_images([path, volumes[1]])
    assert names == OFFICIAL and img.shape == (6, 6, 6) and np.allclose(img.affine, AFFINE)
    assert np.array_equal(np.asarray(img.dataobj), np.asarray(merge_label_images(volumes)[0].dataobj))


def test_merge_refuses_a_label_lost_under_a_later_atlas(volumes):
    swallowing = nib.Nifti1Image(np.where(subcortical_volume() == 9, 1, 0).astype(np.int16), AFFINE)
    with pytest.raises(DataError, match=r"CAU-lh.*no voxels left"):
        merge_label_images([volumes[0], swallowing])


def test_saved_merge_keeps_its_names(tmp_path, volumes):
    img, names = merge_label_images(volumes)
    path = atlases.save_label_image(img, names, tmp_path / "out" / "merged.nii.gz")
    assert label_names(path) == dict(enumerate(OFFICIAL, start=1))
    assert np.array_equal(np.asarray(nib.load(path).dataobj), np.asarray(img.dataobj))


def test_merged_dlabel_puts_the_subcortex_first(tmp_path):
    img, names = merge_dlabels([subcortical_dlabel(tmp_path / "s.dlabel.nii"),
                                cortical_dlabel(tmp_path / "c.dlabel.nii")])
    assert names == OFFICIAL
    labels = CiftiLabels.load(img).lookup(data_axis(), "data")
    assert np.array_equal(labels, cifti_labels() + 1)
    written = atlases.write_image(img, str(tmp_path / "merged.dlabel.nii"))  # a str path, as docs/fmriprep.md writes
    assert np.array_equal(CiftiLabels.load(nib.load(written)).lookup(data_axis(), "data"), labels)


def test_combined_dlabel_is_reordered_by_its_parts(tmp_path):
    combined = CiftiLabels.load(combined_dlabel(tmp_path / "comb.dlabel.nii"))  # cortex keys 1..4 first
    img, names = merge_dlabels([combined.part(surfaces=False), combined.part(surfaces=True)])
    assert names == OFFICIAL
    assert np.array_equal(CiftiLabels.load(img).lookup(data_axis(), "data"), cifti_labels() + 1)


def test_existing_file_and_unknown_name(volumes):
    assert resolve_atlas(volumes[0], kind="volume") == volumes[0]
    with pytest.raises(DataError, match=r"no such atlas file, and not a known atlas name"):
        resolve_atlas("schaefer999", kind="volume")
    with pytest.raises(DataError, match=r"no version in space T1w"):
        resolve_atlas("schaefer400_tians3", kind="volume", space="T1w")


def _offline(*args, **kwargs):
    raise OSError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize("kind", ["volume", "cifti"])
def test_offline_name_is_one_line_naming_the_files(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("BRAINJEPA_CACHE", str(tmp_path))
    monkeypatch.setattr(atlases, "_download", _offline)
    monkeypatch.setattr(atlases, "_fetch_schaefer_volume", _offline)
    with pytest.raises(DataError) as err:
        resolve_atlas("schaefer400_tians3", kind=kind)
    message = str(err.value)
    assert "\n" not in message and "could not be fetched" in message
    if kind == "volume":
        assert message.endswith("--atlas Tian_Subcortex_S3_3T.nii.gz "
                                "--atlas Schaefer2018_400Parcels_17Networks_order_FSLMNI152_2mm.nii.gz")
    else:
        assert message.endswith("--atlas Schaefer2018_400Parcels_17Networks_order_Tian_Subcortex_S3.dlabel.nii")


def test_named_volume_is_fetched_merged_and_cached(tmp_path, monkeypatch, volumes):
    monkeypatch.setenv("BRAINJEPA_CACHE", str(tmp_path / "cache"))
    fetched = []

    def tian(scale, space, folder):
        fetched.append(("tian", scale, space))
        return volumes[0], SUB_NAMES

    def schaefer(networks, space, folder):
        fetched.append(("schaefer", networks, space))
        return volumes[1], CTX_NAMES

    monkeypatch.setattr(atlases, "_fetch_tian_volume", tian)
    monkeypatch.setattr(atlases, "_fetch_schaefer_volume", schaefer)
    path = resolve_atlas("schaefer400_tians3", kind="volume", space="MNI152NLin2009cAsym")
    assert fetched == [("tian", 3, "MNI152NLin2009cAsym"), ("schaefer", 17, "MNI152NLin2009cAsym")]
    assert label_names(path) == dict(enumerate(OFFICIAL, start=1))
    monkeypatch.setattr(atlases, "_fetch_tian_volume", _offline)  # a second call reads the cache only
    assert resolve_atlas("schaefer400_tians3", kind="volume", space="MNI152NLin2009cAsym") == path
    assert resolve_atlas("schaefer400_7n", kind="volume") != path and fetched[-1] == ("schaefer", 7,
                                                                                     "MNI152NLin6Asym")


def test_named_cifti_reorders_the_combined_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAINJEPA_CACHE", str(tmp_path / "cache"))
    combined = combined_dlabel(tmp_path / "comb.dlabel.nii")
    monkeypatch.setattr(atlases, "_fetch_tian_cifti", lambda networks, scale, folder: combined)
    path = resolve_atlas("schaefer400_tians3", kind="cifti", space="fsLR")
    assert list(label_names(path).values()) == OFFICIAL
    assert list(label_names(resolve_atlas("tians3", kind="cifti")).values()) == list(SUB_NAMES.values())


@pytest.fixture
def tian_server(monkeypatch, volumes):
    """Tian's repository on a local server: the S3 volume and its label list."""
    with LocalServer() as server:
        monkeypatch.setattr(atlases, "_TIAN_URL", server.url)
        server.files["/Subcortex-Only/Tian_Subcortex_S3_3T.nii.gz"] = volumes[0].read_bytes()
        server.files["/Subcortex-Only/Tian_Subcortex_S3_3T_label.txt"] = "\n".join(SUB_NAMES.values()).encode()
        yield server


def test_tian_files_are_fetched_once_and_their_hash_checked(tmp_path, tian_server):
    image, names = atlases._fetch_tian_volume(3, "MNI152NLin6Asym", tmp_path)
    assert list(names.values()) == list(SUB_NAMES.values())
    assert image.read_bytes() == tian_server.files["/Subcortex-Only/" + image.name]
    record = image.with_name(image.name + ".sha256")  # not pinned in the code: the first download's hash is kept
    assert record.read_text().strip() == hashlib.sha256(image.read_bytes()).hexdigest()
    atlases._fetch_tian_volume(3, "MNI152NLin6Asym", tmp_path)
    assert set(tian_server.requests.values()) == {1}  # cached once
    image.write_bytes(b"damaged")  # a cached file that no longer matches its hash is fetched again
    assert atlases._fetch_tian_volume(3, "MNI152NLin6Asym", tmp_path)[0].read_bytes() != b"damaged"
    assert tian_server.requests["/Subcortex-Only/" + image.name] == 2
    tian_server.files["/Subcortex-Only/" + image.name] = b"changed upstream"
    image.write_bytes(b"damaged")
    with pytest.raises(DownloadError, match="does not match the pinned"):
        atlases._fetch_tian_volume(3, "MNI152NLin6Asym", tmp_path)


def test_an_unreachable_atlas_stops_prepare_once_not_per_run(tmp_path, monkeypatch, tian_server, capsys):
    from brainjepa.cli import main

    monkeypatch.setenv("BRAINJEPA_CACHE", str(tmp_path / "cache"))
    tian_server.status = 503
    for s in range(3):
        write_volume_run(tmp_path / "deriv", f"0{s}", "rest", seed=s)
    argv = ["prepare", str(tmp_path / "deriv"), "--fmriprep", "--atlas", "schaefer400_tians3", "--skip-bad",
            "--out", str(tmp_path / "store"), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 503" in err[0] and err[0].endswith(
        "--atlas Tian_Subcortex_S3_3T.nii.gz --atlas Schaefer2018_400Parcels_17Networks_order_FSLMNI152_2mm.nii.gz")
    assert sum(tian_server.requests.values()) == 1 and not (tmp_path / "store").exists()


def test_merged_dlabel_gives_a_shared_vertex_to_the_later_atlas(tmp_path):
    """Where two dlabels label the same vertex the later atlas keeps it, as for volumes: keeping the earlier one
    would silently move the vertex's signal into another ROI's mean."""
    first = CiftiLabels.load(cortical_dlabel(tmp_path / "c.dlabel.nii"))
    left = next(s for s in first.surfaces if s.endswith("CORTEX_LEFT"))
    patch = np.zeros_like(first.surfaces[left])
    patch[[4, 5]] = 7  # one vertex of each left-hemisphere parcel
    later = CiftiLabels(surfaces={s: (patch if s == left else np.zeros_like(v)) for s, v in first.surfaces.items()},
                        table={7: ("patch", (1.0, 0.0, 0.0, 1.0))})
    img, names = merge_dlabels([first, later])
    assert names == [*CTX_NAMES.values(), "patch"]
    merged = CiftiLabels.load(img).surfaces
    patch_key = len(CTX_NAMES) + 1
    np.testing.assert_array_equal(merged[left], np.where(patch > 0, patch_key, first.surfaces[left]))


def test_label_names_leave_out_the_background_row(tmp_path):
    """A label table may list index 0 (background); it is no ROI, so it gets no name."""
    path = tmp_path / "atlas.nii.gz"
    (tmp_path / "atlas.tsv").write_text("index\tname\n0\tBackground\n1\tLeft\n2\tRight\n")
    assert label_names(path) == {1: "Left", 2: "Right"}


def test_a_probabilistic_atlas_is_refused():
    """A label image with non-integer values (a probabilistic map) cannot be renumbered: refused, not rounded."""
    data = np.zeros((3, 3, 3))
    data[0, 0, 0], data[1, 1, 1] = 1.0, 0.4
    with pytest.raises(DataError, match="non-integer values"):
        merge_label_images([nib.Nifti1Image(data, np.eye(4))])


def test_a_dlabel_parcel_covered_by_a_later_atlas_is_refused():
    """Merging dlabels: a parcel whose every vertex a later atlas claims would be an ROI without data: refused."""
    rgba = (1.0, 0.0, 0.0, 1.0)
    first = CiftiLabels(surfaces={"CIFTI_STRUCTURE_CORTEX_LEFT": np.array([1, 1, 2, 0])},
                        table={1: ("kept", rgba), 2: ("covered", rgba)})
    second = CiftiLabels(surfaces={"CIFTI_STRUCTURE_CORTEX_LEFT": np.array([0, 0, 1, 1])}, table={1: ("later", rgba)})
    with pytest.raises(DataError, match=r"labels \['covered'\] have no grayordinates left"):
        merge_dlabels([first, second])


def test_atlas_names_are_case_insensitive(tmp_path, monkeypatch):
    """`--atlas Schaefer400_TianS3` is the named atlas (found in the cache), not a missing file."""
    monkeypatch.setenv("BRAINJEPA_CACHE", str(tmp_path))
    cached = tmp_path / "atlases" / "schaefer400_tians3_space-MNI152NLin6Asym_res-2_dseg.nii.gz"
    cached.parent.mkdir(parents=True)
    cached.touch()
    assert resolve_atlas("Schaefer400_TianS3", kind="volume") == cached


def test_a_named_grayordinate_atlas_exists_in_fslr_only(tmp_path, monkeypatch):
    """Grayordinate atlases exist in fsLR only: another space is refused at once, before any download."""
    monkeypatch.setenv("BRAINJEPA_CACHE", str(tmp_path))
    monkeypatch.setattr(atlases, "_download", _offline)
    with pytest.raises(DataError, match=r"atlas schaefer400: no grayordinate version in space MNI152NLin6Asym"):
        resolve_atlas("schaefer400", kind="cifti", space="MNI152NLin6Asym")


def test_a_broken_named_atlas_is_a_data_error_not_a_download_error(tmp_path, monkeypatch):
    """Only a failed fetch is a DownloadError ('pass the files instead'); a fetched atlas that cannot be merged is
    reported as it is."""
    monkeypatch.setenv("BRAINJEPA_CACHE", str(tmp_path))

    def broken(*args, **kwargs):
        raise DataError("merged atlas: labels ['x'] have no voxels left")

    monkeypatch.setattr(atlases, "_build_named", broken)
    with pytest.raises(DataError, match="have no voxels left") as err:
        resolve_atlas("schaefer400", kind="volume")
    assert not isinstance(err.value, DownloadError)


def test_a_smaller_atlas_is_resampled_onto_the_larger_grid():
    """Atlases on different grids are put on the last one's: voxels beyond the smaller grid's edge are 0 there
    (outside it), never read past its end."""
    small = np.ones((2, 2, 2), dtype=np.int16)
    large = np.zeros((4, 4, 4), dtype=np.int16)
    large[3, 3, 3] = 1
    img, names = merge_label_images([nib.Nifti1Image(small, np.eye(4)), nib.Nifti1Image(large, np.eye(4))],
                                    [{1: "small"}, {1: "large"}])
    out = np.asarray(img.dataobj)
    assert names == ["small", "large"]
    assert (out[:2, :2, :2] == 1).all() and out[3, 3, 3] == 2 and (out > 0).sum() == 9
