"""The core's Azure tables: consistent with the policy data, and usable without the program."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from amlops.core.azure import (
    BUILTIN_ROLES,
    PRIVILEGED_ROLES,
    family_of,
    is_privileged,
    role_id,
    role_name_of,
)

ROOT = Path(__file__).resolve().parents[2]
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def allowlist() -> list[str]:
    rule = yaml.safe_load((ROOT / "policies/rules/compute-gpu-vm-allowlist.yaml").read_text())
    sizes: list[str] = rule["condition"]["properties"]["spec"]["properties"]["vmSize"]["enum"]
    return sizes


@pytest.mark.parametrize("size", allowlist())
def test_every_allowed_vm_size_is_one_azure_ml_offers(size: str) -> None:
    # compute.gpu-vm-allowlist is what rejects a misspelt size (no second rule says it again),
    # so the allowlist itself must only name sizes of a known family.
    assert family_of(size) is not None, f"{size} is in no VM family of amlops.core.azure"


def test_a_misspelt_size_is_in_no_family() -> None:
    assert family_of("Standard_NC24ads_A100_v5") is None
    assert family_of("Standard_NC24ads_A100_v4") is not None


def test_role_tables_hold_distinct_built_in_ids() -> None:
    ids = [*BUILTIN_ROLES.values(), *PRIVILEGED_ROLES.values()]
    assert all(GUID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)
    names = [n.casefold() for n in (*BUILTIN_ROLES, *PRIVILEGED_ROLES)]
    assert len(set(names)) == len(names)


def test_role_lookups_fold_case_and_read_any_scope_prefix() -> None:
    assert role_id(" acrpull ") == BUILTIN_ROLES["AcrPull"]
    assert role_id("Owner") is None and is_privileged("owner")
    assert not is_privileged("Reader")
    prefix = "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/"
    assert role_name_of(f"{prefix}{BUILTIN_ROLES['Reader']}") == "Reader"
    assert role_name_of(PRIVILEGED_ROLES["Owner"].upper()) == "Owner"  # GUIDs fold case too
    assert role_name_of(f"{prefix}00000000-0000-0000-0000-000000000000") is None


@pytest.mark.slow
def test_the_core_needs_neither_pulumi_nor_the_program() -> None:
    # Layers point down: infra/ imports the core, never the other way round.
    code = (
        "import sys; import amlops.core.validate, amlops.core.azure; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'infra', "
        "'pulumi_azure_native', 'pulumi_policy')); print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
