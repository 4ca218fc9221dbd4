"""What a model records about its data (ROI labels, atlas, training record), the ROI-label check of embed / probe /
evaluate, the known-weights catalogue, and embeddings straight from files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from brainjepa import BrainJEPA, __version__, embed
from brainjepa.cli import main
from brainjepa.data import RunStore
from brainjepa.data.store import StoreWriter
from brainjepa.errors import CheckpointError, DataError
from brainjepa.evaluation.embed import EmbedOptions, embed_files, embed_store
from brainjepa.models import weights
from conftest import tiny_model
from synthetic_derivatives import (
    CTX_NAMES,
    SUB_NAMES,
    cortical_volume,
    subcortical_volume,
    write_label_image,
    write_volume_run,
)

R, T, F = 20, 64, 32  # ROIs, store frames, model window frames
SCHAEFER = [f"17Networks_{h}_{n}_{i}" for h in ("LH", "RH") for n in ("VisCent", "DefaultA") for i in range(1, 6)]


def _model(labels: list[str] | None = None, rois: int = R) -> BrainJEPA:
    meta = {"roi_labels": labels} if labels is not None else None
    return tiny_model(rois, F, gradient_dim=4, metadata=meta).eval()


def _store(path, labels: list[str] | None, subjects: int = 8, rois: int = R):
    """A store as `prepare` writes one from labelled tables: named ROIs, TR 0.8 s, a phenotype column."""
    rng = np.random.default_rng(1)
    with StoreWriter(path, rois, roi_labels=labels) as writer:
        for i in range(subjects):
            writer.add(rng.normal(size=(rois, T)).astype(np.float32) + 100, subject=f"{i:02d}", run="1", tr=0.8,
                       source=f"sub-{i:02d}_timeseries.tsv", phenotypes={"group": i % 2})
        writer.set_metadata("prepare", {"inputs": ["derivatives/"], "atlases": ["/atlases/schaefer20.nii.gz"]})
    return RunStore(path)


# ------------------------------------------------------------------------------------------- the training record
def test_pretrain_records_labels_atlas_and_training(store, tmp_path):
    run = tmp_path / "run"
    overrides = {"data.path": store, "data.crop_size": f"[{R},{F}]", "data.batch_size": 4, "data.num_workers": 0,
                 "data.sampling_rate": 1, "data.pin_mem": "false", "data.gradient_components": 4,
                 "data.gradient_sparsity": 0.5, "mask.patch_size": 8, "meta.model_name": "vit_tiny",
                 "meta.embed_dim": 32, "meta.depth": 1, "meta.num_heads": 2, "meta.pred_emb_dim": 16,
                 "meta.pred_depth": 1, "meta.accumulation_steps": 1, "optimization.epochs": 2,
                 "optimization.warmup": 1, "optimization.max_steps": 3, "logging.checkpoint_every": 2,
                 "data.holdout": 0.25}
    assert main(["pretrain", "--out", str(run), *[f"{k}={v}" for k, v in overrides.items()]]) == 0
    model, data = BrainJEPA.from_pretrained(run), RunStore(store)
    assert model.metadata["roi_labels"] == data.roi_labels and len(data.roi_labels) == R
    record = model.metadata["training"]
    assert record["store"] == str(store.resolve()) and record["steps"] == 3
    assert record["subjects"] + record["heldout_subjects"] == 16 and record["heldout_subjects"] >= 1
    assert record["runs"] == record["subjects"]  # one run per simulated subject
    assert record["tr"] == pytest.approx(data.tr(0)) and record["frame_spacing_s"] == pytest.approx(data.tr(0))
    assert model.frame_spacing == pytest.approx(data.tr(0))  # what the brainmarks plugin resamples to
    assert record["normalization"] == "roi_zscore" and record["brainjepa_version"] == __version__
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["brainjepa_version"] == __version__ and saved["metadata"]["training"]["steps"] == 3
    first = json.loads((run / "checkpoints" / "step-00000002" / "config.json").read_text())
    assert first["metadata"]["training"]["steps"] == 2  # each checkpoint counts its own steps


def test_store_atlas_and_labels_recorded(tmp_path):
    from brainjepa.training.record import data_record

    assert data_record(_store(tmp_path / "s", SCHAEFER)) == {"roi_labels": SCHAEFER, "atlas": "schaefer20.nii.gz"}
    assert data_record(_store(tmp_path / "u", None)) == {"atlas": "schaefer20.nii.gz"}


def test_a_store_without_an_atlas_records_none(tmp_path):
    """A store whose metadata names no atlas has none (None, not an empty name), and its record leaves it out."""
    from brainjepa.training.record import data_record, store_atlas

    with StoreWriter(tmp_path / "s", 4) as writer:
        writer.add(np.random.default_rng(0).normal(size=(4, T)).astype(np.float32), subject="01")
    assert store_atlas(RunStore(tmp_path / "s")) is None and data_record(RunStore(tmp_path / "s")) == {}


def test_training_record_takes_the_tr_of_the_training_runs(tmp_path):
    """The recorded TR is that of the runs trained on (held-out runs and runs without a TR do not count), the frame
    spacing is TR x data.sampling_rate, training runs of differing TRs are recorded as their range, and the seed is
    the run's."""
    from brainjepa.config import load_config
    from brainjepa.training.record import training_record

    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "s", 4) as writer:
        for i, tr in enumerate([0.8, 0.8, None, 2.0, 1.5]):
            writer.add(rng.normal(size=(4, T)).astype(np.float32), subject=f"{i % 3}", run=str(i), tr=tr)
    store, cfg = RunStore(tmp_path / "s"), load_config(None, ["data.sampling_rate=3", "meta.seed=11"])
    record = training_record(cfg, store, [0, 1, 2], [3])
    assert record["tr"] == pytest.approx(0.8) and record["frame_spacing_s"] == pytest.approx(2.4)
    assert (record["subjects"], record["runs"], record["heldout_subjects"], record["heldout_runs"]) == (3, 3, 1, 1)
    assert record["seed"] == 11 and record["sampling_rate"] == 3
    spread = training_record(cfg, store, [0, 4], [3])
    assert spread["tr"] == {"min": 0.8, "max": 1.5} and spread["frame_spacing_s"] is None
    assert training_record(cfg, store, [2], [3])["tr"] is None


def test_old_model_folder_without_record_loads(tmp_path):
    model = _model()
    folder = model.save_pretrained(tmp_path / "old")
    config = json.loads((folder / "config.json").read_text())
    del config["brainjepa_version"]
    config["metadata"] = {}
    (folder / "config.json").write_text(json.dumps(config))
    loaded = BrainJEPA.from_pretrained(folder)
    assert loaded.metadata == {} and loaded.name_or_path == str(folder)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    assert loaded.frame_spacing is None  # nothing recorded: no spacing is guessed


def test_frame_spacing_of_the_official_checkpoint_is_its_ukb_clock(golden_dir):
    ref = BrainJEPA.load(golden_dir / "jepa-ep1.pth.tar", gradient=golden_dir / "gradient_mapping_450.csv",
                         num_heads=4)
    assert ref.frame_spacing == pytest.approx(2.2)  # UKB TR 0.735 s, every 3rd frame (docs/official_model.md)
    ref.metadata["training"] = {"frame_spacing_s": 1.5}  # a record, where there is one, wins
    assert ref.frame_spacing == 1.5


def test_frame_spacing_needs_a_positive_record_or_the_official_roi_space():
    """A recorded spacing counts only when it is a positive number (an int too); without one, the UKB clock is
    assumed only for a reference checkpoint in the official atlas, not for one of another ROI space."""
    from brainjepa.models.jepa import REFERENCE_ATLAS

    model = _model()
    model.metadata = {"training": {"frame_spacing_s": 0}}
    assert model.frame_spacing is None
    model.metadata = {"training": {"frame_spacing_s": 2}}
    assert model.frame_spacing == 2.0
    model.metadata = {"source": "reference checkpoint jepa-ep1.pth.tar"}  # converted in a 20-ROI space: no atlas
    assert model.frame_spacing is None
    model.metadata["atlas"] = REFERENCE_ATLAS
    assert model.frame_spacing == pytest.approx(2.2)


def test_save_refuses_labels_of_another_count(tmp_path):
    with pytest.raises(CheckpointError, match="roi_labels has 3 names but the model has 20 ROIs"):
        _model(SCHAEFER[:3]).save_pretrained(tmp_path / "m")


# ------------------------------------------------------------------------------------------- the ROI-label check
def test_embed_refuses_other_labels_naming_store_model_roi_and_flag(tmp_path, capsys):
    store = _store(tmp_path / "store", SCHAEFER)
    folder = _model(SCHAEFER[5:] + SCHAEFER[:5]).save_pretrained(tmp_path / "model")  # same ROIs, another order
    out = tmp_path / "emb.npy"
    assert main(["embed", "--model", str(folder), "--data", str(store.path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
    for part in (str(store.path), str(folder), "another order", f"ROI 0 is {SCHAEFER[0]!r}", "--ignore-roi-labels"):
        assert part in err, part
    assert main(["embed", "--model", str(folder), "--data", str(store.path), "--out", str(out), "--no-progress",
                 "--ignore-roi-labels"]) == 0
    assert np.load(out).shape == (8, 32)


def test_same_labels_embed_and_other_names_are_refused_in_the_api(tmp_path):
    store = _store(tmp_path / "store", SCHAEFER)
    assert embed_store(_model(SCHAEFER), store, progress=False).embeddings.shape == (8, 32)
    other = [f"ROI{i}" for i in range(R)]
    other[0] = SCHAEFER[0]
    with pytest.raises(DataError, match=r"ROI 1 is '17Networks_LH_VisCent_2' in the data but 'ROI1'"):
        embed_store(_model(other), store, progress=False)
    free = embed_store(_model(other), store, options=EmbedOptions(check_roi_labels=False), progress=False)
    torch.testing.assert_close(free.embeddings, embed_store(_model(SCHAEFER), store, progress=False).embeddings)


def test_missing_labels_warn_once_and_embed(tmp_path, caplog):
    store = _store(tmp_path / "unlabelled", None)
    model = _model(SCHAEFER)
    with caplog.at_level(logging.WARNING, logger="brainjepa.evaluation.embed"):
        for _ in range(2):
            assert embed_store(model, store, progress=False).embeddings.shape == (8, 32)
    lines = [r.getMessage() for r in caplog.records if "ROI labels not compared" in r.getMessage()]
    assert len(lines) == 1 and str(store.path) in lines[0]


def test_probe_refuses_other_labels(tmp_path):
    from brainjepa.evaluation.probe import probe_store

    store = _store(tmp_path / "store", SCHAEFER)
    with pytest.raises(DataError, match="ROI labels differ"):
        probe_store(store.path, "group", model=_model(SCHAEFER[::-1]), baselines=[], folds=2, seeds=1,
                    progress=False)


def test_evaluate_skips_a_store_with_other_labels_saying_why(tmp_path):
    from brainjepa.evaluation.suite import evaluate
    from brainjepa.evaluation.tasks import SuiteOptions

    store = _store(tmp_path / "store", SCHAEFER)
    options = SuiteOptions(tasks=("simulation/group",), stores={"simulation": str(store.path)})
    result = evaluate(_model(SCHAEFER[::-1]), None, options, progress=False)
    assert "ROI labels differ" in result.results[0].reason and "--ignore-roi-labels" in result.results[0].reason


# ------------------------------------------------------------------------------------------- known weights
def test_unpublished_name_is_one_clear_line(capsys):
    name = "brainjepa-vitb-ep300"
    assert not weights.KNOWN_WEIGHTS[name].published
    with pytest.raises(CheckpointError, match="not published on the Hugging Face Hub yet; load the official") as err:
        BrainJEPA.from_pretrained(name)
    assert "\n" not in str(err.value)
    assert main(["embed", "--model", name, "--data", "x", "--out", "e.npy"]) == 2
    assert "not published" in capsys.readouterr().err
    assert main(["info", "--weights"]) == 0
    assert f"{name}  UNPUBLISHED" in capsys.readouterr().out


def test_info_weights_lists_each_name_where_to_get_it_and_nothing_else(monkeypatch, capsys):
    """A published name shows its Hub repository; an unpublished one says so and what to load meanwhile; the
    machine report of plain `brainjepa info` is not appended."""
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, "tiny-test",
                        weights.KnownWeights("tiny-test", "a published test entry", repo_id="org/tiny-test"))
    assert main(["info", "--weights"]) == 0
    out = capsys.readouterr().out
    for entry in weights.list_weights():
        assert entry.description in out
        if entry.published:
            assert f"{entry.name}  {entry.repo_id}" in out and f"{entry.name}  UNPUBLISHED" not in out
        else:
            assert f"{entry.name}  UNPUBLISHED" in out and entry.instead in out
    assert f"brainjepa {__version__}" not in out and "precision auto" not in out


def test_published_name_resolves_to_its_repo_and_a_local_folder_wins(tmp_path, monkeypatch):
    from brainjepa import hub

    folder = _model(SCHAEFER).save_pretrained(tmp_path / "snapshot")
    entry = weights.KnownWeights("tiny-test", "a test entry", repo_id="org/tiny-test")
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, "tiny-test", entry)
    asked = []
    monkeypatch.setattr(hub, "download", lambda repo, **options: asked.append(repo) or folder)
    model = BrainJEPA.load("tiny-test")
    assert asked == ["org/tiny-test"] and model.metadata["roi_labels"] == SCHAEFER
    assert model.name_or_path == "tiny-test"
    monkeypatch.chdir(tmp_path)
    _model().save_pretrained(tmp_path / "tiny-test")
    assert BrainJEPA.from_pretrained("tiny-test").metadata == {} and asked == ["org/tiny-test"]
    with pytest.raises(CheckpointError, match="not a known weights name"):
        weights.resolve_weights("nope")


def test_known_weights_are_listed_in_name_order(monkeypatch):
    monkeypatch.setitem(weights.KNOWN_WEIGHTS, "aaa-test", weights.KnownWeights("aaa-test", "a test entry"))
    names = [w.name for w in weights.list_weights()]
    assert names == sorted(weights.KNOWN_WEIGHTS) and names[0] == "aaa-test"


# ------------------------------------------------------------------------------------------- files -> embeddings
def test_embed_files_equals_embed_of_the_same_series(tmp_path, capsys):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(R, T)).astype(np.float32)
    pd.DataFrame(x.T, columns=SCHAEFER).to_csv(tmp_path / "sub-01_timeseries.tsv", sep="\t", index=False)
    np.save(tmp_path / "sub-02.npy", x[:, ::-1].copy())
    model = _model(SCHAEFER)
    got = embed_files(model, [tmp_path / "sub-01_timeseries.tsv", tmp_path / "sub-02.npy"])
    want = embed(model, np.stack([x, x[:, ::-1]]))
    torch.testing.assert_close(got.embeddings, want, atol=1e-5, rtol=1e-5)
    assert list(got.index["subject"]) == ["01", "02"]
    with pytest.raises(DataError, match="ROI labels differ"):
        embed_files(_model(SCHAEFER[::-1]), tmp_path / "sub-01_timeseries.tsv")
    folder = model.save_pretrained(tmp_path / "m")
    out = tmp_path / "one.npy"
    assert main(["embed", "--model", str(folder), "--file", str(tmp_path / "sub-01_timeseries.tsv"), "--out",
                 str(out), "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(out)[0], want[0].numpy(), atol=1e-5)
    assert pd.read_csv(f"{out}.index.csv")["source"].str.endswith("sub-01_timeseries.tsv").all()
    assert main(["embed", "--model", str(folder), "--data", str(tmp_path), "--tr", "2", "--out", str(out)]) == 2
    assert "--tr: for --file inputs; a store (--data) is already prepared" in capsys.readouterr().err
    # an fMRIPrep flag with --data: one line naming every reading flag, not "add --fmriprep" (which would then be
    # refused too)
    assert main(["embed", "--model", str(folder), "--data", str(tmp_path), "--confounds", "none", "--out",
                 str(out)]) == 2
    assert "--confounds: for --file inputs; a store (--data) is already prepared" in capsys.readouterr().err


def test_embed_files_with_other_labels_embeds_when_the_check_is_off(tmp_path: Path) -> None:
    """check_roi_labels=False (--ignore-roi-labels) reaches file inputs as it reaches stores: a table whose header
    differs from the model's labels is embedded, as `embed` embeds its series."""
    x = np.random.default_rng(4).normal(size=(R, T)).astype(np.float32)
    pd.DataFrame(x.T, columns=SCHAEFER).to_csv(tmp_path / "sub-01_timeseries.tsv", sep="\t", index=False)
    model = _model(SCHAEFER[::-1])
    got = embed_files(model, tmp_path / "sub-01_timeseries.tsv", options=EmbedOptions(check_roi_labels=False))
    torch.testing.assert_close(got.embeddings, embed(model, x[None]), atol=1e-5, rtol=1e-5)
    folder = model.save_pretrained(tmp_path / "m")
    assert main(["embed", "--model", str(folder), "--file", str(tmp_path / "sub-01_timeseries.tsv"), "--out",
                 str(tmp_path / "e.npy"), "--no-progress", "--ignore-roi-labels"]) == 0


def test_embed_file_reads_an_fmriprep_run_with_its_atlases(tmp_path):
    from brainjepa.data.fmriprep import find_fmriprep_runs, read_fmriprep

    atlases = [write_label_image(subcortical_volume(), tmp_path / "sub.nii.gz", SUB_NAMES),
               write_label_image(cortical_volume(), tmp_path / "ctx.nii.gz", CTX_NAMES)]
    path = write_volume_run(tmp_path / "deriv", "01", "rest", frames=40)
    run = read_fmriprep(find_fmriprep_runs([path])[0], atlases=atlases)
    model = _model(run.roi_labels, rois=7)
    got = embed_files(model, path, atlases=atlases).embeddings
    torch.testing.assert_close(got, embed(model, run.ts[None]), atol=1e-5, rtol=1e-5)
    assert got.shape == (1, 32)


def test_load_is_the_one_door_to_a_model(tmp_path):
    """`BrainJEPA.load` takes a model or anything naming one; what it loads is ready to embed (eval mode)."""
    from conftest import tiny_model

    model = tiny_model(6).train()
    assert BrainJEPA.load(model) is model and model.training  # a model is passed through untouched
    loaded = BrainJEPA.load(model.save_pretrained(tmp_path / "m"))
    assert not loaded.training
    torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)
