"""Policies are data: policies/rules/*.yaml, each a JSON Schema condition or a named check.

A rule matches kinds and, optionally, environments (dev, prod, ...) taken from the Workspace the
object belongs to. A ``condition`` is a JSON Schema the whole object must satisfy; each place it
fails becomes one finding at that field. The few rules that need several objects at once, or
logic a schema says badly, name a built-in ``check`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from amlops.core.findings import Finding, Severity
from amlops.core.manifests import Manifest
from amlops.core.refs import environment_refs, inline_environments, parse_asset_ref
from amlops.core.schemas import FastCheck
from amlops.core.source import Path_
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


Check = Callable[[Manifest, Context], Iterator[tuple[Path_, str]]]


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
            if self._fast is not None and self._fast.is_valid(m.body):
                return
            for error in self._validator.iter_errors(m.body):
                path, detail = _explain(error)
                yield self._finding(m, path, detail)
        elif self.check is not None:
            for path, detail in BUILTIN_CHECKS[self.check](m, ctx):
                yield self._finding(m, path, detail)

    def _finding(self, m: Manifest, path: Path_, detail: str) -> Finding:
        text = self.message or self.title
        message = f"{text}: {detail}" if detail else text
        if self.remediation:
            message += f". {self.remediation.strip()}"
        return m.finding(path, self.id, message, self.severity)


def _explain(error: ValidationError) -> tuple[Path_, str]:
    if error.validator in ("anyOf", "oneOf", "allOf") and error.context:
        error = best_match(error.context)
    path: Path_ = tuple(error.absolute_path)
    if error.validator == "required":
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
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
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


def _deployment_names(m: Manifest) -> set[str]:
    deployments = m.spec.get("deployments")
    return {str(d["name"]) for d in deployments or [] if isinstance(d, dict) and "name" in d}


def _traffic(m: Manifest) -> Iterator[tuple[Path_, str]]:
    endpoint = m.spec.get("endpoint", {})
    traffic = endpoint.get("traffic") if isinstance(endpoint, dict) else None
    if not isinstance(traffic, dict):
        return
    names = _deployment_names(m)
    for deployment in traffic:
        if deployment not in names:
            yield (
                ("spec", "endpoint", "traffic", deployment),
                f"deployment {deployment!r} is not declared (declared: "
                f"{', '.join(sorted(names)) or 'none'})",
            )
    total = sum(v for v in traffic.values() if type(v) is int)  # bool is an int subclass
    if total not in (0, 100):
        yield ("spec", "endpoint", "traffic"), f"weights add up to {total}, not 0 or 100"


def _mirror(m: Manifest) -> Iterator[tuple[Path_, str]]:
    endpoint = m.spec.get("endpoint", {})
    mirror = endpoint.get("mirror_traffic") if isinstance(endpoint, dict) else None
    if not isinstance(mirror, dict):
        return
    traffic = endpoint.get("traffic") or {}
    names = _deployment_names(m)
    if len([v for v in mirror.values() if v]) > 1:
        yield ("spec", "endpoint", "mirror_traffic"), "only one deployment can receive a mirror"
    for deployment, percent in mirror.items():
        path: Path_ = ("spec", "endpoint", "mirror_traffic", deployment)
        if deployment not in names:
            yield path, f"deployment {deployment!r} is not declared"
        elif isinstance(traffic, dict) and traffic.get(deployment):
            yield path, f"deployment {deployment!r} takes live traffic and cannot also be mirrored"
        if isinstance(percent, int) and percent > 50:
            yield path, f"{percent}% is above the 50% cap"


_PINNED_IMAGE = re.compile(r"^[^\s@]+(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_.-]+)$")


def _unpinned_image(path: Path_, env: Any) -> Iterator[tuple[Path_, str]]:
    image = env.get("image") if isinstance(env, dict) else None
    if isinstance(image, str) and (not _PINNED_IMAGE.match(image) or image.endswith(":latest")):
        yield (*path, "image"), f"image {image!r} is not pinned"


def _pinned_environments(m: Manifest, ctx: Context) -> Iterator[tuple[Path_, str]]:
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


def _min_max(m: Manifest) -> Iterator[tuple[Path_, str]]:
    low, high = m.spec.get("minInstances", 0), m.spec.get("maxInstances")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        yield ("spec", "minInstances"), f"minInstances {low} is above maxInstances {high}"


BUILTIN_CHECKS: dict[str, Check] = {
    "compute-min-max": lambda m, ctx: _min_max(m),
    "endpoint-traffic": lambda m, ctx: _traffic(m),
    "endpoint-mirror": lambda m, ctx: _mirror(m),
    "pinned-environments": _pinned_environments,
}
