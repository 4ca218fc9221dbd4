"""The Hugging Face Hub, offline: push to a local target, fill the HF cache, load by id bit-exact, model card."""

from __future__ import annotations

import inspect
import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub
import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, hub, model_config
from brainjepa.errors import BrainJEPAError, CheckpointError
from brainjepa.hub import HUB_FILES, is_hub_id, model_card

REPO = "brainjepa-test/tiny"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
R = 6


def _model() -> BrainJEPA:
    torch.manual_seed(0)
    cfg = model_config("vit_tiny", num_rois=R, num_frames=16, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                       pred_embed_dim=16, pred_depth=1, gradient_dim=3)
    rng = np.random.default_rng(0)
    metadata = {
        "normalization": {"kind": "robust", "median": rng.normal(size=R).tolist(),
                          "iqr": rng.uniform(1, 2, R).tolist(), "num_subjects": 12, "num_runs": 20},
        "roi_labels": [f"ROI_{i}" for i in range(R)],
        "atlas": "Schaefer 2018, 6 parcels",
        "training": {"data": "stores/sim (12 subjects)", "schedule": {"epochs": 3, "lr": 1e-3}},
    }
    model = BrainJEPA(cfg, rng.normal(size=(R, 3)), metadata=metadata)
    with torch.no_grad():  # the target encoder differs from the context encoder, as after training
        for p in model.target_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """Push through HfApi with the upload redirected to a local folder, then place it in an offline HF cache."""
    remote = tmp_path / "remote"
    calls = []

    def create_repo(self, repo_id, **kwargs):
        calls.append(("create_repo", repo_id, kwargs.get("private")))

    def repo_info(self, repo_id, **kwargs):
        calls.append(("repo_info", repo_id))
        return SimpleNamespace(private=True)

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, **kwargs):
        target = remote / repo_id
        target.mkdir(parents=True)
        for f in Path(folder_path).iterdir():
            if allow_patterns is None or f.name in allow_patterns:
                shutil.copy(f, target / f.name)
        calls.append(("upload_folder", repo_id, sorted(p.name for p in target.iterdir())))
        return huggingface_hub.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}",
                                          commit_message="", commit_description="", oid=COMMIT)

    model = _model()
    with monkeypatch.context() as m:  # the download side below must see the real HfApi
        m.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        m.setattr(huggingface_hub.HfApi, "repo_info", repo_info)
        m.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
        url = model.push_to_hub(REPO, private=True, evaluation={"brainjepa": {"balanced_acc": 0.61, "auc": 0.7}})
    assert url.endswith(COMMIT)
    assert calls == [("create_repo", REPO, True), ("repo_info", REPO), ("upload_folder", REPO, sorted(HUB_FILES))]

    cache = tmp_path / "hf" / "hub"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(remote / REPO, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    torch.save(model.state_dict(), tmp_path / "original.pt")
    return tmp_path


def test_private_push_to_an_existing_public_repository_is_refused(monkeypatch):
    """The Hub ignores `private` when the repository exists: uploading there would publish the weights."""
    uploads = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: None)
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", lambda self, repo_id, **kw: SimpleNamespace(private=False))
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", lambda self, **kw: uploads.append(kw))
    with pytest.raises(BrainJEPAError, match=f"^{REPO} already exists and is public, so private=True would not"):
        _model().push_to_hub(REPO, private=True)
    assert uploads == []
    _model().push_to_hub(REPO)  # not asked to be private: uploaded
    assert len(uploads) == 1


def test_push_passes_token_revision_and_message_and_refuses_a_bad_id(monkeypatch):
    calls = []

    class Api:
        def __init__(self, **kwargs):
            calls.append(("HfApi", kwargs))

        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id))

        def upload_folder(self, *, repo_id, revision=None, commit_message=None, **kwargs):
            calls.append(("upload_folder", repo_id, revision, commit_message))
            return SimpleNamespace(commit_url="the-commit")

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    assert _model().push_to_hub(REPO, token="hf_secret", revision="dev", commit_message="v2") == "the-commit"
    assert calls == [("HfApi", {"token": "hf_secret"}), ("create_repo", REPO), ("upload_folder", REPO, "dev", "v2")]
    calls.clear()
    for bad in ("tiny", "org/name/extra", "org/ name"):
        with pytest.raises(BrainJEPAError, match=f"^{re.escape(repr(bad))} is not a Hub repository id"):
            _model().push_to_hub(bad)
    assert calls == []  # refused before reaching the Hub


@pytest.mark.parametrize("path", ["org/name/extra", *(f"checkpoints/jepa{suffix}" for suffix in (
    ".pth", ".tar", ".pt", ".ckpt", ".safetensors", ".bin", ".json"))])
def test_a_hub_id_is_org_slash_name_and_not_a_file_name(path):
    """A missing checkpoint file or a deeper path stays a missing local path, never a Hub download."""
    assert not is_hub_id(path)


def test_load_by_id_offline_is_bit_exact(hub_cache):
    original = torch.load(hub_cache / "original.pt", weights_only=True)
    for loaded in (BrainJEPA.from_pretrained(REPO), BrainJEPA.load(REPO)):
        state = loaded.state_dict()
        assert state.keys() == original.keys()
        assert all(torch.equal(state[k], original[k]) for k in original)
        assert loaded.config == _model().config
        assert loaded.metadata["roi_labels"] == [f"ROI_{i}" for i in range(R)]


def test_cli_embeds_with_a_hub_id_offline(hub_cache, capsys):
    from brainjepa.cli import main
    from brainjepa.data import StoreWriter
    from brainjepa.evaluation.embed import EmbedOptions, embed_store

    rng = np.random.default_rng(1)
    with StoreWriter(hub_cache / "store", num_rois=R) as w:
        for s in range(3):
            w.add(rng.normal(size=(R, 20)).astype(np.float32), subject=f"s{s}", run="1", tr=2.0)
    out = hub_cache / "emb.npy"
    argv = ["embed", "--model", REPO, "--data", str(hub_cache / "store"), "--out", str(out), "--no-progress",
            "--device", "cpu"]
    assert main(argv) == 0
    expected = embed_store(_model().eval(), hub_cache / "store", options=EmbedOptions(device="cpu")).embeddings
    np.testing.assert_array_equal(np.load(out), expected.numpy())

    capsys.readouterr()
    argv[argv.index(REPO)] = "brainjepa-test/missing"
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "brainjepa-test/missing" in lines[0] and "Hugging Face Hub" in lines[0]


def test_model_card_describes_the_model(tmp_path):
    card = model_card(_model(), REPO, evaluation=[{"model": "brainjepa", "auc": 0.7}], license="apache-2.0")
    front = card.split("---\n")[1]  # the YAML metadata block (its key order depends on huggingface_hub's version)
    assert card.startswith("---\n") and "library_name: brainjepa\n" in front and "license: apache-2.0\n" in front
    assert f'BrainJEPA.from_pretrained("{REPO}")' in card
    assert "| encoder | 32 | 1 | 2 |" in card  # width, depth, heads
    assert f"{R} ROIs" in card and "ROI_0, ROI_1, ROI_2, ..., ROI_5" in card
    assert f"`[{R}, 3]` functional gradients" in card
    assert "Kind `robust`" in card and "fitted on 12 subjects (20 runs)" in card
    assert "- data: stores/sim (12 subjects)" in card and "  - epochs: 3" in card
    assert "| brainjepa | 0.7 |" in card
    probe_csv = tmp_path / "probe.csv"
    probe_csv.write_text("model,balanced_acc_mean\nbrainjepa,0.61\n")
    assert "| brainjepa | 0.61 |" in model_card(_model(), REPO, evaluation=probe_csv)
    bare = model_card(BrainJEPA(_model().config, np.zeros((R, 3))), REPO)
    assert "None recorded" in bare and "## Evaluation" not in bare and "not recorded" in bare


def test_the_card_shows_the_evaluation_the_model_carries():
    model = BrainJEPA(_model().config, np.zeros((R, 3)),
                      metadata={"evaluation": {"brainjepa": {"auc": 0.7}, "FC": {"auc": 0.6}}})
    card = model_card(model, REPO)
    assert "## Evaluation" in card and "| brainjepa | 0.7 |" in card and "| FC | 0.6 |" in card


def test_the_card_of_the_official_checkpoint_states_its_roi_order(golden_dir):
    model = BrainJEPA.load(golden_dir / "jepa-ep1.pth.tar", gradient=golden_dir / "gradient_mapping_450.csv",
                           num_heads=4)
    card = model_card(model, REPO)
    assert "the 50 Tian S3 subcortical ROIs first, then the 400 Schaefer-2018 parcels" in card
    assert "not recorded" not in card


def test_hub_options_have_the_mixin_signature_and_reach_snapshot_download(tmp_path, monkeypatch):
    mixin = inspect.signature(huggingface_hub.ModelHubMixin.from_pretrained).parameters
    ours = inspect.signature(BrainJEPA.from_pretrained).parameters
    for name in ("force_download", "token", "cache_dir", "local_files_only", "revision"):
        assert ours[name].kind == mixin[name].kind and ours[name].default == mixin[name].default, name
    folder = _model().save_pretrained(tmp_path / "snapshot")
    calls = []

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    options = {"cache_dir": tmp_path / "hf", "token": "hf_secret", "force_download": True, "local_files_only": True,
               "revision": "v1"}
    model = BrainJEPA.from_pretrained(REPO, **options)
    assert torch.equal(model.gradient, _model().gradient)
    assert calls == [(REPO, {**options, "allow_patterns": list(HUB_FILES)})]
    assert BrainJEPA.from_pretrained(REPO) is not None and calls[-1][1] == {
        "cache_dir": None, "token": None, "force_download": False, "local_files_only": False, "revision": None,
        "allow_patterns": list(HUB_FILES)}


def test_a_local_folder_ignores_the_download_options_and_refuses_the_rest(tmp_path, monkeypatch):
    folder = _model().save_pretrained(tmp_path / "local")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("went to the Hub"))
    loaded = BrainJEPA.from_pretrained(folder, token="t", cache_dir=tmp_path / "hf", local_files_only=True)
    assert torch.equal(loaded.gradient, _model().gradient)
    with pytest.raises(CheckpointError, match=r"local path, not a Hugging Face Hub id, so revision and force_download "
                       r"cannot be used \(drop them"):
        BrainJEPA.from_pretrained(folder, revision="v1", force_download=True)


def _evaluate_csv(folder: Path) -> Path:
    """An evaluate.csv as `brainjepa evaluate` writes it: scores of the model and of a baseline, a pair row, a
    skipped task, a skipped row of a done task."""
    rows = [
        ("sim/sex", "classification", "balanced_acc", "brainjepa, ROI mean", "score", 0.71, 0.6, 0.8, 0.5, 0.01,
         "done"),
        ("sim/sex", "classification", "balanced_acc", "FC", "score", 0.65, 0.55, 0.75, 0.5, 0.02, "done"),
        ("sim/id", "identification", "accuracy", "brainjepa, token FC", "pair", 0.3, "", "", 0.1, "", "done"),
        ("sim/age", "regression", "pearson_r", "brainjepa, ROI mean", "skipped", "", "", "", "", "", "skipped"),
        ("sim/sex", "classification", "balanced_acc", "brainjepa, token FC", "score", "", "", "", "", "", "skipped"),
    ]
    header = "task,kind,metric,row,type,mean,ci_low,ci_high,chance,p_value,status,units,n_units,null_high\n"
    folder.mkdir(parents=True, exist_ok=True)
    body = "".join(",".join(f'"{v}"' if "," in str(v) else str(v) for v in row) + ",subject,40,\n" for row in rows)
    (folder / "evaluate.csv").write_text(header + body)
    return folder / "evaluate.csv"


def test_model_card_metadata_and_eval_results(tmp_path):
    csv = _evaluate_csv(tmp_path / "run" / "evaluate")
    card = huggingface_hub.ModelCard(model_card(_model(), REPO, evaluation=csv, license="apache-2.0"))
    data = card.data
    assert data.library_name == "brainjepa" and data.license == "apache-2.0"
    assert "arxiv:2409.19407" in data.tags and "https://arxiv.org/abs/2409.19407" in card.text
    assert "https://github.com/Eric-LRL/Brain-JEPA" in card.text
    (result,) = data.eval_results  # the model's own done score only: no baseline, pair or skipped row
    assert (result.task_type, result.task_name, result.dataset_name, result.metric_type) == (
        "classification", "sim/sex", "sim", "balanced_acc")
    assert result.metric_value == 0.71 and result.metric_config == "ROI mean"
    assert result.metric_args == {"ci_low": 0.6, "ci_high": 0.8, "chance": 0.5, "p_value": 0.01, "n_subjects": 40}
    assert "| sim/sex | FC | balanced_acc | 0.65 |" in card.text  # the table shows the baselines too
    model = _model()
    model.name_or_path = str(tmp_path / "run")  # as from_pretrained records it: found without evaluation=
    assert huggingface_hub.ModelCard(model_card(model, REPO)).data.eval_results[0].metric_value == 0.71
    bare = huggingface_hub.ModelCard(model_card(BrainJEPA(_model().config, np.zeros((R, 3))), REPO))
    assert bare.data.eval_results is None and "## Evaluation" not in bare.text and "Atlas:" not in bare.text
    assert "Atlas: Schaefer 2018" in model_card(_model(), REPO)


def test_local_folder_wins_over_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _model().save_pretrained(REPO)
    assert not is_hub_id(REPO) and is_hub_id("org/other") and not is_hub_id("checkpoints/jepa-ep300.pth.tar")
    monkeypatch.setattr("brainjepa.hub.download", lambda *a, **k: pytest.fail("went to the Hub"))
    assert torch.equal(BrainJEPA.load(REPO).gradient, _model().gradient)


def test_missing_huggingface_hub_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(CheckpointError, match=r"brainjepa\[hub\]"):
        BrainJEPA.load("brainjepa-test/not-local")
    with pytest.raises(BrainJEPAError, match=r"brainjepa\[hub\]"):
        _model().push_to_hub(REPO)


def test_the_card_reads_the_model_rows_evaluate_writes():
    from brainjepa.evaluation.results import PRETRAINED

    assert hub.MODEL_ROW_PREFIX == f"{PRETRAINED}, "
