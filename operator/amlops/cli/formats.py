"""Findings in the formats CI systems read: one line each, GitHub annotations, SARIF, GitLab.

Every renderer here gets ``Report.findings``, whose secret values the core has already masked,
and the **source root** (the Git top level, see ``amlops.core.files``): paths a CI system shows
or links must be relative to the checkout, whatever folder amlops was started from.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from amlops.core import azureml, config, files, source
from amlops.core.findings import Finding
from amlops.core.policy import load_policies

TOOL = "amlops"
INFORMATION_URI = "https://amlops.io"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
# SARIF asks for versioned fingerprint names so a consumer can tell a changed algorithm apart.
FINGERPRINT = "amlopsFinding/v1"


def printable(text: str) -> str:
    """User text made safe for a terminal or log: control characters (escape sequences that
    recolour or rewrite the screen, carriage returns that overprint a line, newlines that fake
    a line of output) and invisible Unicode (bidi overrides) are shown as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def tool_version() -> str:
    try:
        return importlib.metadata.version(TOOL)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree never installed
        return "0+unknown"


# -- one line per finding ----------------------------------------------------------------------


def finding_line(f: Finding) -> str:
    """``path:line:col: severity rule message``, the ruff / mypy / eslint shape that editors
    and terminals turn into links and ``grep file:line`` finds; never more than one line."""
    return printable(f"{f.location()}: {f.severity} {f.rule} {f.message}")


def summary_line(errors: int, warnings: int) -> str:
    verdict = "failed" if errors else "passed"
    return f"validation {verdict}: {errors} errors, {warnings} warnings"


# -- rule descriptions ---------------------------------------------------------------------------

# Rules built into the loader and the reference checks, which have no policy file to describe
# them. Exact ids first; a family (``ref.compute``, ``ref.model``, ...) by its prefix.
_BUILTIN_RULES: dict[str, str] = {
    source.RULE_SYNTAX: "The file is not valid YAML.",
    source.RULE_TOO_LARGE: "The file is larger than amlops reads (AMLOPS_MAX_* limits).",
    source.RULE_NOT_A_FILE: "The path is not a regular file.",
    source.RULE_ALIAS_LIMIT: "The YAML expands too many aliases (a 'billion laughs' document).",
    source.RULE_TOO_MANY_DOCUMENTS: "The file holds more YAML documents than amlops reads.",
    "load.api-version": "The apiVersion is not one amlops knows.",
    "load.duplicate-key": "A YAML mapping holds the same key twice; YAML keeps only one.",
    "load.missing-file": "A path given on the command line does not exist.",
    "load.missing-name": "The object has no name.",
    "load.no-default-workspace": "A plain Azure ML file needs a workspace to belong to.",
    "load.not-a-mapping": "A YAML document is not a mapping (an object).",
    "load.outside-root": "The file resolves outside the repository and was not read.",
    "load.unknown-kind": "The document is neither an amlops manifest nor Azure ML CLI v2 YAML.",
    "load.unreadable": "The file cannot be read.",
    "load.unsupported-cli-type": "The Azure ML CLI v2 file is of a type amlops does not manage.",
    files.RULE_OUTSIDE_ROOT: "A path the manifest names resolves outside the repository.",
    files.RULE_SPECIAL: "A path the manifest names is not a regular file or folder.",
    files.RULE_TOO_LARGE: "A file or folder the manifest names is larger than amlops reads.",
    files.RULE_TOO_MANY_FILES: "A folder the manifest names holds more files than amlops reads.",
    "schema": "The object does not match the JSON Schema of its kind.",
    "schema.kind": "The kind has no schema.",
    azureml.RULE: "The Azure ML part is rejected by the azure-ai-ml SDK's own loaders.",
    "ref.binding": "A pipeline step binds an input or output that does not exist.",
    "ref.duplicate": "Two objects have the same kind and name.",
    "ref.endpoint": "An online deployment names an endpoint that is not declared.",
    "ref.missing-file": "A path the manifest names does not exist.",
    "ref.scope": "A role assignment's scope names an object that is not declared.",
    "ref.workspace": "The object names a workspace that is not declared.",
    "load.unmapped-field": "A field of the plain Azure ML file is not modelled by amlops.",
    "spec.invalid": "The spec reads, but cannot be registered, served or run as written.",
    config.RULE_INVALID: "amlops.yaml does not match its schema; none of it is applied.",
    config.RULE_EXPIRED: "A policy exception in amlops.yaml has expired and no longer applies.",
    config.RULE_UNUSED: "A policy exception in amlops.yaml matches no finding.",
    config.RULE_UNKNOWN_RULE: "amlops.yaml names a rule id that is not a policy rule.",
    config.RULE_NO_REASON: "An inline `amlops: ignore[...]` has no reason and does not apply.",
}
_FAMILIES: dict[str, str] = {
    "load.": "The file cannot be loaded as a manifest.",
    "files.": "A path the manifest names is refused.",
    "schema.": "The object does not match its schema.",
    "ref.": "The object references something that is not declared.",
    "azureml.": "The Azure ML part is rejected by the azure-ai-ml SDK.",
    "config.": "amlops.yaml (the repository config) needs attention.",
}


@dataclass(frozen=True)
class RuleHelp:
    short: str
    full: str
    guide: str = ""


def rule_help(rule_id: str) -> RuleHelp:
    """What a rule id means: from its policy file, else from the built-in table, else its
    family; every id a finding can carry gets a description (SARIF viewers show it)."""
    policy = load_policies().get(rule_id)
    if policy is not None:
        fix = policy.remediation.strip()
        more = f"`amlops explain {rule_id}` shows the rule."
        return RuleHelp(policy.title, policy.description, f"{fix}\n\n{more}" if fix else more)
    text = _BUILTIN_RULES.get(rule_id) or next(
        (t for prefix, t in _FAMILIES.items() if rule_id.startswith(prefix)),
        f"amlops check {rule_id}.",
    )
    return RuleHelp(text.removesuffix("."), text)


# -- paths relative to the repository ----------------------------------------------------------


def source_root(paths: Sequence[Path | str]) -> Path:
    """The one folder every validated path's source root sits in (usually one Git checkout)."""
    roots = files.default_roots(paths) if paths else [files.real(Path.cwd())]
    return Path(os.path.commonpath(roots))


def relative(file: str, root: Path) -> str | None:
    """``file`` relative to ``root`` in POSIX form, or ``None`` when it is outside."""
    # The root is resolved (symlinks followed); resolve the file's folder the same way, but
    # not the file itself: a symlinked manifest is reported under the name it has in Git.
    path = files.real(Path(file).parent) / Path(file).name
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else None


def _identities(findings: Sequence[Finding], root: Path) -> list[str]:
    """A fingerprint per finding, stable across edits that move lines: rule, file, object and
    field; the n-th repeat of the same four also hashes n, so fingerprints stay unique."""
    seen: Counter[str] = Counter()
    out = []
    for f in findings:
        key = "\0".join((f.rule, relative(f.file, root) or f.file, _object(f), f.field))
        seen[key] += 1
        repeat = f"\0{seen[key]}" if seen[key] > 1 else ""
        out.append(hashlib.sha256((key + repeat).encode()).hexdigest())
    return out


def _object(f: Finding) -> str:
    return f"{f.kind}/{f.name}" if f.kind else ""


# -- GitHub workflow commands ------------------------------------------------------------------


def _gh_escape(value: str, *, prop: bool = False) -> str:
    # https://docs.github.com/actions/reference/workflow-commands-for-github-actions: data
    # escapes % CR LF; a property value also : and , (they separate properties).
    out = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    out = printable(out)  # the Actions log renders ANSI escape sequences
    if prop:
        out = out.replace(":", "%3A").replace(",", "%2C")
    return out


def github_annotations(findings: Sequence[Finding], root: Path | None = None) -> list[str]:
    """GitHub places an annotation by a path relative to the checkout (``root``), not to the
    folder amlops ran in; a file-level finding's title is its rule alone."""
    lines = []
    for f in findings:
        level = "error" if f.is_error else "warning"
        title = _gh_escape(f"{f.rule} {_object(f)}".strip(), prop=True)
        file = (relative(f.file, root) if root is not None else None) or f.file
        lines.append(
            f"::{level} file={_gh_escape(file, prop=True)},line={f.line},col={f.column},"
            f"title={title}::{_gh_escape(f.message)}"
        )
    return lines


# -- SARIF 2.1.0 -------------------------------------------------------------------------------


def _artifact(f: Finding, root: Path) -> dict[str, Any]:
    rel = relative(f.file, root)
    if rel is None:  # outside the checkout: an absolute URI is the only honest one
        return {"uri": Path(os.path.abspath(f.file)).as_uri()}
    return {"uri": quote(rel, safe="/"), "uriBaseId": SRCROOT}


def _logical(f: Finding) -> list[dict[str, Any]]:
    # A manifest object is a declared Azure resource, so SARIF's "resource" kind; its field
    # is a key of a YAML mapping, SARIF's "property" (the kind it gives JSON members).
    if not f.kind:
        return []
    obj = _object(f)
    out: list[dict[str, Any]] = [{"name": obj, "fullyQualifiedName": obj, "kind": "resource"}]
    if f.field:
        out.append({"name": f.field, "fullyQualifiedName": f"{obj}:{f.field}", "kind": "property"})
    return out


def to_sarif(findings: Sequence[Finding], root: Path) -> dict[str, Any]:
    rule_ids = sorted({f.rule for f in findings})
    rules = []
    for rule_id in rule_ids:
        about = rule_help(rule_id)
        rule: dict[str, Any] = {
            "id": rule_id,
            "shortDescription": {"text": about.short},
            "fullDescription": {"text": about.full},
        }
        if about.guide:
            rule["help"] = {"text": about.guide, "markdown": about.guide}
        rules.append(rule)
    results = []
    for f, fingerprint in zip(findings, _identities(findings, root), strict=True):
        location: dict[str, Any] = {
            "physicalLocation": {
                "artifactLocation": _artifact(f, root),
                "region": {"startLine": max(f.line, 1), "startColumn": max(f.column, 1)},
            }
        }
        if logical := _logical(f):
            location["logicalLocations"] = logical
        results.append(
            {
                "ruleId": f.rule,
                "ruleIndex": rule_ids.index(f.rule),
                "level": "error" if f.is_error else "warning",
                "message": {"text": f.message},
                "locations": [location],
                "partialFingerprints": {FINGERPRINT: fingerprint},
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL,
                        "version": tool_version(),
                        "informationUri": INFORMATION_URI,
                        "rules": rules,
                    }
                },
                # Where %SRCROOT% was on this machine; viewers that have the checkout elsewhere
                # (GitHub code scanning) resolve the relative URIs against their own.
                "originalUriBaseIds": {SRCROOT: {"uri": root.as_uri().rstrip("/") + "/"}},
                "results": results,
            }
        ],
    }


# -- GitLab Code Quality -----------------------------------------------------------------------

# GitLab's severities are info / minor / major / critical / blocker: an error blocks the merge
# request the way it fails `amlops validate`; a warning is worth a look, not a stop.
_GITLAB_SEVERITY = {"error": "blocker", "warning": "minor"}


def to_gitlab(findings: Sequence[Finding], root: Path) -> list[dict[str, Any]]:
    """https://docs.gitlab.com/ci/testing/code_quality/#code-quality-report-format"""
    return [
        {
            "description": printable(f.message),
            "check_name": f.rule,
            "fingerprint": fingerprint,
            "severity": _GITLAB_SEVERITY[str(f.severity)],
            "location": {
                "path": relative(f.file, root) or f.file,
                "lines": {"begin": max(f.line, 1)},
            },
        }
        for f, fingerprint in zip(findings, _identities(findings, root), strict=True)
    ]
