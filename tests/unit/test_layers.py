"""Layers only point down: cli / handlers / infra -> reconcile -> backends -> kinds, core; the
GitOps package (fetch, artifacts, inventory, apply) sits with the drivers that use it.

Read from the source (ast), so an import inside a function or under TYPE_CHECKING counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "amlops"
ABOVE_CORE = (
    "amlops.backends",
    "amlops.reconcile",
    "amlops.cli",
    "amlops.handlers",
    "amlops.gitops",
)


def _imports(layer: str) -> list[tuple[str, str]]:
    """(module file, imported module) for every import in the layer's package."""
    found: list[tuple[str, str]] = []
    for file in sorted((PACKAGE / layer).rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.extend((file.name, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                assert node.level == 0, f"{file}: use absolute imports"
                # `from amlops.backends import base` imports the module amlops.backends.base
                found.extend((file.name, f"{node.module}.{a.name}") for a in node.names)
    assert found, f"no imports found under {layer}/"
    return found


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("layer", ["core", "kinds"])
def test_core_and_kinds_import_nothing_above_them(layer: str) -> None:
    upward = [(f, m) for f, m in _imports(layer) if _under(m, ABOVE_CORE)]
    assert upward == []


def test_reconcilers_import_only_the_backend_protocol() -> None:
    backends = [(f, m) for f, m in _imports("reconcile") if _under(m, ("amlops.backends",))]
    assert backends, "the reconcilers talk to backends through amlops.backends.base"
    assert [(f, m) for f, m in backends if not _under(m, ("amlops.backends.base",))] == []
    above = [(f, m) for f, m in _imports("reconcile") if _under(m, ABOVE_CORE[2:])]
    assert above == []


def test_backends_import_no_driver_or_reconciler() -> None:
    upward = [(f, m) for f, m in _imports("backends") if _under(m, ABOVE_CORE[1:])]
    assert upward == []


def test_gitops_imports_only_core_kinds_and_crds() -> None:
    """cli/ and handlers/ import it; it imports neither, nor the reconcilers or backends."""
    upward = [(f, m) for f, m in _imports("gitops") if _under(m, ABOVE_CORE[:-1])]
    assert upward == []
