"""Every `brainjepa ...` command line in the README and docs/ parses with the real CLI (no stale flags)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from brainjepa.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def command_lines(path: Path) -> list[str]:
    """`brainjepa` invocations inside ```bash blocks, continuation lines joined, comments dropped."""
    lines, out = [], []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", path.read_text(), flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        joined = re.sub(r"\n\s+\[", " [", joined)  # synopsis continued on an indented line
        lines += [line.split(" #")[0].strip() for line in joined.splitlines()]
    for line in lines:
        m = re.search(r"(?:^|-m |\s)brainjepa (.*)$", line)
        synopsis = "[--" in line or line.startswith("[")  # usage summaries, not runnable lines
        if m and not synopsis and not line.startswith(("pip", "python -m pip")):
            out.append(m.group(1))
    return out


CASES = [(p.name, cmd) for p in DOCS for cmd in command_lines(p)]


def test_docs_have_commands():
    assert len(CASES) >= 15


@pytest.mark.parametrize(("doc", "cmd"), CASES, ids=[f"{d}:{c[:40]}" for d, c in CASES])
def test_documented_command_parses(doc, cmd):
    args = [a for a in shlex.split(cmd) if a not in ("&&",)]
    try:
        ns = build_parser().parse_args(args)
    except SystemExit as exit_:
        pytest.fail(f"{doc}: `brainjepa {cmd}` does not parse (exit {exit_.code})")
    assert ns.command is not None
