"""Policies are data: policies/rules/*.yaml, each a JSON Schema condition or a named check.

A rule matches kinds and, optionally, environments (dev, prod, ...) taken from the Workspace the
object belongs to. A ``condition`` is a JSON Schema the whole object must satisfy; each place it
fails becomes one finding at that field. The few rules that need several objects at once, or
logic a schema says badly, name a built-in ``check`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, TypeVar

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from amlops.core import files
from amlops.core.assets import parse_asset_ref
from amlops.core.azure import (
    ASSET_NAME,
    BUILTIN_ROLES,
    COMPUTE_NAME,
    DEPLOYMENT_NAME,
    ENDPOINT_NAME,
    JOB_NAME,
    WORKSPACE_NAME,
    NameRule,
    canonical_vm_size,
    cluster_resource_name,
    is_privileged,
    role_id,
)
from amlops.core.config import CONFIG_FILE, RepoConfig, unknown_rules
from amlops.core.config import RULE_INVALID as RULE_CONFIG_INVALID
from amlops.core.credentials import find_secrets
from amlops.core.files import PathRefusedError
from amlops.core.findings import Finding, Severity, format_path
from amlops.core.manifests import ORIGIN_CLI, Manifest
from amlops.core.refs import environment_refs, inline_environments
from amlops.core.schemas import FastCheck
from amlops.core.source import FieldPath, YamlSyntaxError, load_documents
from amlops.kinds.endpoint import spec_traffic_problems
from amlops.paths import policies_dir

POLICY_FILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "title", "severity", "description", "match"],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z0-9]+(\\.[a-z0-9-]+)+$"},
        "title": {"type": "string"},
        "severity": {"enum": ["error", "warning"]},
        "description": {"type": "string"},
        "remediation": {"type": "string"},
        # The remediation for a plain Azure ML CLI v2 file, in its own fields, where the
        # remediation's `spec.*` fields do not translate one to one (a different value).
        "cliRemediation": {"type": "string"},
        "message": {"type": "string"},
        "match": {
            "type": "object",
            "additionalProperties": False,
            "required": ["kinds"],
            "properties": {
                "kinds": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                "environments": {"type": "array", "items": {"type": "string"}},
            },
        },
        "condition": {"type": "object"},
        "check": {"type": "string"},
    },
    "oneOf": [{"required": ["condition"]}, {"required": ["check"]}],
}


@dataclass(frozen=True)
class Context:
    """What a rule may look at besides the object: every manifest, and each one's environment."""

    manifests: list[Manifest]
    environments: dict[str, str]  # workspace name -> environment (absent when undeclared)

    def environment(self, m: Manifest) -> str | None:
        return self.environments.get(m.workspace or "")

    @cached_property
    def claims(self) -> _Claims:
        """Built once per Context, so the cross-manifest checks stay linear."""
        return _build_claims(self.manifests)


Check = Callable[[Manifest, Context], Iterator[tuple[FieldPath, str]]]


@dataclass(frozen=True)
class Policy:
    id: str
    title: str
    severity: Severity
    description: str
    kinds: tuple[str, ...]
    environments: tuple[str, ...]
    source: str
    remediation: str = ""
    cli_remediation: str = ""
    message: str = ""
    condition: dict[str, Any] | None = None
    check: str | None = None
    _validator: Draft202012Validator | None = field(default=None, compare=False, repr=False)
    _fast: FastCheck | None = field(default=None, compare=False, repr=False)

    def matches(self, m: Manifest, ctx: Context) -> bool:
        if m.kind not in self.kinds:
            return False
        return not self.environments or ctx.environment(m) in self.environments

    def evaluate(self, m: Manifest, ctx: Context) -> Iterator[Finding]:
        if self._validator is not None:
            body = _compared(m)
            if self._fast is not None and self._fast.is_valid(body):
                return
            for error in self._validator.iter_errors(body):
                path, detail = _explain(error, m)
                yield self._finding(m, path, detail)
        elif self.check is not None:
            for path, detail in BUILTIN_CHECKS[self.check](m, ctx):
                yield self._finding(m, path, detail)

    def _finding(self, m: Manifest, path: FieldPath, detail: str) -> Finding:
        text = self.message or self.title
        message = f"{text}: {detail}" if detail else text
        remediation = self.remediation
        if m.origin == ORIGIN_CLI:
            remediation = self.cli_remediation or m.written(remediation)
        if remediation:
            message += f". {remediation.strip()}"
        return m.finding(path, self.id, message, self.severity)


def _compared(m: Manifest) -> dict[str, Any]:
    """The body conditions compare: a VM size in Azure's own spelling, since Azure matches
    sizes case-insensitively (STANDARD_DS3_v2 is Standard_DS3_v2 of an allowlist)."""
    size = m.spec.get("vmSize")
    if not isinstance(size, str) or canonical_vm_size(size) == size:
        return m.body
    return {**m.body, "spec": {**m.spec, "vmSize": canonical_vm_size(size)}}


def _explain(error: ValidationError, m: Manifest) -> tuple[FieldPath, str]:
    if error.validator in ("anyOf", "oneOf", "allOf") and error.context:
        error = best_match(error.context)
    path: FieldPath = tuple(error.absolute_path)
    if error.validator == "required":
        if m.origin == ORIGIN_CLI and "'" in error.message:
            # A plain file names the missing field its own way (`tags.cost-center`); the
            # finding still points at the nearest field the file has.
            missing: FieldPath = (*path, str(error.message).split("'")[1])
            return missing, f"{format_path(m.written_path(missing))} is missing"
        return path, str(error.message).replace("is a required property", "is missing")
    if error.validator == "not":
        return path, f"{error.instance!r} is not allowed"
    return path, str(error.message)


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[Policy, ...]

    def get(self, policy_id: str) -> Policy | None:
        return next((p for p in self.policies if p.id == policy_id), None)

    def evaluate(self, valid: list[Manifest], everything: list[Manifest]) -> list[Finding]:
        ctx = Context(
            everything,
            {
                m.name: env
                for m in everything
                if m.kind == "Workspace" and isinstance(env := m.spec.get("environment"), str)
            },
        )
        findings: list[Finding] = []
        for m in valid:
            for policy in self.policies:
                if policy.matches(m, ctx):
                    findings.extend(policy.evaluate(m, ctx))
        return findings


class PolicyError(Exception):
    """A policy file itself is wrong (names its file)."""


def read_policy(file: Path) -> Policy:
    """One rule file, read with the limits every manifest is read with (a rules folder the
    repository config adds is as untrusted as the manifests)."""
    docs = list(load_documents(file))
    if len(docs) != 1:
        raise PolicyError(f"{file}: a rule file holds one YAML document, not {len(docs)}")
    data = docs[0].data
    errors = sorted(Draft202012Validator(POLICY_FILE_SCHEMA).iter_errors(data), key=str)
    if errors:
        raise PolicyError(f"{file}: {errors[0].message}")
    condition = data.get("condition")
    check = data.get("check")
    if check is not None and check not in BUILTIN_CHECKS:
        raise PolicyError(f"{file}: unknown built-in check {check!r}")
    validator = None
    fast = None
    if condition is not None:
        validator = Draft202012Validator(condition)
        try:
            fast = FastCheck(condition)
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            raise PolicyError(f"{file}: condition is not a valid JSON Schema: {exc}") from exc
    match = data["match"]
    return Policy(
        id=data["id"],
        title=data["title"],
        severity=Severity(data["severity"]),
        description=data["description"].strip(),
        kinds=tuple(match["kinds"]),
        environments=tuple(match.get("environments", ())),
        source=str(file),
        remediation=data.get("remediation", ""),
        cli_remediation=data.get("cliRemediation", ""),
        message=data.get("message", ""),
        condition=condition,
        check=check,
        _validator=validator,
        _fast=fast,
    )


@lru_cache(maxsize=4)
def load_policies(directory: Path | None = None) -> PolicySet:
    rules = (directory or policies_dir()) / "rules"
    policies = tuple(read_policy(f) for f in sorted(rules.glob("*.yaml")))
    ids = [p.id for p in policies]
    duplicates = {i for i in ids if ids.count(i) > 1}
    if duplicates:
        raise PolicyError(f"{rules}: policy ids used twice: {', '.join(sorted(duplicates))}")
    return PolicySet(policies)


# -- built-in checks ---------------------------------------------------------------------------


def _traffic(m: Manifest, split: str) -> Iterator[tuple[FieldPath, str]]:
    """Azure ML's rules for the ``split`` (live or mirrored) traffic (amlops.kinds.endpoint)."""
    for problem in spec_traffic_problems(m.spec):
        if problem.split == split:
            yield problem.path, problem.message


_PINNED_IMAGE = re.compile(r"^[^\s@]+(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_.-]+)$")


def _unpinned_image(path: FieldPath, env: Any) -> Iterator[tuple[FieldPath, str]]:
    image = env.get("image") if isinstance(env, dict) else None
    if isinstance(image, str) and (not _PINNED_IMAGE.match(image) or image.endswith(":latest")):
        yield (*path, "image"), f"image {image!r} is not pinned"


def _pinned_environments(m: Manifest, ctx: Context) -> Iterator[tuple[FieldPath, str]]:
    del ctx
    if m.kind == "Environment":
        yield from _unpinned_image(("spec", "environment"), m.spec.get("environment"))
        return
    for path, env in inline_environments(m):
        yield from _unpinned_image(path, env)
    for path, value in environment_refs(m):
        ref = parse_asset_ref(value)
        if value.endswith("@latest") or (ref is not None and ref.version is None):
            yield path, f"{value!r} does not name a version"


def _min_max(m: Manifest) -> Iterator[tuple[FieldPath, str]]:
    low, high = m.spec.get("minInstances", 0), m.spec.get("maxInstances")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        yield ("spec", "minInstances"), f"minInstances {low} is above maxInstances {high}"


# What the Pulumi program needs of the infra kinds (infra/ declares nothing while any fails).


def _supported_role(m: Manifest, ctx: Context) -> Iterator[tuple[FieldPath, str]]:
    role = m.spec.get("role")
    if not isinstance(role, str) or role_id(role) is not None:
        return
    if is_privileged(role) and ctx.environment(m) == "prod":
        return  # rbac.prod-no-owner says it there, with its own advice: one finding per mistake
    yield ("spec", "role"), f"{role!r} is not one of them ({', '.join(BUILTIN_ROLES)})"


def _privileged_role(m: Manifest) -> Iterator[tuple[FieldPath, str]]:
    role = m.spec.get("role")
    if isinstance(role, str) and is_privileged(role):
        yield ("spec", "role"), f"{role!r} is not allowed"


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _group_key(m: Manifest) -> tuple[str, str] | None:
    """(environment, resource group) of a Workspace that creates its resource group."""
    if m.kind != "Workspace" or m.spec.get("existingResourceGroup") is True:
        return None
    env, group = _str(m.spec.get("environment")), _str(m.spec.get("resourceGroup"))
    # Resource group names are case-insensitive in Azure.
    return (env, group.casefold()) if env is not None and group is not None else None


def _grant_key(m: Manifest) -> tuple[str, str, str] | None:
    """(scope, principal, role) of a RoleAssignment: what Azure keeps one assignment for."""
    scope, principal = m.spec.get("scope"), m.spec.get("principal")
    role = _str(m.spec.get("role"))
    if m.kind != "RoleAssignment" or not isinstance(scope, dict) or role is None:
        return None
    workspace = _str(scope.get("workspace"))
    if workspace is None or not isinstance(principal, dict):
        return None
    compute, resource = _str(scope.get("compute")), _str(scope.get("resource"))
    where = f"{workspace}/computes/{compute}" if compute else workspace
    where = f"{where}/{resource}" if resource else where
    object_id = _str(principal.get("objectId"))
    if principal.get("operatorIdentity") is True:
        who = "operator-identity"
    elif object_id is not None:
        who = object_id.lower()  # object IDs compare case-insensitively
    else:
        return None
    return where, who, role_id(role) or role.strip().casefold()


def _cluster_key(m: Manifest) -> str | None:
    workspace = m.workspace
    if m.kind != "ComputeCluster" or workspace is None:
        return None
    return cluster_resource_name(workspace, m.name)


@dataclass(frozen=True)
class _Claims:
    """The first manifest (in load order) to claim each resource group, grant, Pulumi name."""

    groups: dict[tuple[str, str], Manifest]
    grants: dict[tuple[str, str, str], Manifest]
    clusters: dict[str, Manifest]


def _build_claims(manifests: list[Manifest]) -> _Claims:
    claims = _Claims({}, {}, {})
    for m in manifests:
        group, grant, cluster = _group_key(m), _grant_key(m), _cluster_key(m)
        if group is not None:
            claims.groups.setdefault(group, m)
        if grant is not None:
            claims.grants.setdefault(grant, m)
        if cluster is not None:
            claims.clusters.setdefault(cluster, m)
    return claims


def _where(m: Manifest, path: FieldPath) -> str:
    pos = m.locate(path)
    return f"{pos.file}:{pos.line}"


K = TypeVar("K")


def _rival(m: Manifest, claims: Mapping[K, Manifest], key: K | None) -> Manifest | None:
    """Who claimed ``key`` before ``m``, if another object did. Two objects of one identity
    are ref.duplicate's finding, not a claim conflict."""
    first = None if key is None else claims.get(key)
    return None if first is None or first.key == m.key else first


def _resource_group_owner(m: Manifest, ctx: Context) -> Iterator[tuple[FieldPath, str]]:
    path: FieldPath = ("spec", "resourceGroup")
    if first := _rival(m, ctx.claims.groups, _group_key(m)):
        yield (
            path,
            f"Workspace {first.name!r} ({_where(first, path)}) already creates resource group "
            f"{m.spec['resourceGroup']!r} in environment {m.spec['environment']!r}",
        )


def _duplicate_grant(m: Manifest, ctx: Context) -> Iterator[tuple[FieldPath, str]]:
    if first := _rival(m, ctx.claims.grants, _grant_key(m)):
        yield (
            ("spec",),
            f"RoleAssignment {first.name!r} ({_where(first, ('spec',))}) already grants "
            f"{m.spec['role']!r} to the same principal on the same scope",
        )


def _cluster_resource_name(m: Manifest, ctx: Context) -> Iterator[tuple[FieldPath, str]]:
    path: FieldPath = ("metadata", "name")
    if first := _rival(m, ctx.claims.clusters, key := _cluster_key(m)):
        yield (
            path,
            f"{m.workspace}/{m.name} and {first.workspace}/{first.name} ({_where(first, path)}) "
            f"would both be Pulumi resource {key!r}",
        )


RULE_AZUREML_NAME = "azureml.name"  # policies/rules/azureml-name.yaml

# The name each kind is known by in Azure ML, and Azure ML's rule for it (amlops.core.azure).
# A Workspace's length is workspace.name-length's finding: one finding per mistake.
_AZUREML_NAMES: dict[str, tuple[tuple[FieldPath, NameRule, bool], ...]] = {
    "Workspace": ((("metadata", "name"), WORKSPACE_NAME, False),),
    "ComputeCluster": ((("metadata", "name"), COMPUTE_NAME, True),),
    "Model": ((("spec", "model", "name"), ASSET_NAME, True),),
    "Environment": ((("spec", "environment", "name"), ASSET_NAME, True),),
    "Endpoint": ((("spec", "endpoint", "name"), ENDPOINT_NAME, True),),
    "Pipeline": ((("spec", "job", "name"), JOB_NAME, True),),
}


def _azureml_names(m: Manifest) -> Iterator[tuple[FieldPath, str]]:
    named = list(_AZUREML_NAMES.get(m.kind, ()))
    if m.kind == "Endpoint":
        deployments = m.spec.get("deployments")
        for i in range(len(deployments) if isinstance(deployments, list) else 0):
            named.append((("spec", "deployments", i, "name"), DEPLOYMENT_NAME, True))
    for path, rule, length in named:
        value = _at(m.body, path)
        if isinstance(value, str) and (problem := rule.problem(value, length=length)):
            yield path, problem


def _at(value: Any, path: FieldPath) -> Any:
    for key in path:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and isinstance(key, int) and 0 <= key < len(value):
            value = value[key]
        else:
            return None
    return value


def _plaintext_secrets(m: Manifest) -> Iterator[tuple[FieldPath, str]]:
    # The reason names the field and why it looks secret, never the value: findings end up in
    # the same PR comments and logs the secret must stay out of.
    for hit in find_secrets(m.body):
        yield hit.path, hit.reason


BUILTIN_CHECKS: dict[str, Check] = {
    "compute-min-max": lambda m, ctx: _min_max(m),
    "endpoint-traffic": lambda m, ctx: _traffic(m, "traffic"),
    "endpoint-mirror": lambda m, ctx: _traffic(m, "mirror_traffic"),
    "pinned-environments": _pinned_environments,
    "supported-role": _supported_role,
    "privileged-role": lambda m, ctx: _privileged_role(m),
    "resource-group-owner": _resource_group_owner,
    "duplicate-grant": _duplicate_grant,
    "cluster-resource-name": _cluster_resource_name,
    "plaintext-secrets": lambda m, ctx: _plaintext_secrets(m),
    "azureml-names": lambda m, ctx: _azureml_names(m),
}


@dataclass(frozen=True)
class Effective:
    """One rule as the repository config leaves it, and the ``amlops.yaml`` lines that changed
    it (added through a rules folder, disabled, re-graded, excepted)."""

    policy: Policy  # with the configured severity
    enabled: bool
    changes: tuple[str, ...] = ()


def effective_policies(config: RepoConfig) -> tuple[list[Effective], list[Finding]]:
    """Every rule, shipped or from the config's rules folders, with what the config does to
    it. Problems with the config's rules are findings at the ``amlops.yaml`` line naming them."""
    findings: list[Finding] = []
    policies = [(p, "") for p in load_policies().policies]
    seen = {p.id: p.source for p, _ in policies}
    for directory, line in config.rule_dirs:
        for file in sorted(directory.glob("*.yaml")):
            try:
                files.contained(config.root, file)  # a link in the folder may lead out
                policy = read_policy(file)
            except (PolicyError, YamlSyntaxError, PathRefusedError, OSError, ValueError) as exc:
                findings.append(_config_finding(config, line, f"{file}: {exc}"))
                continue
            if policy.id in seen:
                findings.append(
                    _config_finding(
                        config,
                        line,
                        f"{file}: rule id {policy.id!r} is already defined in "
                        f"{seen[policy.id]}; give it another id",
                    )
                )
                continue
            seen[policy.id] = policy.source
            policies.append((policy, f"added: {config.where(line)}"))
    findings.extend(unknown_rules(config, seen))
    out: list[Effective] = []
    for policy, added in policies:
        changes = [added] if added else []
        if policy.id in config.disabled:
            changes.append(f"disabled: {config.where(config.disabled[policy.id])}")
        if policy.id in config.severity:
            severity, line = config.severity[policy.id]
            changes.append(f"severity {severity}: {config.where(line)}")
            policy = replace(policy, severity=severity)
        changes.extend(
            f"exception: {config.where(e.line)}" for e in config.exceptions if e.rule == policy.id
        )
        out.append(Effective(policy, policy.id not in config.disabled, tuple(changes)))
    return out, findings


def configured_policies(config: RepoConfig) -> tuple[PolicySet, list[Finding]]:
    """The rules to evaluate under the repository config: disabled ones are left out (never
    evaluated), severities re-graded, the config's rules folders added."""
    effective, findings = effective_policies(config)
    return PolicySet(tuple(e.policy for e in effective if e.enabled)), findings


def _config_finding(config: RepoConfig, line: int, message: str) -> Finding:
    return Finding(config.file or CONFIG_FILE, line, 1, RULE_CONFIG_INVALID, message)
