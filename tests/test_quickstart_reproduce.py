"""Every command line the quickstart's report.md prints to reproduce a part runs as printed (issue 20)."""

from __future__ import annotations

import re
import shlex
import shutil

import numpy as np
import pytest

from brainjepa.cli import build_parser, main
from brainjepa.data.store import RunStore

# Appended to a line to keep the test short (argparse keeps an option's last value; overrides come last).
TINY = {"pretrain": ["optimization.max_steps=2"],
        "evaluate": ["--tasks", "simulation/group", "--permutations", "100", "--bootstrap", "100"]}


def reproduce_lines(report: str) -> list[list[str]]:
    """The `brainjepa ...` lines of the report's bash blocks, split as a shell would (comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", report, flags=re.S)
    return [shlex.split(line, comments=True)[1:] for block in blocks for line in block.splitlines()
            if line.startswith("brainjepa ")]


@pytest.mark.slow
def test_every_reproduce_line_of_the_report_runs(quickstart_run, tmp_path, capsys):
    out = quickstart_run.out
    assert quickstart_run.code == 0, quickstart_run.stderr[-2000:]
    # The printed lines write into the shared run's folder (as printed): it is put back as the quickstart left it.
    shutil.copytree(out, tmp_path / "as-run")
    try:
        _run_every_line(out, capsys)
    finally:
        shutil.rmtree(out)
        shutil.copytree(tmp_path / "as-run", out)


def _run_every_line(out, capsys):
    report = (out / "report.md").read_text()
    header = re.search(r"\(`brainjepa (quickstart .*?)`", report, flags=re.S).group(1)
    build_parser().parse_args(header.split())  # the run's own command line, as the report states it
    lines = reproduce_lines(report)
    assert [argv[0] for argv in lines] == ["simulate", "gradients", "pretrain", "embed", "evaluate"]
    store = RunStore(out / "store")
    before = {i: store.run(i) for i in (0, len(store) - 1)}
    gradients = np.loadtxt(out / "gradients.csv", delimiter=",")
    for argv in lines:
        build_parser().parse_args(argv)  # as printed
        assert main([*argv, *TINY.get(argv[0], [])]) == 0, f"brainjepa {shlex.join(argv)}: {capsys.readouterr().err}"
    again = RunStore(out / "store")  # the same data, made again from the printed command
    for i, run in before.items():
        np.testing.assert_array_equal(again.run(i), run)
    np.testing.assert_allclose(np.loadtxt(out / "gradients.csv", delimiter=","), gradients, atol=1e-8)
    assert (out / "run-again" / "model" / "model.safetensors").is_file()
    assert np.load(out / "embeddings.npy").shape[0] == len(store)
    assert (out / "evaluate" / "evaluate.csv").is_file()
