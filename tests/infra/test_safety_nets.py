"""The nets under the program's tests: mypy --strict, and pytest failing a test that forgets
the Pulumi test decorator (it would return an unawaited Output and pass without checking)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.infra.conftest import ROOT

pytestmark = pytest.mark.slow  # subprocesses; mypy takes seconds warm, a minute on a cold cache

WRONG = """
from pulumi_azure_native import machinelearningservices as ml

ml.ComputeArgs(
    resource_group_name="rg",
    workspace_name="ws",
    # A plain dict in the union-typed `properties`: sent without camelCase conversion.
    properties={"compute_type": "AmlCompute", "properties": {"vm_size": "Standard_NC4as_T4_v3"}},
)
ml.ScaleSettingsArgs(max_node_count="4")
"""


def mypy(*targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *targets],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_infra_is_mypy_strict_clean() -> None:
    result = mypy("infra")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_rejects_a_dict_in_a_union_typed_property(tmp_path: Path) -> None:
    snippet = tmp_path / "wrong_args.py"
    snippet.write_text(textwrap.dedent(WRONG), encoding="utf-8")
    result = mypy(str(snippet))
    assert result.returncode == 1
    assert 'Argument "properties" to "ComputeArgs"' in result.stdout
    assert 'Argument "max_node_count" to "ScaleSettingsArgs"' in result.stdout


FORGOTTEN = """
import pulumi


def test_forgot_the_decorator() -> pulumi.Output[None]:
    def check(value: int) -> None:
        assert value == 2  # never runs: nothing awaits the Output

    return pulumi.Output.from_input(1).apply(check)
"""


def test_a_test_without_the_pulumi_decorator_fails(tmp_path: Path) -> None:
    test_file = tmp_path / "test_forgotten.py"
    test_file.write_text(textwrap.dedent(FORGOTTEN), encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-c",
            str(ROOT / "pyproject.toml"),
            "--rootdir",
            str(tmp_path),
            str(test_file),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout
    assert "PytestReturnNotNoneWarning" in result.stdout
