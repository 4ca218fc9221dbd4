"""Missing extras: every command checks its extras before any work and refuses in one line naming the one to
install; the core install builds the CLI; `brainjepa.BrainJEPAEmbedder` without scikit-learn names [data].

Packages are hidden, never uninstalled: ``sys.modules[name] = None`` makes `importlib.util.find_spec` answer None
and any import fail, in this process (monkeypatch) or in a fresh interpreter (where nothing is imported yet).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.version import Version

import brainjepa
import brainjepa.cli as cli
from brainjepa.cli import COMMAND_EXTRAS, build_parser, main
from brainjepa.extras import EXTRAS, MissingExtraError, extra_of, install_hint, missing, require

ROOT = Path(__file__).resolve().parents[1]
R = 20  # ROIs of the conftest `store` fixture
DATA_MODULES = list(EXTRAS["data"].values())
ALL_MODULES = [m for dists in EXTRAS.values() for m in dists.values()]
DATA_HINT = ("needs the [data] extra (pandas, scipy, scikit-learn, nibabel, nilearn, pyarrow not installed): "
             "pip install 'brainjepa[data]'")
# what a store-only command (cli.STORE_ONLY) names: it does not need the image readers
STORE_HINT = ("needs the [data] extra (pandas, scipy, scikit-learn, pyarrow not installed): "
              "pip install 'brainjepa[data]'")


def _hide(monkeypatch: pytest.MonkeyPatch, modules: list[str]) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _run_hidden(modules: list[str], code: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter where `modules` cannot be imported (as if not installed)."""
    prelude = f"import sys\nsys.modules.update(dict.fromkeys({modules!r}))\n"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def _requirement_names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower().replace("_", "-") for r in requirements}


def test_extras_table_is_pyprojects():
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, dists in EXTRAS.items():
        assert _requirement_names(optional[extra]) == {d.lower().replace("_", "-") for d in dists}, extra
    assert optional["all"] == [f"brainjepa[{','.join(EXTRAS)}]"]  # every documented command
    assert optional["gradients"] == ["brainjepa[data]"]  # the old name: numpy/scipy gradients, no BrainSpace
    assert not any("brainspace" in r or "vtk" in r for extra in EXTRAS for r in optional[extra])
    assert any(r.startswith("brainspace") for r in optional["dev"])  # the tests' reference only


def test_min_deps_pins_are_the_declared_lower_bounds():
    """`make min-deps` tests exactly the minimum versions pyproject.toml declares (core and every extra of [all])."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for extra in EXTRAS for r in project["optional-dependencies"][extra]]
    declared = {}
    for requirement in project["dependencies"] + extras:
        name, low = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement).groups()
        declared[name.lower().replace("_", "-")] = Version(low)
    pins = {}
    for line in (ROOT / "constraints" / "min-deps.txt").read_text().splitlines():
        pin = line.split("#")[0].strip()
        if pin:
            name, version = pin.split("==")
            pins[name.lower().replace("_", "-")] = Version(version)
    assert pins == declared


def test_brainmarks_extra_can_resolve_beside_torch():
    """brainmarks 0.1.1 pins setuptools<67 and torch 2.13 needs setuptools>=77.0.3: the extra holds brainmarks'
    other dependencies, brainmarks itself goes in with --no-deps (README)."""
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = _requirement_names(optional["brainmarks"])
    assert "brainmarks" not in names and "setuptools" not in names
    assert {"templateflow", "peft", "wandb", "pycortex"} <= names
    assert "pip install --no-deps brainmarks==0.1.1" in (ROOT / "README.md").read_text()


def test_every_command_declares_its_extras():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMAND_EXTRAS)
    assert all(set(extras) <= set(EXTRAS) for extras in COMMAND_EXTRAS.values())
    assert COMMAND_EXTRAS["info"] == COMMAND_EXTRAS["align"] == ()


# A minimal command line per command: it parses, and would start work if its extras were there.
COMMAND_LINES = {
    "quickstart": ["quickstart", "--out", "{tmp}/q"],
    "validate": ["validate", "{tmp}/in"],
    "prepare": ["prepare", "{tmp}/in", "--out", "{tmp}/store"],
    "simulate": ["simulate", "--out", "{tmp}/sim"],
    "samples": ["samples", "list"],
    "gradients": ["gradients", "--fc", "{tmp}/fc.csv", "--out", "{tmp}/g.csv"],
    "pretrain": ["pretrain", "--out", "{tmp}/run", "data.path={tmp}/store"],
    "embed": ["embed", "--model", "{tmp}/m", "--data", "{tmp}/store", "--out", "{tmp}/e.npy"],
    "probe": ["probe", "--data", "{tmp}/store", "--label", "group", "--model", "{tmp}/m"],
    "evaluate": ["evaluate", "--model", "{tmp}/m", "--out", "{tmp}/ev"],
    "finetune": ["finetune", "--model", "{tmp}/m", "--data", "{tmp}/store", "--label", "group", "--out", "{tmp}/ft"],
}
NEEDS_DATA = [c for c, extras in COMMAND_EXTRAS.items() if "data" in extras]


def test_command_lines_cover_every_command_that_needs_an_extra():
    assert set(COMMAND_LINES) == {c for c, extras in COMMAND_EXTRAS.items() if extras}


@pytest.mark.parametrize("command", NEEDS_DATA)
def test_command_without_data_is_refused_in_one_line_before_any_work(command, monkeypatch, tmp_path, capsys):
    _hide(monkeypatch, DATA_MODULES)
    argv = [a.format(tmp=tmp_path) for a in COMMAND_LINES[command]]
    assert main(argv) == 2
    hint = STORE_HINT if command in cli.STORE_ONLY else DATA_HINT
    assert capsys.readouterr().err == f"brainjepa {command}: {hint}\n"  # only the packages needed are named
    assert list(tmp_path.iterdir()) == []  # nothing written, no folder made


def test_quickstart_without_viz_names_only_viz(monkeypatch, tmp_path, capsys):
    """Its report is made of figures; evaluate, whose figure is optional, runs without [viz] (test_evaluate.py)."""
    _hide(monkeypatch, ["matplotlib"])
    assert main([a.format(tmp=tmp_path) for a in COMMAND_LINES["quickstart"]]) == 2
    assert capsys.readouterr().err == ("brainjepa quickstart: needs the [viz] extra (matplotlib not installed): "
                                       "pip install 'brainjepa[viz]'\n")


def test_import_error_of_an_extra_inside_a_command_is_one_line(monkeypatch, tmp_path, capsys):
    """Were the table to miss a need, the ImportError raised while the command runs gives the same line."""
    _hide(monkeypatch, ["pandas"])
    monkeypatch.setitem(cli.COMMAND_EXTRAS, "simulate", ())
    assert main(["simulate", "--out", str(tmp_path / "sim"), "--subjects", "2", "--no-progress"]) == 2
    assert capsys.readouterr().err == ("brainjepa simulate: needs the [data] extra (pandas not installed): "
                                       "pip install 'brainjepa[data]'\n")
    with pytest.raises(ImportError):  # -v: the error itself, with its traceback, for a bug report
        main(["-v", "simulate", "--out", str(tmp_path / "sim"), "--subjects", "2", "--no-progress"])


def test_data_alone_runs_pretrain_with_computed_gradients(store, tmp_path, monkeypatch, caplog):
    """[data] without [viz], [hub] or BrainSpace: pretrain computes the gradients itself and skips its curves plot
    with one warning."""
    _hide(monkeypatch, ["matplotlib", "huggingface_hub", "brainspace", "vtk"])
    overrides = {
        "data.path": store, "data.crop_size": f"[{R},64]", "data.batch_size": 4, "data.num_workers": 0,
        "data.sampling_rate": 1, "data.pin_mem": "false", "data.gradient_components": 4,
        "data.gradient_sparsity": 0.5, "mask.patch_size": 16, "meta.model_name": "vit_tiny", "meta.embed_dim": 32,
        "meta.depth": 1, "meta.num_heads": 2, "meta.pred_emb_dim": 16, "meta.pred_depth": 1,
        "meta.use_bfloat16": "false", "meta.accumulation_steps": 1, "optimization.epochs": 1,
        "optimization.warmup": 0, "optimization.max_steps": 2, "data.holdout": 0,
    }
    run = tmp_path / "run"
    assert main(["pretrain", "--out", str(run), *(f"{k}={v}" for k, v in overrides.items())]) == 0
    assert (run / "gradients.csv").is_file()
    plots = [r for r in caplog.records if "matplotlib" in r.getMessage()]
    assert len(plots) == 1 and plots[0].levelname == "WARNING" and "brainjepa[viz]" in plots[0].getMessage()


def test_core_install_builds_the_cli_and_runs_info():
    proc = _run_hidden(ALL_MODULES, (
        "from brainjepa.cli import main\n"
        "assert main(['info']) == 0\n"
        "print('RC', main(['gradients', '--fc', 'fc.csv', '--out', 'g.csv']))\n"
        "try:\n    main(['--help'])\nexcept SystemExit as e:\n    print('HELP', e.code)\n"
    ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RC 2" in proc.stdout and "HELP 0" in proc.stdout
    assert proc.stderr.strip() == f"brainjepa gradients: {STORE_HINT}"


def test_python_m_brainjepa_without_data_exits_2(tmp_path):
    proc = _run_hidden(DATA_MODULES, (
        "import runpy\n"
        f"sys.argv = ['brainjepa', 'simulate', '--out', {str(tmp_path / 'sim')!r}]\n"
        "runpy.run_module('brainjepa', run_name='__main__')\n"
    ))
    assert proc.returncode == 2
    assert proc.stderr == f"brainjepa simulate: {STORE_HINT}\n"
    assert list(tmp_path.iterdir()) == []


def test_embedder_without_sklearn_names_the_extra():
    proc = _run_hidden(["sklearn"], (
        "import brainjepa\n"
        "assert brainjepa.BrainJEPA is not None\n"  # the model API needs no extra
        "try:\n    from brainjepa import BrainJEPAEmbedder\nexcept ImportError as e:\n"
        "    print(type(e).__name__, '|', e)\n"
    ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == ("MissingExtraError | brainjepa.BrainJEPAEmbedder: needs the [data] extra "
                                   "(scikit-learn not installed): pip install 'brainjepa[data]'")


def test_extras_helpers(monkeypatch):
    assert extra_of("sklearn.linear_model") == ("data", "scikit-learn")
    assert extra_of("templateflow") is None and extra_of(None) is None
    assert missing(["data", "viz", "hub"]) == {}
    require("x", ["data"])
    _hide(monkeypatch, ["matplotlib", "pyarrow"])
    assert missing(["data", "viz"]) == {"data": ["pyarrow"], "viz": ["matplotlib"]}
    assert install_hint("x", missing(["data", "viz"])) == (
        "x: needs the [data,viz] extras (pyarrow, matplotlib not installed): pip install 'brainjepa[data,viz]'")
    with pytest.raises(MissingExtraError, match=r"^y: needs the \[viz\] extra"):
        require("y", ["viz"])


def test_a_module_imported_without_a_spec_counts_as_installed(monkeypatch):
    """A module already in sys.modules whose __spec__ is None (find_spec raises ValueError) is there: an extra that
    provides it is not reported missing."""
    import types

    from brainjepa.extras import installed

    module = types.ModuleType("brainjepa_specless_module")
    module.__spec__ = None
    monkeypatch.setitem(sys.modules, "brainjepa_specless_module", module)
    assert installed("brainjepa_specless_module")
    monkeypatch.setitem(sys.modules, "brainjepa_specless_module", None)  # hidden, as the tests hide packages
    assert not installed("brainjepa_specless_module")


def test_requires_python_is_what_is_tested():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]
    assert sys.version_info[:2] >= (3, 11)


def test_makefile_torch_index_defaults_to_plain_pip():
    """Plain `pip install torch==2.13.0` by default (offline mirrors, macOS, Windows); TORCH_INDEX=<PyTorch CPU
    index> for CPU-only Linux, documented in the README."""
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_INDEX \?=\s*$", makefile, flags=re.M)
    assert "$(BIN)/pip install -q torch==2.13.0\n" in makefile
    assert "--index-url $(TORCH_INDEX) torch==2.13.0" in makefile
    assert "make install TORCH_INDEX=https://download.pytorch.org/whl/cpu" in " ".join(
        (ROOT / "README.md").read_text().split())


def test_license_and_citation():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0 AND BSD-3-Clause"
    for pattern in project["license-files"]:
        assert list(ROOT.glob(pattern)), pattern
    assert "Apache License\n                           Version 2.0, January 2004" in (ROOT / "LICENSE").read_text()
    notice = (ROOT / "LICENSES/BSD-3-Clause-BrainSpace.txt").read_text()
    assert "Copyright (c) 2019, The BrainSpace developers" in notice
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == brainjepa.__version__ and cff["license"] == "Apache-2.0"
    paper = cff["preferred-citation"]
    assert paper["title"].startswith("Brain-JEPA: Brain Dynamics Foundation Model with Gradient Positioning")
    assert [a["family-names"] for a in paper["authors"]] == ["Dong", "Li", "Wu", "Nguyen", "Chong", "Ji", "Tong",
                                                              "Chen", "Zhou"]
    assert paper["year"] == 2024 and "NeurIPS 2024" in paper["collection-title"]
    assert "10.48550/arXiv.2409.19407" in [i["value"] for i in paper["identifiers"]]


def test_store_commands_run_without_the_image_readers(tmp_path):
    """simulate, gradients and pretrain read stores and tables only: on a machine with pandas and scikit-learn but
    no nibabel or nilearn (a GPU image) they run, in a fresh interpreter where importing either fails. They used to
    be refused by the [data] check; the image commands still are."""
    code = f"""
from brainjepa.cli import main
t = {str(tmp_path)!r}
assert main(["simulate", "--out", t + "/s", "--subjects", "4", "--rois", "20", "--frames", "64", "--no-progress"]) == 0
assert main(["gradients", "--data", t + "/s", "--out", t + "/g.csv", "--n-components", "4", "--sparsity", "0.5",
            "--no-progress"]) == 0
tiny = ["data.crop_size=[20,64]", "data.batch_size=2", "data.num_workers=0", "data.sampling_rate=1",
        "data.pin_mem=false", "data.holdout=0", "data.gradient_csv_path=" + t + "/g.csv", "model.gradient_dim=4",
        "mask.patch_size=16", "meta.model_name=vit_tiny", "meta.embed_dim=32", "meta.depth=1", "meta.num_heads=2",
        "meta.pred_emb_dim=16", "meta.pred_depth=1", "meta.accumulation_steps=1", "optimization.epochs=1",
        "optimization.warmup=0", "optimization.max_steps=1"]
assert main(["pretrain", "--out", t + "/run", "--no-progress", "data.path=" + t + "/s", *tiny]) == 0
assert main(["validate", t + "/s"]) == 2
"""
    proc = _run_hidden(["nibabel", "nilearn"], code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "needs the [data] extra (nibabel, nilearn not installed)" in proc.stderr  # validate may read images
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
