"""The core's Azure tables: consistent with the policy data, and usable without the program."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from amlops.core.azure import (
    ASSET_NAME,
    BUILTIN_ROLES,
    COMPUTE_NAME,
    DEPLOYMENT_NAME,
    ENDPOINT_NAME,
    JOB_NAME,
    PRIVILEGED_ROLES,
    WORKSPACE_NAME,
    NameRule,
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


@pytest.mark.parametrize(
    ("rule", "name", "accepted"),
    [
        (ASSET_NAME, "1.model_x-y", True),
        (ASSET_NAME, ".model", False),
        (ASSET_NAME, "model x", False),
        (ENDPOINT_NAME, "ep-1", True),
        (ENDPOINT_NAME, "1ep", False),
        (ENDPOINT_NAME, "ep-", False),
        (ENDPOINT_NAME, "e_p", False),
        (DEPLOYMENT_NAME, "blue-2", True),
        (DEPLOYMENT_NAME, "blue-", False),
        (COMPUTE_NAME, "gpu-", True),
        (COMPUTE_NAME, "1gpu", False),
        (COMPUTE_NAME, "gpu_1", False),
        (WORKSPACE_NAME, "9ws_a-b", True),
        (WORKSPACE_NAME, "ws.a", False),
        (JOB_NAME, "1job_a-b", True),
        (JOB_NAME, "job.a", False),
        (ENDPOINT_NAME, "blue\n", False),  # a trailing newline is not part of a name
    ],
)
def test_azure_ml_name_rules_refuse_what_they_say(
    rule: NameRule, name: str, accepted: bool
) -> None:
    # the pattern and the words are written from one set of parameters
    assert (rule.problem(name) is None) == accepted
    symbols = {c for c in rule.says if c in "-_."}
    assert symbols == set(rule.symbols)
    assert ("starting with a letter or digit" in rule.says) == rule.digit_first
    assert ("not ending with" in rule.says) == (not rule.symbol_last)


def test_a_name_rule_checks_the_length_it_states() -> None:
    assert ENDPOINT_NAME.problem("ep") is not None
    assert ENDPOINT_NAME.problem("ep", length=False) is None
    assert "3 to 32" in ENDPOINT_NAME.says
    assert DEPLOYMENT_NAME.says == ENDPOINT_NAME.says and DEPLOYMENT_NAME.what == "deployment"


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
