"""Optional extras: the packages each one installs, checked before a command or a lazy API name needs them.

`EXTRAS` mirrors ``[project.optional-dependencies]`` in pyproject.toml (tests/test_extras.py keeps them equal).
Whether a package is there is decided by `importlib.util.find_spec`, which finds a module without importing it, so
the check costs milliseconds and runs before any work. Standard library only: the package root imports this.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable

# extra -> {distribution name (what pip installs): top-level module it provides}
EXTRAS: dict[str, dict[str, str]] = {
    "data": {"pandas": "pandas", "scipy": "scipy", "scikit-learn": "sklearn", "nibabel": "nibabel",
             "nilearn": "nilearn", "pyarrow": "pyarrow"},
    "viz": {"matplotlib": "matplotlib"},
    "hub": {"huggingface_hub": "huggingface_hub"},
}


# The [data] extra's neuroimaging readers: only commands that may read images (NIfTI, CIFTI, fMRIPrep) need them.
# Commands that read stores and tables run without them, e.g. pretraining on a GPU image with no nibabel.
IMAGE_READERS = ("nibabel", "nilearn")


class MissingExtraError(ImportError):
    """An optional package is not installed; the message names the extra and the pip line that installs it."""


def installed(module: str) -> bool:
    """True when the top-level `module` can be imported (found on the path, or already imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module in sys.modules without a spec (or set to None to hide it)
        return sys.modules.get(module) is not None


def missing(extras: Iterable[str], without: Iterable[str] = ()) -> dict[str, list[str]]:
    """For each of `extras` with an uninstalled package: the distributions missing, in `EXTRAS` order; the
    distributions in `without` are not needed by the caller and not checked."""
    skip = set(without)
    out = {}
    for extra in extras:
        lacking = [dist for dist, module in EXTRAS[extra].items() if dist not in skip and not installed(module)]
        if lacking:
            out[extra] = lacking
    return out


def install_hint(what: str, lacking: dict[str, list[str]]) -> str:
    """One line, e.g. ``brainjepa X: needs the [data] extra (pandas not installed): pip install 'brainjepa[data]'``."""
    names = ",".join(lacking)
    packages = ", ".join(dist for dists in lacking.values() for dist in dists)
    noun = "extra" if len(lacking) == 1 else "extras"
    return f"{what}: needs the [{names}] {noun} ({packages} not installed): pip install 'brainjepa[{names}]'"


def require(what: str, extras: Iterable[str]) -> None:
    """Raise `MissingExtraError` (one line, with the pip command) unless every package of `extras` is installed."""
    lacking = missing(extras)
    if lacking:
        raise MissingExtraError(install_hint(what, lacking))


def extra_of(module: str | None) -> tuple[str, str] | None:
    """(extra, distribution) that provides the top-level package of a module name, or None if no extra does."""
    top = (module or "").split(".")[0]
    for extra, dists in EXTRAS.items():
        for dist, name in dists.items():
            if name == top:
                return extra, dist
    return None


def hint_for_import_error(what: str, err: ImportError) -> str | None:
    """The `install_hint` line for an ImportError of a package an extra provides (None for any other)."""
    found = extra_of(getattr(err, "name", None))
    return None if found is None else install_hint(what, {found[0]: [found[1]]})
