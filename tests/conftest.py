"""Shared test setup.

* The golden tensors made by running the reference code are found in ONE place, `GOLDEN`: ``$BRAINJEPA_GOLDEN``,
  else ``../shared/golden`` beside the repository. Every test that reads them takes the `golden_dir` fixture;
  when they are missing the test skips locally and fails under CI (``CI=true``), so CI cannot pass without them.
* Tests marked ``network`` need the internet (PyPI). They are skipped unless ``--run-network`` is given or
  ``BRAINJEPA_NETWORK=1``; every other test is stopped if it opens a connection to a non-loopback address.
* ``precision="auto"`` sees a CPU without native bf16 (fp32), so results do not depend on the test machine.
* One tiny-model factory, `tiny_model` (``from conftest import tiny_model``), one `one_thread` fixture, and one
  simulated quickstart run per session, `quickstart_run`, shared by the quickstart tests.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

GOLDEN = Path(os.environ.get("BRAINJEPA_GOLDEN", Path(__file__).resolve().parents[2] / "shared" / "golden"))
GOLDEN_MARKER = "reference_small.safetensors"
TRUE = ("1", "true", "yes")


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in TRUE


def require_golden(path: Path) -> Path:
    """`path` if it holds the golden set; otherwise skip the test, or fail it under CI."""
    if not (path / GOLDEN_MARKER).is_file():
        if _flag("CI"):
            pytest.fail(f"golden tensors missing at {path} (CI must provide them: ../shared/golden or "
                        "$BRAINJEPA_GOLDEN)", pytrace=False)
        pytest.skip(f"golden tensors not found at {path} (set BRAINJEPA_GOLDEN)")
    return path


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return require_golden(GOLDEN)


@pytest.fixture(scope="session")
def golden(golden_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(golden_dir / GOLDEN_MARKER))


# ------------------------------------------------------------------------------------------------ network
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-network", action="store_true", help="run the tests marked `network` (need PyPI)")


def network_enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("--run-network")) or _flag("BRAINJEPA_NETWORK")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if network_enabled(config):
        return
    skip = pytest.mark.skip(reason="needs the network: run with --run-network or BRAINJEPA_NETWORK=1")
    for item in items:
        if item.get_closest_marker("network"):
            item.add_marker(skip)


def _is_local(address: object) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths
        return True
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:  # a host name other than localhost
        return False


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests not marked `network` may only connect to this machine (loopback, Unix sockets)."""
    if request.node.get_closest_marker("network"):
        return
    connect = socket.socket.connect

    def guarded(sock: socket.socket, address: object) -> None:
        if not _is_local(address):
            raise RuntimeError(f"{request.node.nodeid} connects to {address!r}: mark it @pytest.mark.network")
        connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


# torch.compile with the token dimension marked dynamic builds one graph for every mask size on torch 2.13 (CI's);
# on torch 2.4.0, the declared minimum, dynamo still recompiles for new sizes (6 graphs in 8 steps, `make min-deps`,
# 2026-12-03): slower to start, the same numbers. Tests assert the one graph only where it was measured.
ONE_COMPILED_GRAPH = tuple(int(v) for v in importlib.metadata.version("torch").split(".")[:2]) >= (2, 13)


# ------------------------------------------------------------------------------------------------ precision
@pytest.fixture(autouse=True)
def _cpu_without_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """`precision="auto"` on a CPU means fp32 in every test, whatever this CPU has: results that tests compare
    exactly must not depend on the machine (or on a timing). tests/test_precision.py sets the CPU's facts itself."""
    from brainjepa import precision

    monkeypatch.setattr(precision, "cpu_flags", lambda path=precision.CPUINFO: {"avx2"})


@pytest.fixture(autouse=True)
def _embedding_not_timed(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Embedding calls and pretraining runs never time the encoder in tests (batch 32, as on a GPU; SDPA): a timed
    batch size or kernel would make results depend on the machine, and a stored decision would leak into
    ~/.cache. tests/test_tuning.py times."""
    from brainjepa import tuning

    monkeypatch.setattr(tuning, "MIN_WINDOWS", 10**9)
    monkeypatch.setattr(tuning, "KERNEL_SHARE", 0.0)
    monkeypatch.setattr(tuning, "MIN_STEPS", 10**9)
    monkeypatch.setattr(tuning, "cache_root", lambda: tmp_path_factory.getbasetemp() / "cache")


@pytest.fixture(scope="module")
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 simulated subjects (coupled oscillators on a modular connectome), 80 frames, the test module's `R` ROIs.

    Shared by the training, config, compile, run-folder and probe tests; a module that defines its own `store`
    fixture uses that one instead."""
    from brainjepa.data.simulate import SimulationConfig, simulate_store

    path = tmp_path_factory.mktemp("store") / "s"
    simulate_store(path, SimulationConfig(subjects=16, rois=request.module.R, frames=80, seed=0), progress=False)
    return path


# ------------------------------------------------------------------------------------------------ tiny models
TINY_DIMS = {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2, "pred_embed_dim": 16, "pred_depth": 1,
             "gradient_dim": 3}


def tiny_model(rois: int, frames: int = 32, *, seed: int = 0, metadata: dict[str, Any] | None = None, **dims: Any):
    """A tiny seeded BrainJEPA (vit_tiny with TINY_DIMS, any ModelConfig field overridden by `dims`): weights
    from ``torch.manual_seed(seed)``, the [rois, gradient_dim] gradient from numpy's seed-`seed` normal."""
    import torch

    from brainjepa.models import BrainJEPA, model_config

    torch.manual_seed(seed)
    cfg = model_config("vit_tiny", num_rois=rois, num_frames=frames, **{**TINY_DIMS, **dims})
    gradient = np.random.default_rng(seed).standard_normal((rois, cfg.gradient_dim))
    return BrainJEPA(cfg, gradient, metadata=metadata)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids OpenMP spin-waiting when the 2 cores are shared (as in DataLoader
    workers). A module takes it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------ CLI to API
def cli_call(monkeypatch: pytest.MonkeyPatch, target: str, argv: list[str]) -> dict[str, Any]:
    """Run `brainjepa argv` with the API function at `target` (e.g. "brainjepa.cli.probe.probe_store") replaced by
    a stand-in that does no work, and return the arguments the command passed it, by the real function's parameter
    names (those collected by a ``**kwargs`` parameter among them): whether each flag reaches its API."""
    import importlib
    import inspect

    from brainjepa.cli import main

    module, name = target.rsplit(".", 1)
    real = getattr(importlib.import_module(module), name)
    signature = inspect.signature(real)  # follows __wrapped__ past an earlier call's stand-in
    seen: dict[str, Any] = {}

    class Called(Exception):
        pass

    def stand_in(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs).arguments
        for param, value in bound.items():
            kind = signature.parameters[param].kind
            seen.update(value if kind is inspect.Parameter.VAR_KEYWORD else {param: value})
        raise Called

    stand_in.__wrapped__ = real
    monkeypatch.setattr(target, stand_in)
    with pytest.raises(Called):
        main(argv)
    return seen


# ------------------------------------------------------------------------------------------------ quickstart
@dataclass(frozen=True)
class QuickstartRun:
    """One simulated `brainjepa quickstart` (its folder, exit code and what it wrote to stderr)."""

    out: Path
    code: int
    stderr: str


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory: pytest.TempPathFactory) -> QuickstartRun:
    """`brainjepa quickstart --data simulated` with a tiny budget, run once for the tests that read its report
    (about a minute and a half). A test that writes into its folder restores it (tests/test_quickstart_reproduce.py)."""
    from brainjepa.cli import main

    out = tmp_path_factory.mktemp("quickstart") / "qs"
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["quickstart", "--data", "simulated", "--minutes", "0.02", "--folds", "2", "--seeds", "1",
                     "--out", str(out)])
    return QuickstartRun(out, code, stderr.getvalue())
