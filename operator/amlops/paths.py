"""Where the project's data files live (policies, schemas): in a wheel, a checkout, an image.

The policies are edited in one place, ``policies/`` at the repository root. The wheel ships that
folder as the data-only package ``amlops._policies`` (``[tool.setuptools.package-dir]`` in
pyproject.toml), so an installed ``amlops`` finds ``amlops/_policies/{schemas,rules}`` next to its
code. A checkout has no such folder (nor does an editable install: setuptools' editable finder
cannot import a mapped package without ``__init__.py``), so there the checkout's ``policies/`` is
used, which is the same files.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PACKAGED_POLICIES = "_policies"  # amlops/_policies in an installed wheel


def repo_root() -> Path:
    """The checkout root (operator/amlops/paths.py -> ../..); meaningless in an installed wheel."""
    return Path(__file__).resolve().parents[2]


def packaged_policies_dir() -> Path | None:
    """The policies installed with the package (a wheel), or None in a checkout."""
    folder = resources.files("amlops") / PACKAGED_POLICIES
    # A wheel installed into site-packages is a real directory; a zip import is not supported.
    if isinstance(folder, Path) and (folder / "schemas").is_dir():
        return folder
    return None


def policies_dir() -> Path:
    """``AMLOPS_POLICIES`` wins (an override, e.g. for an image); else the policies installed
    with the package; else the checkout's policies/ (editable install, operator/ on sys.path)."""
    env = os.environ.get("AMLOPS_POLICIES")
    if env:
        return Path(env)
    return packaged_policies_dir() or repo_root() / "policies"


def schemas_dir() -> Path:
    return policies_dir() / "schemas"


def cache_dir() -> Path:
    """Caches that only save time: ``AMLOPS_CACHE_DIR``, else ``$XDG_CACHE_HOME/amlops``."""
    base = os.environ.get("AMLOPS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "amlops"
    )
    return Path(base)
