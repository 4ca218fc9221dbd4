"""The Hugging Face Hub, offline: push to a local target, fill the HF cache, load by id bit-exact, model card."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA, model_config
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

    def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, **kwargs):
        target = remote / repo_id
        target.mkdir(parents=True)
        for f in Path(folder_path).iterdir():
            if allow_patterns is None or f.name in allow_patterns:
                shutil.copy(f, target / f.name)
        calls.append(("upload_folder", repo_id, sorted(p.name for p in target.iterdir())))
        return huggingface_hub.CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/{COMMIT}",
                                          commit_message="", commit_description="", oid=COMMIT)

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    model = _model()
    url = model.push_to_hub(REPO, private=True, evaluation={"brainjepa": {"balanced_acc": 0.61, "auc": 0.7}})
    assert url.endswith(COMMIT)
    assert calls == [("create_repo", REPO, True), ("upload_folder", REPO, sorted(HUB_FILES))]

    cache = tmp_path / "hf" / "hub"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(remote / REPO, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    torch.save(model.state_dict(), tmp_path / "original.pt")
    return tmp_path


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
    assert card.startswith("---\nlibrary_name: brainjepa")
    assert "license: apache-2.0" in card and f'BrainJEPA.from_pretrained("{REPO}")' in card
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
