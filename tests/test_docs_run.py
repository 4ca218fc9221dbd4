"""The documented command lines RUN, in the docs' order, scaled down (tests/test_docs.py only parses them).

Each doc in `SESSIONS` is run as a session in its own temporary folder: its `brainjepa ...` lines (found by the
same `command_lines` as tests/test_docs.py), in order, through ``python -m brainjepa`` of this interpreter. A
command is the documented line with only sizes changed, by two explicit tables: `SIZES` (text replaced, e.g.
``--subjects 200``) and `APPEND` (options or overrides added after the line's own, e.g. a tiny model and
``optimization.max_steps=2``; argparse and the config take the last value). Paths stay as written: they are
relative, so they land in the session's folder (``configs/`` is copied there). Files a user brings (their runs,
``participants.tsv``, a second modality) are written by the functions `SESSIONS` lists, as small synthetic
stand-ins. Lines that need what a test cannot have (the official checkpoint, the network, several processes) are in
`SKIP` with the reason; a documented line that is neither run nor skipped fails
`test_every_documented_line_is_run_or_skipped`, so the docs cannot drift from what runs.

`make test` (and so CI, `.ci/run`) runs this in the fresh ``.venv`` it builds from the documented ``[dev]`` extra
(= ``[all]``: data, viz, hub, gradients, plus pytest and ruff): the evidence that installing the documented extras
runs every documented command.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from brainjepa.data.simulate import SimulationConfig, simulate_bold, simulate_store
from test_docs import DOCS, ROOT, command_lines

SUBJECTS = 12  # simulated subjects instead of the docs' 100-200
USER_ROIS, USER_FRAMES, USER_SUBJECTS = 40, 490, 6  # "your own data": 40 ROIs (>= 30 gradients), UKB-long runs

# Documented text -> scaled-down text (every occurrence in a line).
SIZES = {
    "--subjects 200": f"--subjects {SUBJECTS}",
    "--subjects 100": f"--subjects {SUBJECTS}",
    "--rois 450": f"--rois {USER_ROIS}",
}

# depth 3: downstream.md embeds block 2
TINY_MODEL = ("model.embed_dim=32 model.depth=3 model.num_heads=2 model.pred_embed_dim=16 model.pred_depth=1 "
              "optimization.max_steps=2 data.batch_size=4 meta.accumulation_steps=1 data.num_workers=0")
# argument of the line (its command, a config, a flag) -> added after the line's own options / overrides, in order.
APPEND = {
    "pretrain": TINY_MODEL,
    "probe": "--folds 2 --seeds 1",
    # 5 folds (the default) keep >= 5 subjects per class for the validation split
    "finetune": "--epochs 1 --warmup-epochs 1",
    "align": "--epochs 2",
    "evaluate": f"--folds 2 --seeds 1 --sim-subjects {SUBJECTS}",
    "configs/ukb_vitb_ep300.yaml": f"data.crop_size=[{USER_ROIS},160]",  # the config's 450 ROIs -> the stand-in's
    "--resume": "optimization.max_steps=3",  # continues the 2-step run above it, as after an interruption
}

CHECKPOINT = "needs the official checkpoint jepa-ep300.pth.tar (tests/test_reference_equivalence.py loads its format)"
HUB = "a Hugging Face Hub id needs the network (tests/test_hub.py loads ids offline from a pre-filled cache)"
ATLAS = ("the atlas name is fetched from the web and the input is a user's fMRIPrep folder (tests/test_fmriprep.py "
         "runs these flags on synthetic derivatives with atlas files)")
QUICKSTART = ("the model of `brainjepa quickstart` and the connattractor sample, downloaded from PyPI (network; "
              "tests/test_evaluate.py runs the suite offline)")
TORCHRUN = "several torchrun processes (tests/test_training.py runs `torchrun -m brainjepa pretrain` with 2 ranks)"
# (doc, text found in its command lines) -> why the lines with that text are not run here.
SKIP = {
    ("README.md", "quickstart --out runs/quickstart"): "downloads the connattractor sample from PyPI (network); "
    "tests/test_quickstart.py runs the quickstart on simulated data",
    ("README.md", "--out runs/mine4"): TORCHRUN,
    ("quickstart.md", "quickstart --out runs/quickstart"): "downloads the connattractor sample from PyPI (network)",
    ("quickstart.md", "quickstart --data simulated"): "a 10-minute pretraining budget; tests/test_quickstart.py runs "
    "this command with --minutes 0.02 --folds 2 --seeds 1",
    ("samples.md", "samples prepare connattractor"): "downloads from PyPI (tests/test_samples.py, marked network)",
    ("pretraining.md", "data.path=/data/ukb_store"): TORCHRUN + " on a user's UK Biobank store",
    ("pretraining.md", "--out runs/ukb ..."): "two nodes (and `...` stands for the rest of the line)",
    ("downstream.md", "--data ukb --out ukb.npy"): CHECKPOINT,
    ("downstream.md", "--data hcpa --label sex"): CHECKPOINT,
    ("fmriprep.md", "validate derivatives/fmriprep"): ATLAS,
    ("fmriprep.md", "--confounds simple --out stores/mine"): ATLAS,
    ("fmriprep.md", "--out stores/mine_cifti"): ATLAS,
    ("fmriprep.md", "--out stores/mine/emb.parquet"): CHECKPOINT,
    ("fmriprep.md", "--out stores/mine/emb.npy"): CHECKPOINT,
    ("fmriprep.md", "--windows 3 --pad --out probes/diagnosis"): CHECKPOINT,
    ("fmriprep.md", "--target-tr 2.2 --pad --out probes/diagnosis"): CHECKPOINT,
    ("evaluation.md", "--model runs/quickstart"): QUICKSTART,
    ("hub.md", "embed --model org/name"): HUB,
    ("hub.md", "probe --data stores/mine --label diagnosis --model org/name"): HUB,
    ("hub.md", "finetune --model org/name"): HUB,
    ("official_model.md", "--file sub-01_task-rest"): CHECKPOINT + "; tests/test_model_record.py embeds an fMRIPrep "
    "run with --file",
}


# ------------------------------------------------------------------------------------- the user's files
def _user_runs(ws: Path) -> None:
    """data/: one [R, T] .npy per subject with BIDS names, as `validate data/` / `prepare data/` expect."""
    config = SimulationConfig(subjects=USER_SUBJECTS, rois=USER_ROIS, frames=USER_FRAMES, tr=0.735, seed=1)
    (ws / "data").mkdir()
    for i, (bold, _) in enumerate(simulate_bold(config, progress=False), start=1):
        np.save(ws / "data" / f"sub-{i:02d}_task-rest_run-1_bold.npy", bold)


def _participants(ws: Path) -> None:
    rows = [f"sub-{i:02d}\t{40 + i}\t{'FM'[i % 2]}" for i in range(1, USER_SUBJECTS + 1)]
    (ws / "participants.tsv").write_text("participant_id\tage\tsex\n" + "\n".join(rows) + "\n")


def _other_modality(name: str) -> Callable[[Path], None]:
    """[N, 8] features paired row by row with the N = SUBJECTS embeddings of the simulated store."""
    return lambda ws: np.save(ws / name, np.random.default_rng(0).standard_normal((SUBJECTS, 8)))


def _store(name: str) -> Callable[[Path], None]:
    return lambda ws: simulate_store(ws / name, SimulationConfig(subjects=SUBJECTS, seed=2), progress=False)


def _group_fc(ws: Path) -> None:
    ts = next(simulate_bold(SimulationConfig(subjects=1, rois=USER_ROIS), progress=False))[0]
    np.savetxt(ws / "group_fc.csv", np.corrcoef(ts), delimiter=",")


# doc -> (the doc whose finished folder it starts from, the user's files written before it runs)
SESSIONS: dict[str, tuple[str | None, tuple[Callable[[Path], None], ...]]] = {
    "README.md": (None, (_other_modality("other_modality.npy"), _user_runs, _participants)),
    "pretraining.md": (None, ()),
    "downstream.md": ("pretraining.md", ()),  # runs/small and sim from pretraining.md
    "multimodal.md": ("pretraining.md", (_other_modality("other.npy"),)),
    "gradients.md": (None, (_store("stores/mydata"), _group_fc)),
    "data.md": (None, (_user_runs, _participants)),
    "samples.md": (None, ()),
    "evaluation.md": ("README.md", ()),  # runs/sim from the README's typical session
    "official_model.md": (None, ()),  # info --weights
}


# ------------------------------------------------------------------------------------------------ helpers
def _skip_reason(doc: str, line: str) -> str | None:
    return next((why for (d, text), why in SKIP.items() if d == doc and text in line), None)


def scaled(line: str) -> list[str]:
    """The documented line with only the sizes changed (SIZES, then APPEND after the line's own arguments)."""
    for old, new in SIZES.items():
        line = line.replace(old, new)
    args = shlex.split(line)
    extra = [more for key, more in APPEND.items() if key in args]
    # pretrain's KEY=VALUE overrides are one positional list: extend it where it is, before any flag after it
    at = max((i + 1 for i, a in enumerate(args) if "=" in a and not a.startswith("-")), default=len(args))
    args[at:at] = shlex.split(" ".join(extra))
    return args


def _run(ws: Path, doc: str, line: str) -> None:
    args = scaled(line)
    offline = {**os.environ, "HF_HUB_OFFLINE": "1", "PIP_NO_INDEX": "1"}  # a subprocess escapes conftest's guard
    proc = subprocess.run([sys.executable, "-m", "brainjepa", *args], cwd=ws, env=offline, capture_output=True,
                          text=True, timeout=600)
    tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
    ran = shlex.join(args)
    assert proc.returncode == 0, f"{doc}: `brainjepa {line}` (run as `{ran}`) exit {proc.returncode}:\n{tail}"
    if "--out" in args:
        out = ws / args[args.index("--out") + 1]
        assert out.exists(), f"{doc}: `brainjepa {line}` exited 0 but wrote no {out.name}"


@functools.cache
def _session(doc: str, root: Path) -> Path:
    """Run `doc`'s lines in a folder of their own (a copy of the session it builds on); cached per test run."""
    base, inputs = SESSIONS[doc]
    ws = root / doc.removesuffix(".md")
    if base is None:
        ws.mkdir()
        shutil.copytree(ROOT / "configs", ws / "configs")
    else:
        shutil.copytree(_session(base, root), ws)
    for write in inputs:
        write(ws)
    for line in command_lines(next(p for p in DOCS if p.name == doc)):
        if _skip_reason(doc, line) is None:
            _run(ws, doc, line)
    return ws


@pytest.fixture(scope="module")
def sessions_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("docs_run")


# -------------------------------------------------------------------------------------------------- tests
def test_every_documented_line_is_run_or_skipped():
    lines = {(p.name, line) for p in DOCS for line in command_lines(p)}
    unplaced = [f"{d}: brainjepa {line}" for d, line in sorted(lines)
                if d not in SESSIONS and _skip_reason(d, line) is None]
    assert not unplaced, "documented lines neither run (SESSIONS) nor skipped (SKIP):\n" + "\n".join(unplaced)
    for (doc, text), _ in SKIP.items():
        hits = [line for d, line in lines if d == doc and text in line]
        assert hits, f"SKIP entry ({doc}, {text!r}) matches no documented line: remove it"
    assert set(SESSIONS) <= {p.name for p in DOCS}


def test_scaling_changes_only_sizes():
    assert scaled("simulate --out sim --subjects 200 --rois 100") == ["simulate", "--out", "sim", "--subjects", "12",
                                                                      "--rois", "100"]
    args = scaled("pretrain --config c.yaml --out r data.path=sim --resume")
    assert args[:5] == ["pretrain", "--config", "c.yaml", "--out", "r"] and args[-1] == "--resume"
    assert args[5] == "data.path=sim" and "optimization.max_steps=2" in args


@pytest.mark.slow  # ~25 commands, each a fresh interpreter importing torch: minutes on 2 busy cores
@pytest.mark.parametrize("doc", list(SESSIONS))
def test_documented_session_runs(doc, sessions_root):
    ws = _session(doc, sessions_root)
    assert any(ws.iterdir())
