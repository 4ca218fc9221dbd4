"""Shared fixtures: the golden tensors made by running the reference code (../shared/golden)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

GOLDEN = Path(os.environ.get("BRAINJEPA_GOLDEN", Path(__file__).resolve().parents[2] / "shared" / "golden"))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not (GOLDEN / "reference_small.safetensors").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"golden tensors missing at {GOLDEN} (CI must provide ../shared/golden)")
        pytest.skip(f"golden tensors not found at {GOLDEN}")
    return GOLDEN


@pytest.fixture(scope="session")
def golden(golden_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(golden_dir / "reference_small.safetensors"))
