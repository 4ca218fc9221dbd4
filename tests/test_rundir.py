"""Run folders are safe: one process per folder (also under torchrun), a failed start leaves nothing behind,
`--resume` needs a usable checkpoint, unreadable checkpoints are skipped, and SIGINT / SIGTERM stop at a step
boundary with a checkpoint that resumes bit-exactly."""

from __future__ import annotations

import csv
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from brainjepa import BrainJEPA
from brainjepa.cli import main
from brainjepa.config import load_config
from brainjepa.errors import BrainJEPAError, ConfigError
from brainjepa.io import file_sha256
from brainjepa.training import checkpoint as ckpt
from brainjepa.training import pretrain
from brainjepa.training.interrupt import Interrupted
from brainjepa.training.monitor import TIMING_FIELDS

ROOT = Path(__file__).resolve().parents[1]
R, T = 20, 64
# one thread in every process, so a run split across processes computes exactly what one process does
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def _args(store: Path, **extra) -> list[str]:
    base = {"model.num_rois": R, "model.num_frames": T, "model.embed_dim": 32, "model.depth": 1,
            "model.num_heads": 2, "model.pred_embed_dim": 16, "model.pred_depth": 1, "model.gradient_dim": 8,
            "data.path": str(store), "data.batch_size": 4, "data.num_workers": 0, "data.sampling_rate": 1,
            "data.pin_mem": "false", "data.gradient_sparsity": 0.5, "meta.use_bfloat16": "false",
            "meta.accumulation_steps": 1, "optimization.epochs": 4, "optimization.warmup": 1,
            "optimization.max_steps": 3, "logging.checkpoint_every": 2, "logging.log_every": 1,
            "data.holdout": 0}
    return [f"{k}={v}" for k, v in {**base, **extra}.items()]


def _cfg(store: Path, **extra):
    return load_config(None, _args(store, **extra))


def _error_line(capsys) -> str:
    """The one line the CLI printed for an error (progress bars aside)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("brainjepa ")]
    assert "Traceback" not in err and len(lines) == 1 and err.strip().endswith(lines[0]), err
    return lines[0]


def _listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in csv.DictReader(f)]


def _same_weights(a: Path, b: Path) -> bool:
    sa, sb = BrainJEPA.from_pretrained(a).state_dict(), BrainJEPA.from_pretrained(b).state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------------- the lock
HOLDER = """
import sys
from pathlib import Path
from brainjepa.config import load_config
from brainjepa.training.distributed import DistEnv
from brainjepa.training.rundir import claim_run_dir
with claim_run_dir(Path(sys.argv[1]), load_config(None, sys.argv[2:]), False, DistEnv()):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def held(store, tmp_path):
    """A run folder claimed by another process for as long as the test runs."""
    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("12345678901234\n")  # a killed run's lock file, with a longer pid than the holder's
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), *_args(store)], env=SUBPROCESS_ENV,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield run, proc.pid
    proc.stdin.close()
    proc.wait(timeout=60)


def test_a_second_process_on_a_run_folder_is_refused(store, held, capsys):
    run, pid = held
    before = _listing(run)
    for extra in ([], ["--resume"]):
        assert main(["pretrain", "--out", str(run), *extra, *_args(store)]) == 2
        assert _error_line(capsys) == (f"brainjepa pretrain: error: {run} is in use by another brainjepa process "
                                       f"(pid {pid}); wait for it to finish or choose another --out")
    assert _listing(run) == before  # the refused starts wrote nothing


def test_every_torchrun_process_learns_the_folder_is_in_use(store, held):
    run, pid = held
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "brainjepa",
           "pretrain", "--out", str(run), *_args(store, **{"data.batch_size": 2})]
    before = _listing(run)
    proc = subprocess.run(cmd, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if "is in use by another brainjepa process" in line]
    # Every rank learns the outcome from rank 0's broadcast; torchrun may stop the other rank as soon as the first
    # exits, before it prints, so one or two lines; but no rank wrote into the folder.
    assert 1 <= len(lines) <= 2 and all(f"(pid {pid})" in line for line in lines), proc.stderr[-3000:]
    assert _listing(run) == before


# ------------------------------------------------------------------------------------------------- failed starts
@pytest.mark.parametrize("extra, message", [
    ({"data.path": "no/such/store"}, "no/such/store"),
    ({"data.batch_size": 17}, "data.batch_size=17 x 1 process(es) needs at least 17 runs per batch but the store"),
    ({"optimization.epochs": 1, "meta.accumulation_steps": 8},
     "optimization.epochs=1 x 4 batch(es) per epoch is fewer micro-batches than meta.accumulation_steps=8"),
    ({"optimization.ipe_scale": 0.01}, "optimization.ipe_scale=0.01 leaves a schedule of 0 optimizer steps"),
    ({"data.gradient_csv_path": "no/such.csv", "data.gradient_sparsity": 0.9}, "no/such.csv"),  # sparsity: default
    ({"mask.min_keep": 70}, "lower mask.min_keep"),  # within the grid's 80 tokens: it fails at the first step
])
def test_a_failed_start_leaves_nothing_behind(store, tmp_path, capsys, extra, message):
    """New folder: removed again. Existing folder: what was there stays as it was, nothing is added. Then the same
    command, fixed, simply runs."""
    new, existing = tmp_path / "a" / "new", tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    for run in (new, existing):
        before = _listing(run) if run.exists() else None
        assert main(["pretrain", "--out", str(run), *_args(store, **extra)]) == 2
        assert message in _error_line(capsys)
        assert (_listing(run) if run.exists() else None) == before
    assert not (tmp_path / "a").exists()  # the parents it made are gone too
    assert main(["pretrain", "--out", str(existing), *_args(store)]) == 0
    assert (existing / "model" / "model.safetensors").is_file() and (existing / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("leftover", ["metrics.csv", "checkpoints", "model"])
def test_a_folder_with_run_files_but_no_config_is_not_overwritten(store, tmp_path, capsys, leftover):
    """A folder holding what a run writes (metrics, checkpoints, an exported model) without the config.yaml that
    marks a run is neither continued nor mixed into: refused by name, left as it was."""
    run = tmp_path / "run"
    (run / "checkpoints" if leftover == "checkpoints" else run).mkdir(parents=True)
    (run / ("checkpoints/step-00000002" if leftover == "checkpoints" else leftover)).write_text("theirs")
    before = _listing(run)
    assert main(["pretrain", "--out", str(run), *_args(store)]) == 2
    assert f"{run} holds {leftover} but no config.yaml: not a run this command can continue" in _error_line(capsys)
    assert _listing(run) == before


@pytest.mark.parametrize(("name", "raised"), [("ConfigError", ConfigError), ("PermissionError", BrainJEPAError)])
def test_other_ranks_raise_rank_zeros_error(store, tmp_path, monkeypatch, name, raised):
    """Under torchrun every rank learns rank 0's refusal from its broadcast and stops with the same message (as the
    same class where it is one of ours), instead of going on to wait for a partner that gave up."""
    from brainjepa.training import rundir
    from brainjepa.training.distributed import DistEnv

    def broadcast(objects: list, src: int) -> None:
        objects[0] = (name, "the message of rank 0")

    monkeypatch.setattr(rundir.dist, "broadcast_object_list", broadcast)
    with pytest.raises(raised, match="^the message of rank 0$") as caught:
        with rundir.claim_run_dir(tmp_path / "run", _cfg(store), False, DistEnv(rank=1, world_size=2)):
            pass
    assert type(caught.value) is raised and not (tmp_path / "run").exists()


def test_a_cuda_device_without_cuda_is_refused_before_any_work(store, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["pretrain", "--out", str(tmp_path / "run"), *_args(store, **{"meta.device": "cuda"})]) == 2
    assert "error: meta.device=cuda: CUDA is not available here" in _error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_cuda_device_checks(monkeypatch):
    from brainjepa.training.distributed import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1, world_size=2) == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"meta.device=cuda:2 but only 2 CUDA device\(s\) are visible"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match=r"LOCAL_RANK 2 needs cuda:2 but only 2"):
        resolve_device("cuda", local_rank=2, world_size=3)
    with pytest.raises(ConfigError, match="would put all 2 processes on one GPU"):
        resolve_device("cuda:0", local_rank=1, world_size=2)


# ------------------------------------------------------------------------------------------------- --resume
@pytest.fixture(scope="module")
def finished(store, tmp_path_factory) -> Path:
    """A finished 3-step run with checkpoints at steps 2 and 3."""
    return pretrain(_cfg(store), tmp_path_factory.mktemp("runs") / "done")


@pytest.mark.parametrize(("change", "refused"), [
    ({"optimization.max_steps": 5, "data.num_workers": 1, "data.pin_mem": "true", "logging.log_every": 2,
      "logging.checkpoint_every": 1, "logging.keep_last": 1, "logging.tensorboard": "true",
      "logging.collapse_every": 7}, None),
    ({"optimization.lr": 0.5, "logging.log_every": 2}, "optimization.lr changed"),
])
def test_resume_accepts_changes_to_how_long_and_how_watched_only(store, finished, change, refused):
    """A run may be resumed for longer, with other workers, or logged, checkpointed and watched otherwise
    (RESUMABLE_CHANGES); any change to what is learned is refused by name."""
    from brainjepa.training.rundir import check_run_dir

    cfg = _cfg(store, **change)
    if refused is None:
        check_run_dir(finished, cfg, resume=True)
    else:
        with pytest.raises(ConfigError, match=rf"cannot resume .* with a different config: {refused}$"):
            check_run_dir(finished, cfg, resume=True)


def test_resume_needs_a_run_with_a_checkpoint(store, finished, tmp_path, capsys):
    assert main(["pretrain", "--out", str(tmp_path / "none"), "--resume", *_args(store)]) == 2
    assert "holds no run (no config.yaml); start it without --resume" in _error_line(capsys)
    assert not (tmp_path / "none").exists()
    early = tmp_path / "early"  # a run that stopped before its first checkpoint
    early.mkdir()
    (early / "config.yaml").write_text((finished / "config.yaml").read_text())
    for extra in ([], ["--resume"]):
        assert main(["pretrain", "--out", str(early), *extra, *_args(store)]) == 2
        assert "stopped before its first checkpoint, so there is nothing to resume" in _error_line(capsys)
    assert main(["pretrain", "--out", str(finished), "--resume", *_args(store)]) == 2  # already done
    assert _error_line(capsys).endswith(f"--resume: nothing to train, {finished} is at step 3 of 3; raise "
                                        "optimization.max_steps (the schedule has 16)")


def test_resume_with_every_checkpoint_unusable_is_an_error(store, finished, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    for path in ckpt.list_checkpoints(run):
        weights = path / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    before = _listing(run)
    assert main(["pretrain", "--out", str(run), "--resume", *_args(store, **{"optimization.max_steps": 6})]) == 2
    assert "--resume: no usable checkpoint in" in _error_line(capsys)
    assert _listing(run) == before  # metrics.csv untouched, nothing started from scratch


def test_resume_with_another_process_count_is_refused(store, finished, tmp_path, capsys):
    """The global batch (batch x processes) sets the schedule and the data order: a run saved by 2 processes is not
    resumed by 1 as if nothing had changed."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    last = ckpt.list_checkpoints(run)[-1]
    state = torch.load(last / ckpt.TRAINING_FILE, weights_only=True)
    assert state["world_size"] == 1
    torch.save({**state, "world_size": 2}, last / ckpt.TRAINING_FILE)
    _rewrite_manifest(last)
    before = _listing(run)
    assert main(["pretrain", "--out", str(run), "--resume", *_args(store, **{"optimization.max_steps": 6})]) == 2
    assert _error_line(capsys).endswith(f"--resume: {run} was trained with 2 process(es), this run has 1; the global "
                                        "batch sets the schedule and the data order, so resume it with 2 processes")
    assert _listing(run) == before


def test_resume_finishes_a_run_stopped_after_its_last_checkpoint(store, finished, tmp_path):
    """Killed after the last checkpoint but before model/ was written: --resume writes it (no step is trained)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    shutil.rmtree(run / "model")
    (run / "summary.json").unlink()
    rows = (run / "metrics.csv").read_text()
    assert main(["pretrain", "--out", str(run), "--resume", *_args(store)]) == 0
    done, again = BrainJEPA.from_pretrained(finished), BrainJEPA.from_pretrained(run)
    assert all(torch.equal(a, b) for a, b in zip(done.state_dict().values(), again.state_dict().values(), strict=True))
    assert (run / "summary.json").is_file() and (run / "metrics.csv").read_text() == rows


def test_resume_keeps_the_precision_auto_chose(store, tmp_path, caplog):
    """`auto` is decided once per run (on a CPU by timing): a resumed run trains in its checkpoint's precision, not
    in what this machine's timing says now, so it continues as the uninterrupted run would have."""
    overrides = {"meta.use_bfloat16": "true", "meta.precision": "auto"}
    run = pretrain(_cfg(store, **overrides), tmp_path / "run")
    last = ckpt.list_checkpoints(run)[-1]
    state = torch.load(last / ckpt.TRAINING_FILE, weights_only=True)
    chosen = state["precision"]
    assert chosen == json.loads((run / "summary.json").read_text())["precision"]
    other = "fp32" if chosen == "bf16" else "bf16"  # as if the run had chosen the other one
    torch.save({**state, "precision": other}, last / ckpt.TRAINING_FILE)
    _rewrite_manifest(last)
    with caplog.at_level(logging.INFO, logger="brainjepa"):
        pretrain(_cfg(store, **overrides, **{"optimization.max_steps": 4}), run, resume=True)
    assert f"precision: {other} (meta.precision auto, as this run chose at its start)" in caplog.text
    assert json.loads((run / "summary.json").read_text())["precision"] == other


def _refused_pickle(path: Path, marker: Path) -> None:
    """Replace the checkpoint's training.pt by a pickle that would run code, with a matching manifest."""

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"optimizer": {}, "step": 3, "epoch": 0, "batch": 3, "x": Evil()}, path / ckpt.TRAINING_FILE)
    _rewrite_manifest(path)


def _rewrite_manifest(path: Path, drop: str | None = None) -> None:
    files = {p.name: file_sha256(p) for p in sorted(path.iterdir()) if p.name not in (ckpt.MANIFEST, drop)}
    (path / ckpt.MANIFEST).write_text(json.dumps({"files": files}))


def _wrong_step(path: Path, marker: Path) -> None:
    state = torch.load(path / ckpt.TRAINING_FILE, weights_only=True)
    torch.save({**state, "step": 7}, path / ckpt.TRAINING_FILE)
    _rewrite_manifest(path)


def _no_position(path: Path, marker: Path) -> None:
    torch.save({"optimizer": {}}, path / ckpt.TRAINING_FILE)
    _rewrite_manifest(path)


@pytest.mark.parametrize("damage, problem", [
    (_refused_pickle, "holds objects other than tensors and plain types (refused, never unpickled)"),
    (lambda path, marker: _rewrite_manifest(path, drop=ckpt.TRAINING_FILE), "its manifest does not list training.pt"),
    (lambda path, marker: (path / ckpt.MANIFEST).write_text("[1, 2]"), "unreadable manifest"),
    (lambda path, marker: (path / ckpt.TRAINING_FILE).write_bytes(b"")
     or _rewrite_manifest(path), "cannot read training.pt"),
    (_wrong_step, "training.pt is at step 7, not the folder's"),
    (_no_position, "does not hold an optimizer state and a position"),
])
def test_an_unreadable_checkpoint_is_skipped_for_the_previous_one(finished, tmp_path, caplog, damage, problem):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished, run)
    latest = ckpt.list_checkpoints(run)[-1]
    damage(latest, tmp_path / "pwned")
    with caplog.at_level(logging.WARNING):
        model, state = ckpt.load_latest(run)
    assert state["step"] == 2
    assert f"checkpoint {latest} is unusable: " in caplog.text and problem in caplog.text
    assert "weights_only=False" not in caplog.text
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------------------- signals
def test_sigint_stops_at_the_step_boundary_with_a_checkpoint(store, tmp_path, monkeypatch):
    from brainjepa.training import loop

    real = loop.Trainer.train_step

    def step_then_ctrl_c(self, micro):
        row = real(self, micro)
        if row["step"] == 3:
            os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the run, as Ctrl-C does
        return row

    monkeypatch.setattr(loop.Trainer, "train_step", step_then_ctrl_c)
    handler = signal.getsignal(signal.SIGINT)
    run = tmp_path / "run"
    with pytest.raises(Interrupted, match=rf"interrupted by SIGINT at step 3; checkpoint saved in "
                       rf"{run / 'checkpoints' / 'step-00000003'}; resume with --resume") as stop:
        pretrain(_cfg(store, **{"optimization.max_steps": 8, "logging.checkpoint_every": 100}), run)
    assert stop.value.exit_code == 130
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    assert [p.name for p in ckpt.list_checkpoints(run)] == ["step-00000003"] and not (run / "model").exists()
    assert [r["step"] for r in _metrics(run)] == ["1", "2", "3"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "brainjepa", "pretrain", *args]


def test_sigterm_mid_run_then_resume_equals_an_uninterrupted_run(store, tmp_path):
    """A separate process gets SIGTERM while training: it saves a checkpoint at the next step boundary and exits
    with 143 and one line. Resuming to step N + 2 gives the weights and metrics of one uninterrupted run."""
    common = _args(store, **{"optimization.epochs": 500, "optimization.max_steps": "null",
                             "logging.checkpoint_every": 1000, "meta.drop_path": 0.2, "model.depth": 2})
    run = tmp_path / "run"
    proc = subprocess.Popen(_cli("--out", str(run), *common), env=SUBPROCESS_ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # a safety net for a stuck child, not a timing assertion
    while not (run / "metrics.csv").is_file() or len((run / "metrics.csv").read_text().splitlines()) < 4:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("brainjepa pretrain:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    step = len(_metrics(run))
    assert lines[0] == (f"brainjepa pretrain: interrupted by SIGTERM at step {step}; checkpoint saved in "
                        f"{run / 'checkpoints' / f'step-{step:08d}'}; resume with --resume")
    assert [p.name for p in ckpt.list_checkpoints(run)] == [f"step-{step:08d}"]
    end = [f"optimization.max_steps={step + 2}"]
    for folder, extra in ((run, ["--resume"]), (tmp_path / "full", [])):
        done = subprocess.run(_cli("--out", str(folder), *extra, *common, *end), env=SUBPROCESS_ENV,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    assert _same_weights(run, tmp_path / "full")
    assert _metrics(run) == _metrics(tmp_path / "full")
    assert [int(r["step"]) for r in _metrics(run)] == list(range(1, step + 3))
