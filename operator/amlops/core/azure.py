"""What amlops knows about Azure itself: built-in roles, VM sizes, Azure ML names, derived names.

One table each, shared by the checks ``amlops validate`` runs (policies/rules/, core/policy.py)
and by the Pulumi program in infra/, which resolves names with them. Pure data: no I/O, no
Pulumi, no Azure SDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from types import MappingProxyType

# -- roles ---------------------------------------------------------------------------------------

# Built-in role name -> role definition ID (the same in every tenant). Deliberately short: the
# roles an ML platform hands out. Anything else is an error at the manifest's line
# (rbac.supported-role), not a guess; add a row (the ID comes from
# `az role definition list --name "<role>"`) to allow another.
BUILTIN_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "AzureML Data Scientist": "f6c7c914-8db3-469d-8ca1-694a8f32e121",
        "AzureML Compute Operator": "e503ece1-11d0-4e8e-8e2c-7a6c3bf38815",
        "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
        "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
        "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    }
)

# Recognised but never granted: they can change or delete a workspace and grant access to
# others. Named so that findings (rbac.prod-no-owner) and read-back role IDs say which one.
PRIVILEGED_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    }
)

ROLE_NAMES_BY_ID: Mapping[str, str] = MappingProxyType(
    {role_id: name for name, role_id in {**BUILTIN_ROLES, **PRIVILEGED_ROLES}.items()}
)


def _lookup(table: Mapping[str, str], name: str) -> str | None:
    # Azure matches role names case-insensitively, so `azureml data scientist` is the same role.
    folded = name.strip().casefold()
    return next((rid for rname, rid in table.items() if rname.casefold() == folded), None)


def role_id(name: str) -> str | None:
    """The definition ID of a role amlops grants, or None for any other role."""
    return _lookup(BUILTIN_ROLES, name)


def is_privileged(name: str) -> bool:
    return _lookup(PRIVILEGED_ROLES, name) is not None


def role_name_of(role_definition: str) -> str | None:
    """The role name of a ``roleDefinitionId`` (any scope prefix) the tables know, or None."""
    return ROLE_NAMES_BY_ID.get(role_definition.rstrip("/").rsplit("/", 1)[-1].lower())


# -- VM sizes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VmFamily:
    name: str
    pattern: re.Pattern[str]
    accelerator: str | None  # None: CPU only


def _family(name: str, pattern: str, accelerator: str | None) -> VmFamily:
    # Azure matches VM sizes case-insensitively (its own compute samples write STANDARD_DS3_v2).
    return VmFamily(name, re.compile(pattern, re.IGNORECASE), accelerator)


# The sizes Azure ML offers for AmlCompute clusters, by family. Which of them a team may *use*
# is policy (policies/rules/compute-gpu-vm-allowlist.yaml); every size that allowlist names
# must be in one of these families, so a typo there cannot reach `pulumi up` (pinned by
# tests/unit/test_azure_tables.py).
VM_FAMILIES: tuple[VmFamily, ...] = (
    _family("NCasT4_v3", r"^Standard_NC(4|8|16|64)as_T4_v3$", "NVIDIA T4"),
    _family("NC_A100_v4", r"^Standard_NC(24|48|96)ads_A100_v4$", "NVIDIA A100 80GB PCIe"),
    _family("NCads_H100_v5", r"^Standard_NC(40|80)ads_H100_v5$", "NVIDIA H100 NVL"),
    _family("NCv3", r"^Standard_NC(6|12|24)s_v3$|^Standard_NC24rs_v3$", "NVIDIA V100"),
    _family("NDasrA100_v4", r"^Standard_ND96asr_v4$", "NVIDIA A100 40GB SXM"),
    _family("NDm_A100_v4", r"^Standard_ND96amsr_A100_v4$", "NVIDIA A100 80GB SXM"),
    _family("ND_H100_v5", r"^Standard_ND96isr_H100_v5$", "NVIDIA H100 SXM"),
    _family("NVadsA10_v5", r"^Standard_NV(6|12|18|36|72)ads_A10_v5$", "NVIDIA A10"),
    # CPU families for data preparation and evaluation steps that need no GPU.
    _family("DSv2", r"^Standard_DS(1|2|3|4|5|11|12|13|14|15)_v2$", None),
    _family("Dv3", r"^Standard_D(2|4|8|16|32|48|64)s?_v3$", None),
    _family("Dv5", r"^Standard_D(2|4|8|16|32|48|64|96)d?s_v5$", None),
    _family("Ev3", r"^Standard_E(2|4|8|16|20|32|48|64)s?_v3$", None),
)


def family_of(vm_size: str) -> VmFamily | None:
    return next((f for f in VM_FAMILIES if f.pattern.match(vm_size)), None)


_SERIES = re.compile(r"^([A-Za-z]+)(.*)$")
_VERSION = re.compile(r"^v\d+$", re.IGNORECASE)


def canonical_vm_size(vm_size: str) -> str:
    """``vm_size`` as Azure lists it (``STANDARD_nc24ADS_a100_V4`` -> ``Standard_NC24ads_A100_v4``).

    Azure compares sizes case-insensitively, so every spelling names one size; policies compare
    this form, and exact lists (compute.gpu-vm-allowlist) stay readable. Azure's spelling: the
    series letters upper-case, the feature letters after the vCPU count lower-case, ``vN``
    lower-case, every other part (the accelerator: ``A100``, ``T4``) upper-case.
    """
    prefix, _, rest = vm_size.partition("_")
    if prefix.casefold() != "standard" or not rest:
        return vm_size
    series, *others = rest.split("_")
    head = _SERIES.match(series)
    parts = [f"{head.group(1).upper()}{head.group(2).lower()}" if head else series]
    parts += [p.lower() if _VERSION.match(p) else p.upper() for p in others]
    return "_".join(["Standard", *parts])


# -- Azure ML names ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NameRule:
    """What Azure ML accepts as the name of one sort of object: letters, digits and a few
    ``symbols``, within a length. The pattern and the words a finding says are both written
    from these, so they cannot disagree."""

    what: str
    min_length: int
    max_length: int
    symbols: str  # allowed besides letters and digits, in the order the rule names them
    digit_first: bool = True  # may start with a digit (it may always start with a letter)
    symbol_last: bool = True  # may end with one of ``symbols``

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        alnum = "a-zA-Z0-9"
        first = alnum if self.digit_first else "a-zA-Z"
        rest = f"[{alnum}{''.join(re.escape(s) for s in self.symbols)}]*"
        if not self.symbol_last:
            rest = f"({rest}[{alnum}])?"
        return re.compile(f"[{first}]{rest}")

    @cached_property
    def says(self) -> str:
        """The rule in words, for the finding."""
        symbols = [f"'{s}'" for s in self.symbols]
        chars = _any_of(["letters", "digits", *symbols])
        first = "a letter or digit" if self.digit_first else "a letter"
        says = f"use {self.min_length} to {self.max_length} {chars}, starting with {first}"
        if not self.symbol_last:
            says += f" and not ending with {_any_of(symbols)}"
        return says

    def problem(self, name: str, *, length: bool = True) -> str | None:
        """Why Azure ML refuses ``name``, or None. ``length=False``: another rule says it."""
        if length and not self.min_length <= len(name) <= self.max_length:
            return f"{self.what} name {name!r} has {len(name)} characters; {self.says}"
        if not self.pattern.fullmatch(name):
            return f"{self.what} name {name!r} is not accepted by Azure ML; {self.says}"
        return None


def _any_of(words: list[str]) -> str:
    """``a, b or c``."""
    return " or ".join(filter(None, [", ".join(words[:-1]), words[-1]]))


# Azure ML's own rules, not DNS-1123 (which only our Kubernetes object names need: see
# amlops.core.manifests.kubernetes_name). Sources: endpoints and deployments, the azure-ai-ml
# SDK (constants/_endpoint.py EndpointConfigurations, entities/_endpoint/_endpoint_helpers.py);
# the others are checked by the service, not the SDK, and follow the Azure ML documentation:
# asset names (models, environments, components, data), compute names (cluster 2-16 in older
# API versions, 3-24 now: the union, so no name Azure accepts is refused), workspace names
# (also in policies/rules/workspace-name-length.yaml, which reports the length).
ASSET_NAME = NameRule("asset", 1, 255, "-_.")
ENDPOINT_NAME = NameRule("endpoint", 3, 32, "-", digit_first=False, symbol_last=False)
DEPLOYMENT_NAME = replace(ENDPOINT_NAME, what="deployment")
COMPUTE_NAME = NameRule("compute", 2, 24, "-", digit_first=False)
WORKSPACE_NAME = NameRule("workspace", 3, 33, "-_")
JOB_NAME = NameRule("job", 1, 255, "-_")


# -- names the Pulumi program derives ------------------------------------------------------------


def cluster_resource_name(workspace: str, cluster: str) -> str:
    """The Pulumi name of a cluster's component: ``mlw-a-b``/``c`` and ``mlw-a``/``b-c`` share
    one, and the engine rejects the duplicate URN mid-update (compute.unique-resource-name)."""
    return f"{workspace}-{cluster}"
