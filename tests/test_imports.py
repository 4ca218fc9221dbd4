"""The import graph of src/brainjepa: no cycle, models below data/training/evaluation, and data/ a one-way stack.

Every import statement counts, at module level, inside a function or under ``if TYPE_CHECKING:`` (an import that
dodges a cycle by hiding in a function, or a type-only reference upward, is still a cycle in the design).
``from brainjepa.x import y`` is an edge to the module ``brainjepa.x.y`` when y is a submodule, else to
``brainjepa.x`` (a package means its ``__init__``).
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from itertools import pairwise
from pathlib import Path

import pytest

from brainjepa.cli import BUILTIN, COMMAND_HELP

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "brainjepa"

# data/, bottom to top: a module may import only from layers below its own.
DATA_LAYERS = [
    ["store_format", "tables", "atlases"],  # store file names; table/array parsing; label atlases
    ["nifti"],  # 4-D images + atlases -> ROI time series
    ["readers"],  # files -> runs
    ["fmriprep", "validate"],  # fMRIPrep derivatives -> runs (a source that reads itself); the checks, of any source
    ["store"],  # the store, and opening one
    ["normalize", "windows"],  # transforms of one sample
    ["dataset"],  # store + transforms -> torch Dataset
    ["prepare", "gradients", "simulate", "samples"],  # what writes stores / reads whole stores
]
BELOW_MODELS = ("data", "training", "evaluation", "report", "cli")
# Imports of brainjepa modules inside a function, as "module:function" -> why it must stay there. Empty: every
# module imports what it uses at its top, so the graph above is what runs and no import hides a cycle. An optional
# third-party package (huggingface_hub, brainspace, nilearn, ...) is imported lazily by the one module that wraps
# it, which callers import at the top as usual.
LOCAL_IMPORTS_ALLOWED: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _resolve(node: ast.ImportFrom, here: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = here if is_package else here.rpartition(".")[0]
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def imports_in(source: str, here: str, *, is_package: bool = False, modules: Collection[str] = ()) -> dict[str, int]:
    """Modules among `modules` that the code `source` of module `here` imports anywhere (any function, any
    ``if TYPE_CHECKING:`` block), with the line of the first such import."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, here, is_package)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            if target in modules and target != here:
                found.setdefault(target, node.lineno)
    return found


def _is_package_import(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(alias.name.split(".")[0] == PACKAGE for alias in node.names)
    return isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").split(".")[0] == PACKAGE)


def local_imports(source: str) -> list[tuple[str, int]]:
    """(function, line) of every import of a brainjepa module inside a function (or a class body), named by its
    innermost enclosing function; module level, including ``if TYPE_CHECKING:`` and ``try:``, is not local."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, scope: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                visit(child, getattr(child, "name", "<lambda>"))
            elif scope is not None and _is_package_import(child):
                found.append((scope, child.lineno))
            else:
                visit(child, scope)

    visit(ast.parse(source), None)
    return found


def imports_of(name: str) -> dict[str, int]:
    path = MODULES[name]
    return imports_in(path.read_text(encoding="utf-8"), name, is_package=path.name == "__init__.py", modules=MODULES)


GRAPH = {name: imports_of(name) for name in MODULES}
# brainjepa.cli imports each command's module by name (importlib.import_module, from its table COMMAND_HELP) and
# only when that command is on the line, so that `brainjepa --help` and `--version` start without torch. No import
# statement shows those edges, so they are added here: the cycle check sees the CLI as it runs.
GRAPH[f"{PACKAGE}.cli"].update({f"{PACKAGE}.cli.{name}": 0 for name in COMMAND_HELP if name not in BUILTIN})


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if root in state:
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_graph_is_read():
    assert f"{PACKAGE}.data.store" in GRAPH[f"{PACKAGE}.data.dataset"]
    assert f"{PACKAGE}.cli.pretrain" in GRAPH[f"{PACKAGE}.cli"]  # a lazy command edge
    assert len(MODULES) > 40


def test_every_kind_of_import_is_an_edge():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import brainjepa.io\n"
        "from . import layers\n"
        "from ..errors import DataError\n"
        "if TYPE_CHECKING:\n"
        "    from brainjepa.data import RunStore, store\n"
        "def f():\n"
        "    from brainjepa.training.loop import Trainer\n"
    )
    modules = {"brainjepa.io", "brainjepa.errors", "brainjepa.data", "brainjepa.data.store", "brainjepa.models.layers",
               "brainjepa.models.jepa", "brainjepa.training.loop"}
    found = imports_in(source, "brainjepa.models.jepa", modules=modules)
    assert found == {"brainjepa.io": 2, "brainjepa.models.layers": 3, "brainjepa.errors": 4, "brainjepa.data": 6,
                     "brainjepa.data.store": 6, "brainjepa.training.loop": 8}
    assert imports_in("from . import store", "brainjepa.data", is_package=True, modules=modules) == {
        "brainjepa.data.store": 1
    }


def test_find_cycle_reports_the_cycle():
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1}}) is None


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    if cycle:
        steps = [f"{a} (line {GRAPH[a][b]}) -> {b}" for a, b in pairwise(cycle)]
        pytest.fail("import cycle:\n  " + "\n  ".join(steps))


def test_models_import_no_higher_layer():
    bad = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name.startswith(f"{PACKAGE}.models")
        for target in targets
        if target.split(".")[1] in BELOW_MODELS
    ]
    assert not bad, "models take arrays and never import the data, training or evaluation stack: " + "; ".join(bad)


def test_data_layers_cover_every_module():
    listed = sorted(f"{PACKAGE}.data.{m}" for layer in DATA_LAYERS for m in layer)
    present = sorted(n for n in MODULES if n.startswith(f"{PACKAGE}.data."))
    assert listed == present, "add the new data module to DATA_LAYERS"


def test_data_is_a_one_way_stack():
    rank = {f"{PACKAGE}.data.{m}": i for i, layer in enumerate(DATA_LAYERS) for m in layer}
    bad = [
        f"{name} (layer {rank[name]}) imports {target} (layer {rank.get(target, 'package')})"
        for name in rank
        for target in GRAPH.get(name, {})
        if target.startswith(f"{PACKAGE}.data") and (target not in rank or rank[target] >= rank[name])
    ]
    assert not bad, "data/ modules import only from lower layers (never the package itself): " + "; ".join(bad)


def test_local_imports_are_found():
    source = (
        "from typing import TYPE_CHECKING\n"
        "import numpy\n"
        "from brainjepa.io import atomic_write\n"
        "if TYPE_CHECKING:\n"
        "    from brainjepa.data.store import RunStore\n"
        "try:\n"
        "    import brainjepa.hub\n"
        "except ImportError:\n"
        "    pass\n"
        "def f():\n"
        "    import torch\n"
        "    from brainjepa.models import BrainJEPA\n"
        "    def g():\n"
        "        if True:\n"
        "            import brainjepa.hub as hub\n"
        "class C:\n"
        "    def m(self):\n"
        "        from . import layers\n"
    )
    assert local_imports(source) == [("f", 12), ("g", 15), ("m", 18)]


def test_no_function_local_package_import():
    """A brainjepa import inside a function hides an edge of the graph (often one that dodges a cycle); each
    module imports what it uses at its top, apart from the commented entries of LOCAL_IMPORTS_ALLOWED."""
    found = {
        f"{name}:{function}": line
        for name, path in MODULES.items()
        for function, line in local_imports(path.read_text(encoding="utf-8"))
    }
    bad = [f"{MODULES[key.split(':')[0]].relative_to(SRC)}:{line} in {key.split(':')[1]}()"
           for key, line in sorted(found.items()) if key not in LOCAL_IMPORTS_ALLOWED]
    assert not bad, "function-local brainjepa imports (move them to the top of the module): " + "; ".join(bad)
    stale = sorted(set(LOCAL_IMPORTS_ALLOWED) - set(found))
    assert not stale, f"LOCAL_IMPORTS_ALLOWED lists imports that are gone: {stale}"
