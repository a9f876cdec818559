"""Where the project's data files live (policies, schemas), for a checkout and for an image."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    # operator/amlops/paths.py -> the checkout root
    return Path(__file__).resolve().parents[2]


def policies_dir() -> Path:
    """``AMLOPS_POLICIES`` wins (the container image sets it); else the checkout's policies/."""
    env = os.environ.get("AMLOPS_POLICIES")
    return Path(env) if env else repo_root() / "policies"


def schemas_dir() -> Path:
    return policies_dir() / "schemas"


def cache_dir() -> Path:
    """Caches that only save time: ``AMLOPS_CACHE_DIR``, else ``$XDG_CACHE_HOME/amlops``."""
    base = os.environ.get("AMLOPS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "amlops"
    )
    return Path(base)
