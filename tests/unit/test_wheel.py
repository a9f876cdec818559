"""The wheel is a complete install: schemas, rules and py.typed ship inside it.

The slow tests build the sdist and, from it, the wheel (what ``python -m build`` does), offline,
from a copy of the working tree; install the wheel into a fresh virtual environment that sees
the dev environment's third-party packages but not its amlops; and check that the installed
``amlops``, run from outside the repository without ``AMLOPS_POLICIES``, finds exactly what the
editable install finds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amlops import paths

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator"
POLICIES = ROOT / "policies"
MANIFESTS = ROOT / "manifests"
BROKEN = ROOT / "tests" / "fixtures" / "broken"
TIMEOUT = 300

# What a build never needs from the working tree (mostly .gitignore'd).
_NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".amlops",
    ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
)  # fmt: skip


def _listed_packages() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return set(tomllib.load(f)["tool"]["setuptools"]["packages"])


def _rule_files() -> list[Path]:
    return sorted((POLICIES / "rules").glob("*.yaml"))


def _schema_files() -> list[Path]:
    return sorted((POLICIES / "schemas").glob("*.schema.json"))


# -- fast: the packaging configuration and the checkout ---------------------------------------


def test_every_package_under_operator_is_listed_for_the_wheel() -> None:
    folders = {p.parent for p in (OPERATOR / "amlops").rglob("*.py")}
    found = {".".join(f.relative_to(OPERATOR).parts) for f in folders}
    assert _listed_packages() == found | {"amlops._policies"}


def test_a_checkout_reads_the_repository_policies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMLOPS_POLICIES", raising=False)
    assert paths.packaged_policies_dir() is None  # no copy next to the code in a checkout
    assert paths.policies_dir() == POLICIES
    assert paths.schemas_dir() == POLICIES / "schemas"


def test_amlops_policies_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AMLOPS_POLICIES", str(tmp_path))
    assert paths.policies_dir() == tmp_path
    assert paths.schemas_dir() == tmp_path / "schemas"


# -- slow: build, install into a fresh venv, compare with the editable install ----------------


def _run(cmd: Sequence[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _clean_env(cache: Path) -> dict[str, str]:
    """No AMLOPS_POLICIES, nothing that adds to or replaces sys.path, a private cache."""
    drop = {"AMLOPS_POLICIES", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONNOUSERSITE"] = "1"
    env["AMLOPS_CACHE_DIR"] = str(cache)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist from a copy of the working tree (builds never write into the shared checkout),
    then the wheel from the unpacked sdist; no build isolation, no index: offline."""
    tmp = tmp_path_factory.mktemp("build")
    src, dist = tmp / "src", tmp / "dist"
    shutil.copytree(ROOT, src, ignore=_NOT_SOURCES, symlinks=True)
    build_sdist = "import sys, setuptools.build_meta as b; print(b.build_sdist(sys.argv[1]))"
    sdist = dist / _run([sys.executable, "-c", build_sdist, dist], cwd=src).split()[-1]
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "sdist", filter="data")
    (unpacked,) = (tmp / "sdist").iterdir()
    pip_wheel = ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "--wheel-dir"]
    _run([sys.executable, "-m", "pip", *pip_wheel, dist, unpacked], cwd=tmp)
    (built,) = dist.glob("amlops-*.whl")
    return built


@dataclass(frozen=True)
class Install:
    name: str
    amlops: Path  # the console script
    env: dict[str, str]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Install:
    """A new venv with the wheel installed (no pip of its own, no deps, no index). A .pth line
    then adds the dev venv's site-packages for the third-party dependencies: a plain path in a
    .pth does not process that directory's own .pth files, so the dev venv's editable amlops
    stays invisible."""
    venv = tmp_path_factory.mktemp("fresh-venv")
    _run([sys.executable, "-m", "venv", "--clear", "--without-pip", venv], cwd=venv)
    python = venv / "bin" / "python"
    pip_install = ["install", "--no-deps", "--no-index", "--no-cache-dir"]
    _run([sys.executable, "-m", "pip", "--python", python, *pip_install, wheel], cwd=venv)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(_run([python, "-c", purelib], cwd=venv).strip())
    dev = sysconfig.get_paths()
    (site / "amlops-test-dev-deps.pth").write_text(
        "".join(f"{p}\n" for p in dict.fromkeys([dev["purelib"], dev["platlib"]]))
    )
    return Install("wheel", venv / "bin" / "amlops", _clean_env(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def editable(tmp_path_factory: pytest.TempPathFactory) -> Install:
    script = Path(sys.executable).with_name("amlops")
    assert script.is_file(), f"no amlops console script next to {sys.executable}"
    return Install("editable", script, _clean_env(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working directory outside the repository."""
    assert not tmp_path.resolve().is_relative_to(ROOT)
    return tmp_path


def _both(
    editable: Install, fresh: Install, args: Sequence[str | Path], cwd: Path, status: int
) -> tuple[Any, Any]:
    """The same command through both installs, concurrently; their parsed JSON output."""

    def one(install: Install) -> Any:
        proc = subprocess.run(
            [str(install.amlops), *map(str, args)],
            cwd=cwd,
            env=install.env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert proc.returncode == status, f"{install.name}: {proc.stdout}\n{proc.stderr}"
        return json.loads(proc.stdout)

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(one, (editable, fresh))
    return a, b


def _findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Errors then warnings, with files relative to the repository where they are inside it."""
    out = []
    for finding in [*report["errors"], *report["warnings"]]:
        file = Path(finding["file"])
        if file.is_absolute() and file.resolve().is_relative_to(ROOT):
            file = file.resolve().relative_to(ROOT)
        out.append({**finding, "file": file.as_posix()})
    return out


@pytest.mark.slow
def test_the_wheel_holds_the_schemas_rules_and_every_module(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for f in _schema_files():
        assert f"amlops/_policies/schemas/{f.name}" in names
    for f in _rule_files():
        assert f"amlops/_policies/rules/{f.name}" in names
    assert "amlops/py.typed" in names
    for module in (OPERATOR / "amlops").rglob("*.py"):
        assert module.relative_to(OPERATOR).as_posix() in names
    # nothing else: no pulumi-policy-pack, no infra/, no tests/, no top-level policies/
    top = {n.split("/")[0] for n in names}
    (metadata,) = top - {"amlops"}
    assert metadata.endswith(".dist-info")
    shipped_data = {n for n in names if n.startswith("amlops/_policies/")}
    assert len(shipped_data) == len(_schema_files()) + len(_rule_files())


@pytest.mark.slow
def test_the_fresh_venv_imports_the_installed_amlops(fresh: Install, outside: Path) -> None:
    python = fresh.amlops.with_name("python")
    probe = (
        "import json, amlops, amlops.paths as p; print(json.dumps("
        "[amlops.__file__, str(p.policies_dir()), str(p.packaged_policies_dir())]))"
    )
    code, policies, packaged = json.loads(_run([python, "-c", probe], cwd=outside, env=fresh.env))
    venv = fresh.amlops.parents[1]
    assert Path(code).is_relative_to(venv / "lib"), code  # its own site-packages
    assert not Path(code).is_relative_to(ROOT)
    assert Path(policies) == Path(packaged) == Path(code).parent / "_policies"


@pytest.mark.slow
def test_the_wheel_validates_like_the_editable_install(
    editable: Install, fresh: Install, outside: Path
) -> None:
    listed_e, listed_w = _both(editable, fresh, ["policies", "--output", "json"], outside, 0)
    assert listed_w == listed_e
    assert len(listed_w) == len(_rule_files())  # every rule loaded, not zero

    mine_e, mine_w = _both(editable, fresh, ["validate", MANIFESTS, "--output", "json"], outside, 0)
    assert mine_w["kinds"] == mine_e["kinds"]
    assert sum(mine_w["kinds"].values()) == mine_w["manifests"] > 0
    assert mine_w["errors"] == mine_e["errors"] == []  # no "no schema for kind 'Model'"
    assert _findings(mine_w) == _findings(mine_e)

    # Broken fixtures: findings from the schemas and from the policy rules must agree too.
    args = [MANIFESTS / "platform", MANIFESTS / "environments", MANIFESTS / "models", BROKEN]
    bad_e, bad_w = _both(editable, fresh, ["validate", *args, "--output", "json"], outside, 1)
    assert bad_w["kinds"] == bad_e["kinds"]
    assert _findings(bad_w) == _findings(bad_e)
    rules = {f["rule"] for f in _findings(bad_w)}
    assert "schema" in rules
    assert rules & {p["id"] for p in listed_w}, "no policy rule fired"
