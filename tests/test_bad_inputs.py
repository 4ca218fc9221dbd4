"""Bad input to every command ends in one clear line, a non-zero exit code and no change to any existing file.

One table of cases (`CASES`) across validate, prepare, pretrain, embed, probe, finetune and model loading. Each case
builds its inputs in tmp_path (beside a shared tiny store and tiny model), runs `brainjepa.cli.main` in-process and
checks: the exit code; exactly one non-empty line on stderr (for `validate`'s data problems: one problem line on
stdout before the summary) that contains the expected text (the file, subject, key or flag) and no traceback;
that no file that existed before changed (size, mtime, bytes); and that a new --out path was not created.
Unreadable input files for validate/prepare are covered, through the CLI, by tests/test_bad_inputs_data.py.
Cases of issue 10 that are not implemented yet are strict xfails, so that they are flipped when they are.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from brainjepa import BrainJEPA
from brainjepa.cli import build_parser, main
from brainjepa.config import load_config
from brainjepa.data.store import RunStore, StoreWriter
from brainjepa.data.windows import WindowSpec, take_window
from brainjepa.errors import CheckpointError, DataError
from brainjepa.evaluation import finetune, labels, probe
from brainjepa.evaluation.embed import embed
from conftest import tiny_model

R, FRAMES, SUBJECTS = 8, 64, 12  # shared store: ROIs, frames per run, one run per subject
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of CUDA where there is none")
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- shared inputs
def _tiny_model(rois: int = R, seed: int = 0) -> BrainJEPA:
    return tiny_model(rois, seed=seed, patch_size=16, embed_dim=16, pred_embed_dim=8)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A store whose label columns are each bad in one way (group and score are good), a tiny model, the same
    model with one NaN weight, and a gradient CSV for pretraining."""
    root = tmp_path_factory.mktemp("shared")
    rng = np.random.default_rng(0)
    with StoreWriter(root / "store", R) as writer:
        for s in range(SUBJECTS):
            writer.add(rng.standard_normal((R, FRAMES)), subject=f"s{s}", tr=2.0, phenotypes={
                "group": s % 2, "score": 1.5 * s + 0.25, "empty": None, "inf_val": np.inf if s == 3 else float(s),
                "text": "abc"[s % 3], "single": 1, "few": float(s) if s < 2 else None,
                "huge": 1e39 if s == 5 else float(s), "uniq": f"c{s}"})
    np.savetxt(root / "grad.csv", rng.standard_normal((R, 3)), delimiter=",")
    model = _tiny_model()
    model.save_pretrained(root / "model")
    with torch.no_grad():
        model.target_encoder.blocks[0].attn.qkv.weight[0, 0] = float("nan")
    model.save_pretrained(root / "nan_model")
    env = Env(root / "unused", root)
    assert main(env.pretrain(out=root / "run")) == 0  # a finished run (3 steps) that cases must leave alone
    return root


@dataclass
class Env:
    """Where a case builds its inputs (`tmp`) and the shared store and models it may point at."""

    tmp: Path
    shared: Path

    @property
    def store(self) -> str:
        return str(self.shared / "store")

    @property
    def model(self) -> str:
        return str(self.shared / "model")

    def path(self, name: str) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def text(self, name: str, content: str | bytes) -> str:
        path = self.path(name)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return str(path)

    def runs(self, *arrays: np.ndarray, folder: str = "in", names: tuple[str, ...] = ()) -> str:
        """A folder of .npy runs sub-00.npy, sub-01.npy, ... (or `names`)."""
        for i, ts in enumerate(arrays):
            np.save(self.path(f"{folder}/{names[i] if names else f'sub-{i:02d}.npy'}"), ts)
        return str(self.tmp / folder)

    def good_runs(self, n: int = 3, frames: int = 40) -> str:
        rng = np.random.default_rng(1)
        return self.runs(*(rng.standard_normal((R, frames)) for _ in range(n)))

    def small_store(self, name: str, runs: list[tuple[str, np.ndarray]], tr: float | None = 2.0) -> str:
        with StoreWriter(self.path(name), runs[0][1].shape[0]) as writer:
            for subject, ts in runs:
                writer.add(ts, subject=subject, tr=tr)
        return str(self.tmp / name)

    def model_dir(self, name: str, rois: int = R) -> Path:
        return _tiny_model(rois).save_pretrained(self.path(name))

    def embeddings(self, emb: np.ndarray, subjects: list[str], *, sidecar: bool = True) -> str:
        path = self.path("emb.npy")
        np.save(path, emb)
        if sidecar:
            self.text("emb.npy.index.csv", "subject,run\n" + "".join(f"{s},1\n" for s in subjects))
        return str(path)

    # command lines -------------------------------------------------------------------------------------------
    def validate(self, *args: str) -> list[str]:
        return ["validate", *args]

    def prepare(self, *args: str) -> list[str]:
        return ["prepare", *args, "--no-progress"]

    def pretrain(self, *overrides: str, flags: tuple[str, ...] = (), out: Path | None = None) -> list[str]:
        base = [f"data.path={self.store}", f"data.crop_size=[{R},{FRAMES}]", "data.batch_size=4",
                "data.num_workers=0", "data.sampling_rate=1", "data.pin_mem=false",
                f"data.gradient_csv_path={self.shared / 'grad.csv'}", "data.gradient_components=3",
                "mask.patch_size=16", "meta.model_name=vit_tiny", "meta.embed_dim=16", "meta.depth=1",
                "meta.num_heads=2", "meta.pred_emb_dim=8", "meta.pred_depth=1", "meta.use_bfloat16=false",
                "meta.accumulation_steps=1", "optimization.epochs=1", "optimization.warmup=0"]
        return ["pretrain", "--out", str(out or self.tmp / "run"), *flags, *base, *overrides]

    def embed(self, *args: str, model: str | None = None, data: str | None = None) -> list[str]:
        return ["embed", "--model", model or self.model, "--data", data or self.store, "--out",
                str(self.tmp / "emb_out.npy"), "--no-progress", *args]

    def probe(self, label: str, *args: str, model: str | None = None) -> list[str]:
        source = ["--model", model or self.model] if "--embeddings" not in args else []
        return ["probe", "--data", self.store, "--label", label, *source, "--folds", "3", "--seeds", "1",
                "--no-progress", *args]

    def finetune(self, label: str, *args: str, model: str | None = None, data: str | None = None) -> list[str]:
        return ["finetune", "--model", model or self.model, "--data", data or self.store, "--label", label,
                "--out", str(self.tmp / "ft"), "--folds", "3", "--no-progress", *args]


# ------------------------------------------------------------------------------------------------ case helpers
def _evil_checkpoint(env: Env) -> str:
    """A .pth.tar whose unpickling would create tmp/pwned: it must be refused, never executed."""

    class Evil:
        def __reduce__(self):
            return os.mkdir, (str(env.tmp / "pwned"),)

    path = env.path("evil.pth.tar")
    torch.save({"encoder": Evil()}, path)
    return str(path)


def _copied_run(env: Env, checkpoints: str) -> None:
    """tmp/run: a copy of the shared finished run with no checkpoint left ("none") or every file of every
    checkpoint overwritten with garbage ("corrupt")."""
    run = env.tmp / "run"
    shutil.copytree(env.shared / "run", run)
    if checkpoints == "none":
        shutil.rmtree(run / "checkpoints")
    else:
        for path in (run / "checkpoints").rglob("*"):
            if path.is_file():
                path.write_bytes(b"garbage")


def _nan_run(seed: int = 0) -> np.ndarray:
    ts = np.random.default_rng(seed).standard_normal((R, 40))
    ts[2, 5] = np.nan
    return ts


def _json_edit(env: Env, edit: Callable[[dict], None]) -> str:
    """A saved model folder whose config.json record was changed by `edit`."""
    folder = env.model_dir("edited")
    record = json.loads((folder / "config.json").read_text())
    edit(record)
    (folder / "config.json").write_text(json.dumps(record))
    return str(folder)


def _embed_file(env: Env, name: str, where: tuple, value: float) -> list[str]:
    """embed --file on one 40-frame run with `value` at `where` (the model's centre window is frames 4-35)."""
    ts = np.random.default_rng(4).standard_normal((R, 40))
    ts[where] = value
    np.save(env.path(name), ts)
    return ["embed", "--model", env.model, "--file", str(env.path(name)), "--out", str(env.tmp / "f.npy"),
            "--no-progress"]


def _under_a_file(env: Env) -> str:
    return env.text("f.txt", "x") + "/out"


def _huge_store(env: Env) -> str:
    """Finite float32 values so large that an un-normalised forward pass overflows for subject h2 only."""
    rng = np.random.default_rng(3)
    runs = [(f"h{s}", rng.standard_normal((R, 40)).astype(np.float32)) for s in range(4)]
    runs[2] = ("h2", np.clip(runs[2][1], -1, 1) * np.float32(3e38))
    return env.small_store("huge_store", runs)


@dataclass(frozen=True)
class Case:
    """One bad input: the command line it builds, the text its message must contain, the exit code."""

    argv: Callable[[Env], list[str]]
    expect: str | tuple[str, ...]  # text(s) the message line must contain
    code: int = 2
    after: Callable[[Env], None] | None = None  # extra check after the command (e.g. nothing executed)


def case(id: str, argv: Callable[[Env], list[str]], expect: str | tuple[str, ...], code: int = 2, *, marks=(),
         after=None):
    return pytest.param(Case(argv, expect, code, after), id=id, marks=marks)


def _nothing_executed(env: Env) -> None:
    assert not (env.tmp / "pwned").exists(), "the checkpoint's pickle ran code"


def G(shape: tuple[int, int]) -> np.ndarray:
    """A random run (the same for every case and order)."""
    return np.random.default_rng(2).standard_normal(shape)


CASES = [
    # --- validate: usage errors (stderr, exit 2) and data problems (one stdout line, exit 1) ---
    case("validate-missing-path", lambda e: e.validate(str(e.tmp / "nope")), "nope: no such file or directory"),
    case("validate-no-series", lambda e: e.validate(_folder(e, "docs", "readme.md")), "no time series found"),
    case("validate-unsupported-type", lambda e: e.validate(e.text("x.xlsx", "a")), "unsupported file type"),
    case("validate-nan", lambda e: e.validate(e.runs(_nan_run()), "--rois", "8"), "1 NaN and 0 Inf values in ROI 2",
         code=1),
    case("validate-wrong-rois", lambda e: e.validate(e.runs(G((9, 40))), "--rois", "8", "--orientation",
                                                     "rois-x-time"), "wrong ROI count: 9 (expected 8)", code=1),
    case("validate-constant-roi", lambda e: e.validate(e.runs(np.vstack([G((7, 40)), np.ones((1, 40))])),
                                                       "--rois", "8"), "constant ROI 7", code=1),
    case("validate-too-few-frames", lambda e: e.validate(e.good_runs(1), "--rois", "8", "--frames", "100"),
         "too few frames: 40 (need at least 100)", code=1),
    case("validate-rois-0", lambda e: e.validate(e.good_runs(1), "--rois", "0"), "--rois must be at least 1"),
    case("validate-negative-tr", lambda e: e.validate(e.good_runs(1), "--tr", "-1"), "--tr must be a positive"),
    case("validate-workers-0", lambda e: e.validate(e.good_runs(1), "--workers", "0"), "--workers must be at least"),
    case("validate-fmriprep-flag-alone", lambda e: e.validate(e.good_runs(1), "--task", "rest"), "add --fmriprep"),
    case("validate-table-flags-with-fmriprep", lambda e: e.validate(e.good_runs(1), "--fmriprep", "--no-header",
                                                                    "--orientation", "rois-x-time"),
         "--orientation, --no-header: only for tables and arrays, and fMRIPrep derivatives are images; remove them"),
    case("prepare-subject-column-alone", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--subject-column", "id",
                                                             "--out", str(e.tmp / "s")),
         "--subject-column names a column of --phenotypes, and none is given"),
    # --- prepare ---
    case("prepare-store-exists", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--out", e.store),
         "a store already exists here"),
    case("prepare-out-is-a-file", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--out", e.text("f.txt", "x")),
         "exists and is not a directory"),
    case("prepare-bad-run", lambda e: e.prepare(e.runs(G((R, 40)), _nan_run()), "--rois", "8", "--out",
                                                str(e.tmp / "st")), "sub-01.npy: 1 NaN"),
    case("prepare-all-bad-skip-bad", lambda e: e.prepare(e.runs(_nan_run()), "--rois", "8", "--skip-bad", "--out",
                                                         str(e.tmp / "st")), "no usable runs"),
    case("prepare-roi-count-differs", lambda e: e.prepare(e.runs(G((R, 40)), G((R + 1, 40))), "--orientation",
                                                          "rois-x-time", "--out", str(e.tmp / "st")),
         "sub-01.npy: wrong ROI count: 9 (the first run has 8)"),
    case("prepare-duplicate-ids", lambda e: e.prepare(e.runs(G((R, 40)), G((R, 40)), names=("sub-01.npy",
                                                      "sub-01_bold.npy")), "--rois", "8", "--out",
                                                      str(e.tmp / "st")),
         "sub-01_bold.npy: duplicate run: subject 01, run 1 is also in"),
    case("prepare-frames-0", lambda e: e.prepare(e.good_runs(), "--frames", "0", "--out", str(e.tmp / "st")),
         "--frames must be at least 1"),
    case("phenotypes-missing-file", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
                                                        str(e.tmp / "p.csv"), "--out", str(e.tmp / "st")), "p.csv"),
    case("phenotypes-no-subject-column", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.csv", "who,age\n00,1\n"), "--out", str(e.tmp / "st")), "p.csv: no subject column"),
    case("phenotypes-unknown-subject-column", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.csv", "subject,age\n00,1\n"), "--subject-column", "who", "--out", str(e.tmp / "st")),
         "no subject column 'who'"),
    case("phenotypes-duplicate-subjects", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.csv", "subject,age\n00,1\n00,2\n"), "--out", str(e.tmp / "st")), "duplicate rows for 00"),
    case("phenotypes-match-no-run", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.tsv", "participant_id\tage\nsub-1001\t50\nsub-1002\t60\n"), "--out", str(e.tmp / "st")),
         "no phenotype row matches any run (joined on participant_id); runs: 00, 01, 02; table: 1001, 1002"),
    case("phenotypes-ids-without-leading-zeros", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.csv", "subject,age\n00,30\n1,40\n2,50\n"), "--out", str(e.tmp / "st")),
         "p.csv: 2 run id(s) appear in the table only with other leading zeros (01 as 1, 02 as 2); write the "
         "table's ids as the runs' are"),
    case("phenotypes-semicolons", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.csv", "subject;age\n00;30,5\n"), "--out", str(e.tmp / "st")),
         "p.csv: one column 'subject;age': the table is separated by semicolons, not commas; save it with commas "
         "(.csv) or tabs (.tsv)"),
    case("phenotypes-clash-with-manifest", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.csv", "subject,offset\n00,1\n"), "--out", str(e.tmp / "st")), "clash with manifest columns"),
    case("phenotypes-empty-file", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.csv", ""), "--out", str(e.tmp / "st")), "p.csv: unreadable phenotype file"),
    case("phenotypes-ragged", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.csv", "subject,age\n00,1\n01,2,3,4\n"), "--out", str(e.tmp / "st")),
         "p.csv: unreadable phenotype file"),
    case("phenotypes-blank-subject", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
         e.text("p.csv", "subject,age\n00,1\n,2\n"), "--out", str(e.tmp / "st")),
         "1 rows have no subject id in column 'subject' (first: data row 2)"),
    # --- pretrain: refused before training ---
    case("pretrain-unknown-key", lambda e: e.pretrain("optimization.foo=1"), "unknown config key optimization.foo"),
    case("pretrain-ill-typed-key", lambda e: e.pretrain("optimization.epochs=abc"),
         "config key optimization.epochs has value 'abc'"),
    case("pretrain-unknown-section", lambda e: e.pretrain("foo.bar=1"), "unknown config section 'foo'"),
    case("pretrain-override-without-value", lambda e: e.pretrain("optimization.epochs"),
         "must look like section.key=value"),
    case("pretrain-data-path-missing", lambda e: e.pretrain(f"data.path={e.tmp / 'nostore'}"),
         "nostore: no such store directory"),
    case("pretrain-crop-roi-mismatch", lambda e: e.pretrain(f"data.crop_size=[9,{FRAMES}]"),
         "store has 8 ROIs but model.num_rois (data.crop_size; leave it out to take the store's) expects 9"),
    case("pretrain-crop-malformed", lambda e: e.pretrain("data.crop_size=[8]"), "expected [ROIs, frames]"),
    case("pretrain-gradient-rows", lambda e: e.pretrain(f"data.gradient_csv_path={_gradient_csv(e, 3, rows=2)}"),
         "g2x3.csv: 2 rows but the model has 8 ROIs"),
    case("pretrain-gradient-components", lambda e: e.pretrain(f"data.gradient_csv_path={_gradient_csv(e, 5)}"),
         "has 5 gradient components but model.gradient_dim is 3"),
    case("pretrain-gradient-missing", lambda e: e.pretrain(f"data.gradient_csv_path={e.tmp / 'nog.csv'}"),
         "nog.csv"),
    case("pretrain-config-missing", lambda e: e.pretrain(flags=("--config", str(e.tmp / "no.yaml"))),
         "no.yaml: no such config file; cannot read config"),
    case("pretrain-config-bad-yaml", lambda e: e.pretrain(flags=("--config", e.text("c.yaml", "data: [1,\n"))),
         "c.yaml: cannot read config"),
    case("pretrain-config-binary", lambda e: e.pretrain(flags=("--config", e.text("c.yaml", b"\x00\xff\xfe"))),
         "c.yaml: cannot read config"),
    case("pretrain-config-not-a-mapping", lambda e: e.pretrain(flags=("--config", e.text("c.yaml", "- 1\n"))),
         "c.yaml: a config must be a mapping"),
    case("pretrain-config-unknown-key", lambda e: e.pretrain(flags=("--config", e.text("c.yaml",
                                                             "data:\n  foo: 1\n"))), "unknown config key data.foo"),
    case("pretrain-read-checkpoint-without-load", lambda e: e.pretrain(f"meta.read_checkpoint={e.model}"),
         "meta.read_checkpoint is set but meta.load_checkpoint is false"),
    case("pretrain-warm-start-nan-weights", lambda e: e.pretrain(
        "meta.load_checkpoint=true", f"meta.read_checkpoint={e.shared / 'nan_model'}"), "weights are not finite"),
    case("pretrain-warm-start-missing", lambda e: e.pretrain(
        "meta.load_checkpoint=true", f"meta.read_checkpoint={e.tmp / 'nomodel'}"), "nomodel"),
    case("pretrain-bad-normalization", lambda e: e.pretrain("data.normalization=bogus"),
         "config key data.normalization has value 'bogus'"),
    case("pretrain-bad-short-runs", lambda e: e.pretrain("data.short_runs=bogus"),
         "config key data.short_runs has value 'bogus'"),
    case("pretrain-unknown-model-name", lambda e: e.pretrain("meta.model_name=vit_nope"), "meta.model_name"),
    case("pretrain-mask-overlap", lambda e: e.pretrain("mask.allow_overlap=true"), "is not supported"),
    case("pretrain-write-tag-path", lambda e: e.pretrain("logging.write_tag=a/b"), "plain folder name"),
    case("pretrain-run-exists", lambda e: e.pretrain(out=e.shared / "run"),
         "already holds a run; continue it (resume=True, --resume)"),
    case("pretrain-resume-changed-config", lambda e: e.pretrain("optimization.lr=0.5", flags=("--resume",),
                                                                out=e.shared / "run"), "cannot resume"),
    case("pretrain-negative-lr", lambda e: e.pretrain("optimization.lr=-1"), "optimization.lr"),
    case("pretrain-ema-above-1", lambda e: e.pretrain("optimization.ema=[1.5,1]"), "optimization.ema"),
    case("pretrain-epochs-0", lambda e: e.pretrain("optimization.epochs=0"), "optimization.epochs"),
    case("pretrain-batch-size-0", lambda e: e.pretrain("data.batch_size=0"), "data.batch_size"),
    case("pretrain-checkpoint-every-0", lambda e: e.pretrain("logging.checkpoint_every=0"),
         "logging.checkpoint_every"),
    case("pretrain-cuda-without-cuda", lambda e: e.pretrain("meta.device=cuda"), "meta.device", marks=NO_CUDA),
    case("pretrain-resume-without-run", lambda e: e.pretrain(flags=("--resume",)), "--resume"),
    case("pretrain-resume-before-first-checkpoint", lambda e: _copied_run(e, "none") or e.pretrain(
        flags=("--resume",)), "nothing to resume"),
    case("pretrain-resume-every-checkpoint-corrupt", lambda e: _copied_run(e, "corrupt") or e.pretrain(
        flags=("--resume",)), "no usable checkpoint"),
    case("pretrain-runs-shorter-than-window", lambda e: e.pretrain(f"data.crop_size=[{R},{2 * FRAMES}]"),
         "data.short_runs=pad"),
    # --- model loading (through embed --model) ---
    case("load-missing-model", lambda e: e.embed(model=str(e.tmp / "nomodel")), "nomodel: no such model folder"),
    case("load-empty-folder", lambda e: e.embed(model=_folder(e, "m")), "not a brainjepa model folder"),
    case("load-garbage-weights", lambda e: e.embed(model=_model_with(e, "model.safetensors", b"garbage")),
         "cannot read brainjepa model"),
    case("load-config-not-json", lambda e: e.embed(model=_model_with(e, "config.json", b"{not json")),
         "cannot read brainjepa model"),
    case("load-config-wrong-format", lambda e: e.embed(model=_json_edit(e, lambda r: r.update(format="other"))),
         "not a brainjepa model record"),
    case("load-config-weights-mismatch", lambda e: e.embed(model=_json_edit(e, lambda r: r["model"].update(depth=2))),
         "weights do not match the model"),
    case("load-nan-weights", lambda e: e.embed(model=str(e.shared / "nan_model")),
         "model.safetensors: weights are not finite: tensor target_encoder.blocks.0.attn.qkv.weight"),
    case("load-checkpoint-without-gradient", lambda e: e.embed(model=e.text("c.pth.tar", b"x")),
         "needs its gradient CSV (gradient=, --gradient)"),
    case("load-folder-with-gradient", lambda e: e.embed("--gradient", str(e.shared / "grad.csv")),
         "gradient= (--gradient): for an official jepa-ep*.pth.tar only; "),
    case("load-checkpoint-runs-no-pickle-code", lambda e: e.embed("--gradient", str(e.shared / "grad.csv"),
                                                                  model=_evil_checkpoint(e)),
         "evil.pth.tar: cannot read checkpoint", after=_nothing_executed),
    case("load-checkpoint-garbage", lambda e: e.embed("--gradient", str(e.shared / "grad.csv"),
                                                      model=e.text("c.pth.tar", os.urandom(64))),
         "c.pth.tar: cannot read checkpoint"),
    case("load-checkpoint-not-brainjepa", lambda e: e.embed("--gradient", str(e.shared / "grad.csv"),
                                                            model=_torch_file(e, {"state": torch.zeros(2)})),
         "not a Brain-JEPA checkpoint (missing encoder, predictor)"),
    case("load-gradient-nan", lambda e: e.embed("--gradient", e.text("g.csv", "1,2\nnan,3\n"),
                                                model=e.text("c.pth.tar", b"x")), "g.csv: 1 NaN/Inf values"),
    case("load-gradient-missing", lambda e: e.embed("--gradient", str(e.tmp / "nog.csv"),
                                                    model=e.text("c.pth.tar", b"x")), "nog.csv: file not found"),
    # --- embed ---
    case("embed-missing-store", lambda e: e.embed(data=str(e.tmp / "nostore")), "nostore: no such store"),
    case("embed-roi-mismatch", lambda e: e.embed(model=str(e.model_dir("m6", rois=6))),
         "has 8 ROIs but the model expects 6"),
    case("embed-bad-suffix", lambda e: ["embed", "--model", e.model, "--data", e.store, "--out",
                                        str(e.tmp / "e.txt")], "written to .npy or .parquet, not '.txt'"),
    case("embed-parquet-roi-pooling", lambda e: ["embed", "--model", e.model, "--data", e.store, "--out",
                                                 str(e.tmp / "e.parquet"), "--pooling", "roi"],
         "parquet holds [N, D] embeddings only"),
    case("embed-short-run", lambda e: e.embed(data=e.small_store("short", [("a", G((R, 40))), ("b", G((R, 20)))])),
         ("subject 'b' run '1'", "run has 20 frames but a 32-frame window at stride 1 needs 32; repeat its last "
          "frame", "--pad (embed, probe, finetune)")),
    case("embed-non-finite-output", lambda e: e.embed("--normalization", "none", data=_huge_store(e)),
         "non-finite embeddings for 1 of 4 runs (subject 'h2' run '1'); nothing is written"),
    # a bad value is named where it is (as validate names it), wherever the window falls
    case("embed-file-nan", lambda e: _embed_file(e, "nan.npy", (3, 20), np.nan),
         "nan.npy: 1 NaN and 0 Inf values in ROI 3"),
    case("embed-file-inf-outside-the-window", lambda e: _embed_file(e, "inf.npy", (5, 0), np.inf),
         "inf.npy: 0 NaN and 1 Inf values in ROI 5"),
    case("embed-file-constant-roi", lambda e: _embed_file(e, "const.npy", (7, slice(None)), 1.0),
         "const.npy: constant ROI 7"),
    case("embed-target-tr-without-tr", lambda e: e.embed("--target-tr", "1.0", data=e.small_store(
        "no_tr", [("a", G((R, 40)))], tr=None)), "run has no TR"),
    case("embed-layer-out-of-range", lambda e: e.embed("--layer", "5"), "--layer must be in [-1, 1)"),
    case("embed-windows-0", lambda e: e.embed("--windows", "0"), "--windows must be an integer >= 1, got 0"),
    case("embed-sampling-rate-0", lambda e: e.embed("--sampling-rate", "0"),
         "--sampling-rate must be an integer >= 1, got 0"),
    case("embed-mask-keep-0", lambda e: e.embed("--masked-views", "2", "--mask-keep", "0"),
         "--mask-keep must be a number > 0 and <= 1, got 0.0"),
    case("embed-batch-size-0", lambda e: e.embed("--batch-size", "0"), "--batch-size must be an integer >= 1"),
    case("embed-cuda-without-cuda", lambda e: e.embed("--device", "cuda"), "--device cuda: CUDA is not available",
         marks=NO_CUDA),
    case("embed-bad-device", lambda e: e.embed("--device", "gpu7"), "--device 'gpu7' is not a torch device"),
    # --- probe: every bad label is refused before any embedding ---
    case("probe-unknown-label", lambda e: e.probe("nope"), "no phenotype column 'nope'"),
    case("probe-all-missing-label", lambda e: e.probe("empty"), "label 'empty' has no values: all 12 runs"),
    case("probe-infinite-label", lambda e: e.probe("inf_val"), "label 'inf_val' has 1 non-finite value (inf) in "
         "subjects s3"),
    case("probe-text-regression", lambda e: e.probe("text", "--task", "regression"),
         "regression label 'text' has non-numeric values 'a', 'b', 'c' (subjects s0, s1, s2)"),
    case("probe-single-class", lambda e: e.probe("single"), "label 'single' has a single class [1]"),
    case("probe-too-few-subjects", lambda e: e.probe("few"), "label 'few': 2 groups (subjects) cannot make 3 folds"),
    case("probe-huge-label", lambda e: e.probe("huge", "--task", "regression"), "beyond the float32 range"),
    case("probe-unknown-groups", lambda e: e.probe("group", "--groups", "site"), "no phenotype column 'site'"),
    case("probe-folds-1", lambda e: e.probe("group", "--folds", "1"), "folds (--folds) must be an integer >= 2"),
    case("probe-seeds-0", lambda e: e.probe("group", "--seeds", "0"), "seeds (--seeds) must be an integer >= 1"),
    case("probe-nan-model", lambda e: e.probe("group", model=str(e.shared / "nan_model")), "weights are not finite"),
    case("probe-cuda-without-cuda", lambda e: e.probe("group", "--device", "cuda"), "CUDA is not available",
         marks=NO_CUDA),
    case("probe-embeddings-missing", lambda e: e.probe("group", "--embeddings", str(e.tmp / "no.npy")),
         "no.npy: no such embeddings file"),
    case("probe-embeddings-no-sidecar", lambda e: e.probe("group", "--embeddings", e.embeddings(
        np.zeros((2, 4), np.float32), ["s0", "s1"], sidecar=False)), "index sidecar emb.npy.index.csv is missing"),
    case("probe-embeddings-unknown-runs", lambda e: e.probe("group", "--embeddings", e.embeddings(
        np.zeros((1, 4), np.float32), ["ghost"])), "1 embedding rows match no run"),
    case("probe-embeddings-non-finite", lambda e: e.probe("group", "--embeddings", e.embeddings(
        np.array([[0, 1], [np.nan, 1]], np.float32), ["s0", "s1"])),
         "holds 1 rows of non-finite embeddings (first: subject 's1' run '1')"),
    case("probe-embeddings-corrupt", lambda e: e.probe("group", "--embeddings", _corrupt_embeddings(e)),
         "emb.npy: cannot read embeddings"),
    # --- finetune: bad labels and settings are refused before any training ---
    # --- an output that cannot be written: refused before any work, naming --out ---
    case("finetune-out-under-a-file", lambda e: e.finetune("group", "--out", _under_a_file(e)),
         ("error: --out ", "f.txt is a file, so nothing can be written under it")),
    case("probe-out-under-a-file", lambda e: e.probe("group", "--out", _under_a_file(e)),
         "f.txt is a file, so nothing can be written under it"),
    case("embed-out-under-a-file", lambda e: e.embed("--out", _under_a_file(e) + ".npy"),
         "f.txt is a file, so nothing can be written under it"),
    case("embed-out-is-a-folder", lambda e: e.embed("--out", _folder(e, "d.npy")), "exists and is a folder"),
    case("pretrain-out-under-a-file", lambda e: e.pretrain(out=Path(_under_a_file(e))),
         "f.txt is a file, so nothing can be written under it"),
    case("evaluate-out-is-a-file", lambda e: ["evaluate", "--model", e.model, "--tasks", "simulation/group", "--out",
                                              e.text("f.txt", "x"), "--no-progress"],
         "exists and is a file, not a folder"),
    case("finetune-unknown-label", lambda e: e.finetune("nope"), "no phenotype column 'nope'"),
    case("finetune-all-missing-label", lambda e: e.finetune("empty"), "label 'empty' has no values"),
    case("finetune-infinite-label", lambda e: e.finetune("inf_val"), "label 'inf_val' has 1 non-finite value"),
    case("finetune-text-regression", lambda e: e.finetune("text", "--task", "regression"),
         "regression label 'text' has non-numeric values"),
    case("finetune-single-class", lambda e: e.finetune("single"), "has a single class [1]"),
    case("finetune-too-few-subjects", lambda e: e.finetune("few"), "2 groups (subjects) cannot make 3 folds"),
    case("finetune-huge-label", lambda e: e.finetune("huge", "--task", "regression"), "beyond the float32 range"),
    case("finetune-nan-model", lambda e: e.finetune("group", model=str(e.shared / "nan_model")),
         "weights are not finite"),
    case("finetune-roi-mismatch", lambda e: e.finetune("group", model=str(e.model_dir("m6", rois=6))),
         "store has 8 ROIs but the model expects 6"),
    case("finetune-folds-1", lambda e: e.finetune("group", "--folds", "1"), "--folds must be an integer >= 2"),
    case("finetune-val-fraction", lambda e: e.finetune("group", "--val-fraction", "0.7"),
         "--val-fraction must be a number > 0 and < 0.5, got 0.7"),
    case("finetune-negative-lr", lambda e: e.finetune("group", "--lr", "-1"),
         "--lr must be a number > 0, got -1.0"),
    case("finetune-blr-0", lambda e: e.finetune("group", "--blr", "0"), "--blr must be a number > 0, got 0.0"),
    case("finetune-epochs-0", lambda e: e.finetune("group", "--epochs", "0"),
         "--epochs must be an integer >= 1"),
    case("finetune-batch-size-0", lambda e: e.finetune("group", "--batch-size", "0"),
         "--batch-size must be an integer >= 1"),
    case("finetune-layer-decay-0", lambda e: e.finetune("group", "--layer-decay", "0"),
         "--layer-decay must be a number > 0 and <= 1"),
    case("finetune-drop-path", lambda e: e.finetune("group", "--drop-path", "1.5"),
         "--drop-path must be a number >= 0 and < 1"),
    case("finetune-negative-target-tr", lambda e: e.finetune("group", "--target-tr", "-2"),
         "--target-tr must be a number >= 0.05 and <= 30"),
    case("finetune-cuda-without-cuda", lambda e: e.finetune("group", "--device", "cuda"), "CUDA is not available",
         marks=NO_CUDA),
    case("finetune-lr-too-high", lambda e: e.finetune("score", "--folds", "2", "--lr", "1e6", "--warmup-epochs",
                                                      "0", "--epochs", "2", "--batch-size", "2"),
         ("the labels are finite (standardised with mean", "so the learning rate is likely too high: lower lr "
          "(--lr; now 1e+06)")),
]


# --- issue 19: the second hidden corpus (one case per class at least; more in the tests below) ---
CASES += [
    # values that cannot be meant
    case("validate-tr-in-milliseconds", lambda e: e.validate(e.good_runs(1), "--tr", "720"),
         ("--tr: TR 720 s is outside what scanners use (0.05-30 s)", "--allow-unusual-tr")),
    case("prepare-npz-tr-in-milliseconds", lambda e: e.prepare(_npz_runs(e, tr=720.0), "--rois", "8", "--out",
                                                               str(e.tmp / "st")),
         ("sub-00.npz: the file's TR 720 s is outside what scanners use", "720 ms is 0.72 s")),
    case("embed-target-tr-in-milliseconds", lambda e: e.embed("--target-tr", "720"),
         "--target-tr must be a number >= 0.05 and <= 30, got 720.0"),
    case("quickstart-negative-minutes", lambda e: ["quickstart", "--out", str(e.tmp / "qs"), "--minutes", "-1",
                                                   "--data", "simulated"], "--minutes must be a number > 0, got -1.0"),
    case("quickstart-zero-minutes", lambda e: ["quickstart", "--out", str(e.tmp / "qs"), "--minutes", "0",
                                               "--data", "simulated"], "--minutes must be a number > 0, got 0.0"),
    case("probe-constant-regression-target", lambda e: e.probe("single", "--task", "regression"),
         "label 'single' is constant (1 in all 12 samples): there is nothing to predict"),
    case("finetune-constant-regression-target", lambda e: e.finetune("single", "--task", "regression"),
         "label 'single' is constant (1 in all 12 samples)"),
    case("pretrain-config-duplicate-key", lambda e: e.pretrain(flags=("--config", e.text(
        "c.yaml", "data:\n  batch_size: 4\n  batch_size: 8\n"))),
         "c.yaml: line 3: key data.batch_size is given twice (also on line 2)"),
    case("pretrain-config-duplicate-section", lambda e: e.pretrain(flags=("--config", e.text(
        "c.yaml", "data:\n  batch_size: 4\noptimization:\n  epochs: 1\ndata:\n  batch_size: 8\n"))),
         "c.yaml: line 5: key data is given twice (also on line 1)"),
    # tracebacks left
    case("probe-one-sample-per-class", lambda e: e.probe("uniq"),
         ("label 'uniq': every one of its 12 classes has fewer samples than the 3 folds", "use fewer folds")),
    case("finetune-one-sample-per-class", lambda e: e.finetune("uniq"),
         "label 'uniq': every one of its 12 classes has fewer samples than the 3 folds"),
    case("prepare-fmriprep-na-in-confounds", lambda e: e.prepare(_fmriprep(e, na=True), "--fmriprep", "--atlas",
                                                                 str(e.tmp / "atlas.nii.gz"), "--out",
                                                                 str(e.tmp / "st")),
         ("confounds file sub-01_task-rest_run-1_desc-confounds_timeseries.tsv: column 'trans_x' has 1 n/a",
          "data row 5, line 6")),
    # inputs quietly split
    case("prepare-run-1-and-run-01", lambda e: e.prepare(e.runs(G((R, 40)), G((R, 40)) + 1, names=(
        "sub-01_run-01.npy", "sub-01_run-1.npy")), "--rois", "8", "--out", str(e.tmp / "st")),
         "sub-01_run-1.npy: duplicate run: subject 01, run 1 is also in"),
    # misleading messages
    case("validate-empty-npz", lambda e: e.validate(_empty_npz(e), "--rois", "8"),
         "empty .npz archive (it holds no arrays)", code=1),
    case("validate-value-beyond-float32", lambda e: e.validate(e.text("huge.csv", _huge_csv()), "--rois", "8"),
         "huge.csv: row 4, column 6: value 1e+300 is beyond the float32 range", code=1),
    case("validate-broken-symlink", lambda e: e.validate(_broken_link(e, "sub-09"), "--rois", "8"),
         "sub-09: broken symbolic link (its target", code=1),
    case("pretrain-override-after-out", lambda e: ["pretrain", e.pretrain()[3], "--out", str(e.tmp / "run"),
                                                   *e.pretrain()[4:], "optimization.foo=1"],
         "unknown config key optimization.foo"),
    case("prepare-fmriprep-missing-sidecar", lambda e: e.prepare(_fmriprep(e, sidecar=False), "--fmriprep",
                                                                 "--atlas", str(e.tmp / "atlas.nii.gz"), "--out",
                                                                 str(e.tmp / "st")),
         "no JSON sidecar (sub-01_task-rest_run-1_space-MNI152NLin6Asym_desc-preproc_bold.json is missing)"),
    case("prepare-fmriprep-without-the-flag", lambda e: e.prepare(_fmriprep(e), "--atlas",
                                                                  str(e.tmp / "atlas.nii.gz"), "--out",
                                                                  str(e.tmp / "st")),
         ("deriv: holds fMRIPrep derivatives", "--fmriprep and --atlas")),
    case("load-unfinished-run", lambda e: e.embed(model=_unfinished_run(e)),
         ("run: an unfinished training run (no model/ yet", "the newest is", "checkpoints/step-00000002")),
    case("load-model-broken-symlink", lambda e: e.embed(model=_broken_link(e, "model_link")),
         "model_link: no such model folder or checkpoint file: it is a broken symbolic link (its target"),
    case("embed-store-broken-symlink", lambda e: e.embed(data=_broken_link(e, "store_link")),
         "store_link: no such store directory: it is a broken symbolic link"),
    case("pretrain-config-broken-symlink", lambda e: e.pretrain(flags=("--config", _broken_link(e, "c.yaml"))),
         "c.yaml: no such config file: it is a broken symbolic link"),
    case("phenotypes-broken-symlink", lambda e: e.prepare(e.good_runs(), "--rois", "8", "--phenotypes",
                                                          _broken_link(e, "p.csv"), "--out", str(e.tmp / "st")),
         "p.csv: no such file: it is a broken symbolic link"),
    case("load-checkpoint-carrying-code", lambda e: e.embed("--gradient", str(e.shared / "grad.csv"),
                                                            model=_evil_checkpoint(e)),
         "evil.pth.tar: cannot read checkpoint: it holds Python objects other than tensors (posix.mkdir)",
         after=_nothing_executed),
]


def _npz_runs(env: Env, tr: float) -> str:
    for i in range(2):
        np.savez(env.path(f"npz/sub-{i:02d}.npz"), ts=G((R, 40)) + i, tr=np.float64(tr))
    return str(env.tmp / "npz")


def _empty_npz(env: Env) -> str:
    with open(env.path("empty.npz"), "wb") as fh:
        np.savez(fh)
    return str(env.tmp / "empty.npz")


def _huge_csv() -> str:
    values = G((R, 40))
    values[3, 5] = 1e300
    return "\n".join(",".join(f"{v:.17g}" for v in row) for row in values) + "\n"


def _broken_link(env: Env, name: str) -> str:
    env.path(name).symlink_to(env.tmp / "gone" / name)
    return str(env.tmp / name)


def _unfinished_run(env: Env) -> str:
    """A copy of the shared run as if it had stopped before its end: checkpoints, no model/."""
    shutil.copytree(env.shared / "run", env.tmp / "run")
    shutil.rmtree(env.tmp / "run" / "model")
    return str(env.tmp / "run")


def _fmriprep(env: Env, *, na: bool = False, sidecar: bool = True) -> str:
    """Two subjects of synthetic fMRIPrep derivatives in tmp/deriv and a label atlas tmp/atlas.nii.gz; `na` puts
    an n/a in the middle of sub-01's trans_x confound, `sidecar=False` removes sub-01's JSON sidecar."""
    pytest.importorskip("nilearn")
    from synthetic_derivatives import CTX_NAMES, cortical_volume, write_label_image, write_volume_run

    first = write_volume_run(env.tmp / "deriv", "01", "rest")
    write_volume_run(env.tmp / "deriv", "02", "rest", seed=1)
    write_label_image(cortical_volume(), env.tmp / "atlas.nii.gz", CTX_NAMES)
    if na:
        confounds = first.parent / "sub-01_task-rest_run-1_desc-confounds_timeseries.tsv"
        lines = confounds.read_text().splitlines()
        cells = lines[5].split("\t")
        cells[0] = "n/a"
        lines[5] = "\t".join(cells)
        confounds.write_text("\n".join(lines) + "\n")
    if not sidecar:
        first.with_name(first.name.replace(".nii.gz", ".json")).unlink()
    return str(env.tmp / "deriv")


def _folder(env: Env, name: str, *files: str) -> str:
    """A folder holding only the given (non-time-series) files."""
    (env.tmp / name).mkdir()
    for file in files:
        env.text(f"{name}/{file}", "not a time series")
    return str(env.tmp / name)


def _model_with(env: Env, file: str, content: bytes) -> str:
    """A saved model folder with one of its files replaced by `content`."""
    folder = env.model_dir("m")
    (folder / file).write_bytes(content)
    return str(folder)


def _corrupt_embeddings(env: Env) -> str:
    path = env.embeddings(np.zeros((2, 4), np.float32), ["s0", "s1"])
    Path(path).write_bytes(b"\x93NUMPY garbage")
    return path


def _gradient_csv(env: Env, components: int, rows: int = R) -> str:
    path = env.path(f"g{rows}x{components}.csv")
    np.savetxt(path, np.random.default_rng(0).standard_normal((rows, components)), delimiter=",")
    return str(path)


def _torch_file(env: Env, obj: object) -> str:
    path = env.path("c.pth.tar")
    torch.save(obj, path)
    return str(path)


# --------------------------------------------------------------------------------------------------- the runner
def _snapshot(*roots: Path) -> dict[Path, tuple[int, int, str]]:
    """Size, mtime and hash of every file; a run folder's `.lock` is the lock itself (taken by any command that
    opens the run, then released), not data."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for root in roots for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def _lines(text: str) -> list[str]:
    """Non-empty lines as a terminal shows them (a progress bar redrawn with \\r keeps only its last state)."""
    return [shown for line in text.split("\n") if (shown := line.split("\r")[-1].strip())]


def _out_path(argv: list[str]) -> Path | None:
    return Path(argv[argv.index("--out") + 1]) if "--out" in argv else None


def run_case(c: Case, env: Env, capsys) -> tuple[list[str], str]:
    """Run the case's command; check code, one message line, untouched files; return (argv, the message)."""
    argv = c.argv(env)
    capsys.readouterr()
    before = _snapshot(env.tmp, env.shared)
    out = _out_path(argv)
    out_existed = out is not None and out.exists()
    code = main(argv)
    printed, err = capsys.readouterr()
    assert "Traceback" not in err + printed
    assert "weights_only" not in err + printed  # torch's advice to load unsafely is never relayed
    assert code == c.code, (code, printed, err)
    if c.code == 1:  # validate: the problems on stdout, then one summary line
        lines = _lines(printed)
        assert len(lines) == 2 and re.fullmatch(r"1 problem in 1 of \d+ runs", lines[1]), lines
        assert not _lines(err), err
    else:
        lines = _lines(err)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"brainjepa {argv[0]}: error: "), lines[0]
    for text in (c.expect,) if isinstance(c.expect, str) else c.expect:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    after = _snapshot(env.tmp, env.shared)
    changed = [str(p) for p, stat in before.items() if after.get(p) != stat]
    assert not changed, f"files changed: {changed}"
    if out is not None and not out_existed and argv[0] != "pretrain":  # pretrain: see test_failed_pretrain_...
        assert not out.exists(), f"{out} was created"
    if c.after is not None:
        c.after(env)
    return argv, lines[0]


@pytest.mark.parametrize("c", CASES)
def test_bad_input_is_one_line_and_changes_nothing(c: Case, shared, tmp_path, capsys):
    run_case(c, Env(tmp_path, shared), capsys)


@pytest.mark.parametrize("c", [p for p in CASES if p.id in ("probe-all-missing-label", "load-nan-weights",
                                                             "phenotypes-match-no-run")])
def test_one_line_from_a_real_process(c: Case, shared, tmp_path):
    """The same in a separate process, where log records go to stderr too: a refusal logs nothing before it."""
    argv = c.argv(Env(tmp_path, shared))
    done = subprocess.run([sys.executable, "-m", "brainjepa", *argv], capture_output=True, text=True, timeout=300)
    lines = _lines(done.stderr)
    assert done.returncode == c.code and len(lines) == 1, done.stderr
    assert c.expect in lines[0]


PRETRAIN_CASES = [p for p in CASES if p.id.startswith("pretrain-") and not any(m.name == "xfail" for m in p.marks)]


@pytest.mark.parametrize("c", PRETRAIN_CASES)
def test_failed_pretrain_can_simply_be_run_again(c: Case, shared, tmp_path, capsys):
    """A start that fails leaves nothing that blocks running the same command again (issue 10 item 4)."""
    argv, first = run_case(c, Env(tmp_path, shared), capsys)
    assert main(argv) == c.code
    assert _lines(capsys.readouterr().err) == [first]


# ------------------------------------------------------------------------------------- messages point the right way
def test_no_advice_to_unpickle_untrusted_files():
    """torch.load with weights_only=False runs any code a file holds; nothing may suggest it."""
    files = [*ROOT.joinpath("src").rglob("*.py"), *ROOT.joinpath("docs").rglob("*.md"), ROOT / "README.md"]
    offending = [str(f) for f in files if "weights_only=False" in f.read_text(encoding="utf-8").replace(" ", "")]
    assert not offending


def _cli_options() -> dict[str, set[str]]:
    """Every option string of every subcommand (nested ones included), by command."""

    def walk(parser: argparse.ArgumentParser, prefix: str, found: dict[str, set[str]]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}".strip(), found)
            else:
                found.setdefault(prefix, set()).update(action.option_strings)

    found: dict[str, set[str]] = {}
    walk(build_parser(), "", found)
    return found


def test_short_run_hint_names_flags_that_exist():
    """The hint for runs shorter than the window names real flags: each `--flag (commands)` is an option of each
    command named, and `section.key=value (pretrain)` is an override the config accepts and applies."""
    with pytest.raises(DataError) as err:
        take_window(np.ones((2, 10)), WindowSpec(frames=20, sampling_rate=1), np.random.default_rng(0))
    message = str(err.value)
    options = _cli_options()
    flags = re.findall(r"(--[a-z][\w-]*) \(([^)]*)\)", message)
    overrides = re.findall(r"(\w+)\.(\w+)=(\w+) \(pretrain\)", message)
    assert flags and overrides, message
    for flag, commands in flags:
        for command in commands.split(", "):
            assert flag in options[command], f"{flag} is not an option of brainjepa {command}"
    for section, key, value in overrides:
        assert "pretrain" in options
        assert getattr(getattr(load_config(None, [f"{section}.{key}={value}"]), section), key) == value


def test_every_flag_named_in_an_error_message_exists():
    """Any `--flag` an error message tells the user to pass is an option of some brainjepa command."""
    known = set().union(*_cli_options().values())
    named: dict[str, str] = {}
    for path in ROOT.joinpath("src", "brainjepa").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                for part in ast.walk(node.exc):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str) and "pip " not in part.value:
                        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", part.value):
                            named[flag] = f"{path.name}:{node.lineno}"
    unknown = {flag: where for flag, where in named.items() if flag not in known}
    assert not unknown


# ------------------------------------------------------------------------------------------------- joins, outputs
def test_partial_phenotype_match_is_counted_and_recorded(tmp_path, caplog):
    """Runs without a phenotype row: a warning with their count, and the count in the store's metadata."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    folder.mkdir()
    for s in ("01", "02", "03"):
        np.save(folder / f"sub-{s}.npy", rng.standard_normal((R, 40)))
    pheno = tmp_path / "participants.tsv"
    pheno.write_text("participant_id\tage\nsub-01\t30\nsub-02\t40\nsub-99\t50\n")
    with caplog.at_level("WARNING"):
        assert main(["prepare", str(folder), "--out", str(tmp_path / "s"), "--rois", str(R), "--phenotypes",
                     str(pheno), "--no-progress", "--no-stats"]) == 0
    assert "1 of 3 runs have no row in" in caplog.text
    store = RunStore(tmp_path / "s")
    record = store.metadata["phenotypes"]
    assert record["unmatched_runs"] == 1 and record["joined_on"] == ["participant_id"]
    assert store.phenotype("age")[:2].tolist() == [30, 40] and np.isnan(store.phenotype("age")[2])


def test_label_checks_are_shared_and_run_before_the_model_is_loaded(shared, monkeypatch):
    """probe and finetune refuse a bad label through one function, before any model is loaded."""

    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the label was checked")

    monkeypatch.setattr(BrainJEPA, "load", classmethod(fail))
    for run in (lambda: probe.probe_store(shared / "store", "empty", model=shared / "model"),
                lambda: finetune.finetune(shared / "model", shared / "store", "empty")):
        with pytest.raises(DataError, match="label 'empty' has no values"):
            run()
    assert probe.read_labels is labels.read_labels is finetune.read_labels


def test_non_finite_weights_are_refused_for_every_loader(shared, tmp_path):
    """A fine-tuned model goes through the same finite check as pretrained models (one loader for both)."""
    net = finetune.build_finetune_model(BrainJEPA.from_pretrained(shared / "model"), 2)
    with torch.no_grad():
        net.head.bias[1] = float("inf")
    finetune.save_finetuned(net, tmp_path / "ft", {})
    with pytest.raises(CheckpointError, match=r"ft/model.safetensors: weights are not finite: tensor head.bias"):
        finetune.load_finetuned(tmp_path / "ft")


def test_non_finite_reference_checkpoint_is_refused(golden_dir, tmp_path):
    raw = torch.load(golden_dir / "jepa-ep1.pth.tar", map_location="cpu", weights_only=True)
    name = next(k for k in raw["predictor"] if k.endswith("mask_token"))
    raw["predictor"][name] = torch.full_like(raw["predictor"][name], float("nan"))
    torch.save(raw, tmp_path / "nan.pth.tar")
    with pytest.raises(CheckpointError, match=r"nan.pth.tar: weights are not finite: tensor predictor.mask_token"):
        BrainJEPA.from_reference_checkpoint(tmp_path / "nan.pth.tar", golden_dir / "gradient_mapping_450.csv",
                                            num_heads=4)


# ---------------------------------------------------------------------------- issue 19: outputs, modes, inputs, API
def _temp_files(folder: Path) -> list[str]:
    """Temporary files and checkpoint folders a write may have left behind."""
    return sorted(str(p) for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp-"))


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 2 MiB tmpfs (a disk that fills up): mounted as root, skipped where mounting is not permitted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a full disk) needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path, leave: int = 16 << 10) -> None:
    """Fill `disk` until about `leave` bytes are free."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while fh.write(b"\1" * (64 << 10)):
                pass
        except OSError:
            pass
    os.truncate(filler, max(0, filler.stat().st_size - leave))


def _embeddings(rows: int, dim: int):
    import pandas as pd

    from brainjepa.evaluation.embed import StoreEmbeddings

    index = pd.DataFrame({"subject": [f"s{i}" for i in range(rows)], "run": ["1"] * rows})
    return StoreEmbeddings(torch.ones(rows, dim), index)


def _write_embeddings(folder: Path, big: bool) -> list[Path]:
    from brainjepa.evaluation.embed import save_embeddings

    out = save_embeddings(_embeddings(400 if big else 2, 1000 if big else 4), folder / "emb.npy")
    return [out, Path(f"{out}.index.csv")]


def _write_model(folder: Path, big: bool) -> list[Path]:
    model = tiny_model(R, patch_size=16, embed_dim=256, depth=2, pred_embed_dim=128) if big else _tiny_model()
    folder = model.save_pretrained(folder / "model")
    return [folder / "config.json", folder / "model.safetensors"]


def _write_checkpoint(folder: Path, big: bool) -> list[Path]:
    from brainjepa.training.checkpoint import save_checkpoint

    step = 2 if big else 1
    state = {"optimizer": {"state": {}, "param_groups": []}, "step": step, "epoch": 0, "batch": 0,
             "pad": torch.zeros((300_000 if big else 1,))}
    path = save_checkpoint(folder / "run", _tiny_model(), state, step, keep_last=3)
    return sorted(p for p in path.iterdir())


def _write_text(folder: Path, big: bool) -> list[Path]:
    from brainjepa.io import atomic_write_text

    return [atomic_write_text(folder / "summary.json", "x" * ((1 << 20) if big else 10))]


FULL_DISK_WRITERS = {"embeddings and their index": _write_embeddings, "model folder": _write_model,
                     "checkpoint": _write_checkpoint, "text file": _write_text}


@pytest.mark.parametrize("writer", list(FULL_DISK_WRITERS))
def test_a_full_disk_keeps_the_previous_output(small_disk, writer):
    """Writing over an existing output on a full disk: one error naming the file and the disk, the previous files
    byte for byte as they were (with their companions), no temporary file or folder left behind."""
    from brainjepa.errors import OutputError

    write = FULL_DISK_WRITERS[writer]
    first = write(small_disk, big=False)
    _fill(small_disk)
    before = {p: v for p, v in _snapshot(small_disk).items() if p.name != "filler"}
    with pytest.raises(OutputError) as err:
        write(small_disk, big=True)
    message = str(err.value)
    assert "\n" not in message and f"no space left on the disk mounted at {small_disk}" in message, message
    after = {p: v for p, v in _snapshot(small_disk).items() if p.name != "filler"}
    assert after == before and all(p in after for p in first if p.is_file())
    assert not _temp_files(small_disk)


def test_a_full_disk_is_one_line_from_the_cli(small_disk, shared, tmp_path, capsys):
    """embed over an existing output and prepare --overwrite over an existing store, on a full disk: one line naming
    the disk, exit 2, the previous embeddings (and index) and the previous store intact."""
    env = Env(tmp_path, shared)
    out = small_disk / "emb.npy"
    assert main(["embed", "--model", env.model, "--data", env.store, "--out", str(out), "--no-progress"]) == 0
    store = small_disk / "st"
    assert main(env.prepare(env.good_runs(2), "--rois", "8", "--out", str(store), "--no-stats")) == 0
    _fill(small_disk, leave=4 << 10)
    before = {p: v for p, v in _snapshot(small_disk).items() if p.name != "filler"}
    capsys.readouterr()
    big = env.runs(*(G((R, 4000)) for _ in range(3)), folder="big")
    for argv in (["embed", "--model", env.model, "--data", env.store, "--out", str(out), "--no-progress",
                  "--pooling", "roi"],
                 env.prepare(big, "--rois", "8", "--out", str(store), "--overwrite", "--no-stats")):
        assert main(argv) == 2
        lines = _lines(capsys.readouterr().err)
        assert len(lines) == 1 and f"no space left on the disk mounted at {small_disk}" in lines[0], lines
    assert {p: v for p, v in _snapshot(small_disk).items() if p.name != "filler"} == before
    assert len(RunStore(store)) == 2 and not _temp_files(small_disk)


def test_a_checkpoint_on_a_full_disk_is_one_line(small_disk, shared, tmp_path, capsys):
    """pretrain whose checkpoint does not fit: one line naming the checkpoint and the disk (not the curves drawn
    after it), exit 2, no .tmp- folder left."""
    run = small_disk / "run"
    _fill(small_disk, leave=24 << 10)
    assert main(Env(tmp_path, shared).pretrain(out=run)) == 2
    lines = [line for line in _lines(capsys.readouterr().err) if not line.startswith("pretrain: ")]  # the bar
    assert len(lines) == 1 and re.search(rf"checkpoints/step-\d{{8}}: not written: no space left on the disk "
                                         rf"mounted at {re.escape(str(small_disk))} ", lines[0]), lines
    assert not _temp_files(small_disk) and not list((run / "checkpoints").iterdir())


UMASK_WRITERS = {
    "text file": lambda d: _write_text(d, big=False),
    "model folder": lambda d: _write_model(d, big=False),
    "checkpoint": lambda d: _write_checkpoint(d, big=False),
    "embeddings and their index": lambda d: _write_embeddings(d, big=False),
    "store": lambda d: _write_store(d / "st"),
}


def _write_store(path: Path) -> list[Path]:
    with StoreWriter(path, R) as writer:
        writer.add(G((R, 40)), subject="a", tr=2.0)
    return list(path.iterdir())


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
@pytest.mark.parametrize("writer", list(UMASK_WRITERS))
def test_written_files_follow_the_umask(tmp_path, writer, umask):
    """Files written atomically get 0666 minus the umask, as `open` would give them (not mkstemp's 0600)."""
    old = os.umask(umask)
    try:
        UMASK_WRITERS[writer](tmp_path)
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes


@pytest.mark.parametrize(("error", "free", "expected"), [
    pytest.param(RuntimeError("safetensors: failed to write"), 1000,
                 r"no space left on the disk mounted at .* \(1000 B free of 1\.0 GiB\); free some space", id="1000 B"),
    pytest.param(RuntimeError("safetensors: failed to write"), 512 << 10,
                 r"no space left on the disk .* \(512\.0 KiB free", id="512 KiB"),
    pytest.param(RuntimeError("a bug in a writer"), 64 << 20, None, id="bug"),
    pytest.param(PermissionError(13, "Permission denied"), 64 << 20, r"out\.bin: not written: Permission denied$",
                 id="oserror"),
])
def test_a_write_error_is_a_full_disk_by_its_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         error: Exception, free: int, expected: str | None) -> None:
    """A writer that wraps ENOSPC in its own type (safetensors, torch, numpy) is told apart from a bug by the disk's
    free space: under 1 MiB free it is a full disk, named with the free space in its unit; with room left it is
    raised as it is (None); an OSError names the file and its reason."""
    from types import SimpleNamespace

    from brainjepa.io import output_error

    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=1 << 30, used=(1 << 30) - free,
                                                                           free=free))
    out = output_error(tmp_path / "out.bin", error)
    if expected is None:
        assert out is None
    else:
        assert re.search(expected, str(out)), str(out)


def test_symlinked_subject_folders_are_followed(tmp_path):
    """A subject folder that is a symbolic link is read like any other (validate and prepare); a link loop ends;
    fMRIPrep derivatives behind a link are found too."""
    (tmp_path / "in" / "sub-01").mkdir(parents=True)
    (tmp_path / "elsewhere" / "sub-02").mkdir(parents=True)
    np.save(tmp_path / "in" / "sub-01" / "rest.npy", G((R, 40)))
    np.save(tmp_path / "elsewhere" / "sub-02" / "rest.npy", G((R, 40)) + 1)
    (tmp_path / "in" / "sub-02").symlink_to(tmp_path / "elsewhere" / "sub-02")
    (tmp_path / "in" / "sub-01" / "loop").symlink_to(tmp_path / "in")  # back up the tree
    assert main(["prepare", str(tmp_path / "in"), "--rois", "8", "--out", str(tmp_path / "st"), "--no-progress",
                 "--no-stats"]) == 0
    assert sorted(RunStore(tmp_path / "st").manifest["subject"]) == ["01", "02"]

    pytest.importorskip("nilearn")
    from brainjepa.data.fmriprep import find_fmriprep_runs
    from synthetic_derivatives import write_volume_run

    write_volume_run(tmp_path / "deriv", "01", "rest")
    write_volume_run(tmp_path / "other", "02", "rest")
    (tmp_path / "deriv" / "sub-02").symlink_to(tmp_path / "other" / "sub-02")
    assert [s.subject for s in find_fmriprep_runs([tmp_path / "deriv"])] == ["01", "02"]


@pytest.mark.parametrize(("a", "b", "same"), [("1", "01", True), ("001", "1", True), ("2", "12", False),
                                              ("1_01", "1_1", True), ("01_1", "1_1", False),
                                              ("ses-1_task-rest_run-02", "ses-1_task-rest_run-2", True),
                                              ("task-rest_run-1", "task-rest_run-10", False), ("rest", "rest", True)])
def test_run_indices_compare_as_numbers(a, b, same):
    """BIDS run indices are numbers (run-1 is run-01); sessions and other labels compare as written."""
    from brainjepa.data.readers import run_key

    assert (run_key(a) == run_key(b)) is same


def test_run_numbers_join_phenotypes_as_numbers(tmp_path):
    """A per-run phenotype table with run 1 matches the file run-01 (and the store keeps the file's id)."""
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "sub-01_run-01.npy", G((R, 40)))
    np.save(folder / "sub-01_run-02.npy", G((R, 40)) + 1)
    (tmp_path / "p.csv").write_text("subject,run,age\n01,1,30\n01,2,31\n")
    assert main(["prepare", str(folder), "--rois", "8", "--phenotypes", str(tmp_path / "p.csv"), "--out",
                 str(tmp_path / "st"), "--no-progress", "--no-stats"]) == 0
    store = RunStore(tmp_path / "st")
    assert store.manifest["run"].tolist() == ["01", "02"] and store.phenotype("age").tolist() == [30, 31]
    with StoreWriter(tmp_path / "api", R) as writer, pytest.raises(DataError, match="duplicate run"):
        writer.add(G((R, 40)), subject="a", run="1")
        writer.add(G((R, 40)), subject="a", run="01")


def test_bad_confounds_are_skipped_with_skip_bad(tmp_path):
    """An n/a inside a confounds column is a problem of its run: prepare --skip-bad leaves the run out and lists
    it, with no traceback."""
    deriv = _fmriprep(Env(tmp_path, tmp_path), na=True)
    assert main(["prepare", deriv, "--fmriprep", "--atlas", str(tmp_path / "atlas.nii.gz"), "--skip-bad",
                 "--out", str(tmp_path / "st"), "--no-progress", "--no-stats"]) == 0
    assert RunStore(tmp_path / "st").manifest["subject"].tolist() == ["02"]
    skipped = (tmp_path / "st" / "skipped.csv").read_text()
    assert "sub-01" in skipped and "column 'trans_x' has 1 n/a" in skipped


def test_unusual_tr_can_be_confirmed(tmp_path):
    """A TR outside what scanners use is refused unless confirmed (flag or keyword); the store then keeps it."""
    folder = tmp_path / "in"
    folder.mkdir()
    np.save(folder / "sub-01.npy", G((R, 40)))
    argv = ["prepare", str(folder), "--rois", "8", "--tr", "45", "--out", str(tmp_path / "st"), "--no-progress",
            "--no-stats"]
    assert main(argv) == 2
    assert main([*argv, "--allow-unusual-tr"]) == 0
    assert RunStore(tmp_path / "st").tr(0) == 45.0
    with StoreWriter(tmp_path / "api", R) as writer:
        with pytest.raises(DataError, match=r"TR 2000 s is outside what scanners use.*2000 ms is 2 s"):
            writer.add(G((R, 40)), subject="a", tr=2000.0)
        writer.add(G((R, 40)), subject="a", tr=0.72)


def test_simulate_refuses_an_unusual_tr_before_simulating_unless_confirmed(tmp_path, capsys):
    """The message names the flag, and the flag exists (it did not: the refusal named a flag simulate lacked)."""
    argv = ["simulate", "--out", str(tmp_path / "sim"), "--subjects", "2", "--rois", "6", "--frames", "40", "--tr",
            "45", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "simulate (tr, --tr): TR 45 s is outside what scanners use" in err and "--allow-unusual-tr" in err
    assert not (tmp_path / "sim").exists()
    assert main([*argv, "--allow-unusual-tr"]) == 0
    assert RunStore(tmp_path / "sim").tr(0) == 45.0
    assert main(["simulate", "--like", str(tmp_path / "sim"), "--allow-unusual-tr", "--out", str(tmp_path / "s2")]) == 2
    assert "--allow-unusual-tr cannot be used with --like" in capsys.readouterr().err


def _api_model() -> BrainJEPA:
    return _tiny_model()


X = torch.randn(2, R, 32)
CTX, TGT = torch.tensor([[0, 1, 2], [3, 4, 5]]), torch.tensor([[6, 7], [8, 9]])
API_CASES = {  # name: (arguments of model(x, context_idx, target_idx), exception, text of its message)
    "float64 input": ((X.double(), CTX, TGT), TypeError, "of float32, the model's dtype, got dtype float64"),
    "float16 input": ((X.half(), CTX, TGT), TypeError, "got dtype float16; convert it with x.to(torch.float32)"),
    "integer input": ((X.long(), CTX, TGT), TypeError, "got dtype int64"),
    "numpy input": ((X.numpy(), CTX, TGT), TypeError, "got a numpy.ndarray; convert it with torch.from_numpy"),
    "wrong ROI count": ((X[:, :5], CTX, TGT), ValueError, f"takes a torch.Tensor [B, {R}, 32]"),
    "context out of range": ((X, CTX + 14, TGT), ValueError, "in [0, R*P) = [0, 16), got values from 14 to 19"),
    "negative target": ((X, CTX, TGT - 7), ValueError, "target_idx must be a torch.Tensor [B, K] of int64"),
    "context of int32": ((X, CTX.int(), TGT), TypeError, "context_idx must be a torch.Tensor [B, K] of int64"),
    "context without batch": ((X, CTX[0], TGT), ValueError, "with B = 2 (the input's batch), got shape [3]"),
    "target as numpy": ((X, CTX, TGT.numpy()), TypeError, "convert it with torch.from_numpy(idx).long()"),
}


@pytest.mark.parametrize("name", list(API_CASES))
def test_python_api_says_what_it_expects(name):
    """The model API refuses what it cannot take with a TypeError / ValueError stating what it expects
    ([B, R, T] in the model's dtype; [B, K] int64 in [0, R*P)), never a raw torch error."""
    args, error, text = API_CASES[name]
    with pytest.raises(error) as err:
        _api_model()(*args)
    assert text in str(err.value) and "--" not in str(err.value)


@pytest.mark.parametrize("series", [
    np.random.default_rng(0).normal(size=(2, R, 40)).astype(str),  # np.loadtxt(..., dtype=str)
    [np.random.default_rng(0).normal(size=(R, 40)), np.full((R, 40), "1.5", dtype=object)],  # text columns, .to_numpy()
], ids=["text array", "object sample"])
def test_embed_refuses_text_series_by_sample(series):
    """Text is not silently parsed (nor does it fail deep inside numpy): the sample is named, and how to parse."""
    with pytest.raises(DataError, match=r"embed: sample \d holds (<U\d+|object) values, not numbers.*np.loadtxt"):
        embed(_tiny_model(), series)


def test_python_api_hints_name_keywords(tmp_path, shared):
    """A refusal reached through the Python API names the keyword argument (the CLI flag beside it)."""
    from brainjepa.data.prepare import prepare_store
    from brainjepa.data.tables import read_table

    np.savetxt(tmp_path / "a.csv", np.arange(20).reshape(4, 5), delimiter=",", fmt="%d")
    tmp_path.joinpath("b.csv").write_text("0,1,2,3,4\n" + "\n".join(",".join(["1.5"] * 5) for _ in range(8)) + "\n")
    checks = [
        (lambda: read_table(tmp_path / "a.csv", num_rois=4), "header=True or False"),
        (lambda: BrainJEPA.load(_torch_file(Env(tmp_path, shared), {})), "gradient="),
        (lambda: prepare_store([_fmriprep(Env(tmp_path, shared))], tmp_path / "st", progress=False),
         "fmriprep=FmriprepOptions"),
        (lambda: probe.probe_store(shared / "store", "group", folds=3, seeds=1), "model=, --model"),
    ]
    for call, keyword in checks:
        with pytest.raises((DataError, CheckpointError, ValueError)) as err:
            call()
        assert keyword in str(err.value), str(err.value)


@pytest.mark.slow
def test_torchrun_pretraining_exits_every_time(shared, tmp_path):
    """torchrun with 2 CPU ranks finishes and every rank exits, run after run: the process group is torn down
    before the DDP reducer could free it at interpreter exit (where a gloo thread waiting for the GIL hung rank 1
    in about half the runs)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    args = Env(tmp_path, shared).pretrain("data.batch_size=2", "data.holdout=0")[3:]
    for i in range(6):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "brainjepa", "pretrain", "--out", str(tmp_path / f"run{i}"), *args]
        try:
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run {i + 1}: torchrun did not exit within 240 s (a rank hung after training)")
        assert done.returncode == 0, done.stderr[-3000:]
        assert (tmp_path / f"run{i}" / "model" / "model.safetensors").is_file()


def test_a_fine_tuned_models_config_json_of_the_wrong_type_is_refused_naming_the_file(shared, tmp_path):
    """The fine-tuned loader reads the same untyped config.json: a string for an int is refused naming the file and
    the key (finetune.json), not a TypeError from inside the model."""
    net = finetune.build_finetune_model(BrainJEPA.from_pretrained(shared / "model"), 2)
    config = finetune.save_finetuned(net, tmp_path / "ft", {}) / finetune.CHECKPOINT_CONFIG
    record = json.loads(config.read_text())
    record["model"]["depth"] = str(record["model"]["depth"])
    config.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=f"^{re.escape(str(config))}: config key model.depth has value"):
        finetune.load_finetuned(tmp_path / "ft")


def test_error_classes_keep_the_bases_callers_catch() -> None:
    """Callers catch by base class: the CLI turns every BrainJEPAError and OSError into one line, and library users
    catch ValueError for a bad argument. So every user error is a BrainJEPAError and a ValueError, a failed
    download is a DataError, and a failed write is an OSError (not a user error: nothing to fix in the input)."""
    from brainjepa.errors import BrainJEPAError, ConfigError, DownloadError, OutputError, TrainingError

    assert issubclass(BrainJEPAError, ValueError)
    for cls in (DataError, ConfigError, CheckpointError, TrainingError, DownloadError):
        assert issubclass(cls, BrainJEPAError), cls
    assert issubclass(DownloadError, DataError)
    assert issubclass(OutputError, OSError) and not issubclass(OutputError, BrainJEPAError)
