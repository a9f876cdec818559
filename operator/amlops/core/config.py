"""The repository config, ``amlops.yaml`` at the repository root.

It says what the manifests cannot: which workspace plain Azure ML files belong to when no
Workspace manifest declares one, which assets live in the workspace without being managed from
Git, and how the policy rules are adjusted (disabled, re-graded, excepted, extended). It is read
through the same loader and limits as the manifests, so its findings name its file and line.

Adjustments apply to policy rules only: schema, reference and load findings describe objects
Azure would refuse, so excepting one would only move the failure to apply time.
"""

from __future__ import annotations

import datetime
import fnmatch
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pathspec
from jsonschema import Draft202012Validator

from amlops.core import files
from amlops.core.findings import Finding, Severity, format_path
from amlops.core.limits import Limits, current
from amlops.core.locator import finding_at
from amlops.core.source import Document, YamlSyntaxError, load_documents, read_manifest
from amlops.paths import schemas_dir

CONFIG_FILE = "amlops.yaml"
SCHEMA_FILE = "amlops-config.schema.json"

RULE_INVALID = "config.invalid"
RULE_EXPIRED = "config.exception-expired"
RULE_UNUSED = "config.exception-unused"
RULE_UNKNOWN_RULE = "config.unknown-rule"
RULE_NO_REASON = "config.suppression-no-reason"

ASSET_TYPES = ("computes", "environments", "models", "components", "datastores")

# `# amlops: ignore[rule-id, other-id] reason` at the end of the finding's line (ruff's noqa
# convention: the same line, so moving the line moves its suppression with it).
_SUPPRESSION = re.compile(r"#\s*amlops:\s*ignore\[([^\]]*)\]\s*(.*?)\s*$")


def repository_root(start: Path | str) -> Path:
    """The folder of the nearest ``amlops.yaml`` at or above ``start`` (a platform kept in a
    folder of a larger repository), not above its Git top level; else that top level; else
    ``start``'s folder."""
    top = files.git_top(start)
    folder = Path(os.path.abspath(start))
    if not folder.is_dir():
        folder = folder.parent
    for candidate in (folder, *folder.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
        if candidate == top:
            break
    return top or folder


@dataclass(frozen=True)
class DefaultWorkspace:
    name: str
    subscription: str | None = None
    resource_group: str | None = None
    location: str | None = None


@dataclass(frozen=True)
class External:
    """Assets that exist in the workspace but are not managed from Git: name -> versions
    (empty: any version), per asset type; ``permissive`` accepts every ``azureml:`` name."""

    permissive: bool = False
    assets: dict[str, dict[str, frozenset[str]]] = field(default_factory=dict)

    def has(self, asset_type: str, name: str, version: str | None = None) -> bool:
        if self.permissive:
            return True
        versions = self.assets.get(asset_type, {}).get(name)
        if versions is None:
            return False
        return not versions or version is None or version in versions


@dataclass(frozen=True)
class RuleException:
    rule: str
    reason: str
    line: int
    kind: str | None = None
    name: str | None = None
    files: str | None = None
    expires: datetime.date | None = None

    def matches(self, f: Finding, root: Path) -> bool:
        if f.rule != self.rule:
            return False
        if self.kind is not None and f.kind != self.kind:
            return False
        if self.name is not None and f.name != self.name:
            return False
        if self.files is not None:
            relative = Path(os.path.relpath(os.path.abspath(f.file), root)).as_posix()
            return fnmatch.fnmatchcase(relative, self.files)
        return True


@dataclass(frozen=True)
class RepoConfig:
    """The parsed ``amlops.yaml`` (an empty one when the repository has none). ``*_lines``
    remember where each setting was written, for ``amlops policies``."""

    root: Path
    file: str | None = None
    workspace: DefaultWorkspace | None = None
    external: External = field(default_factory=External)
    disabled: dict[str, int] = field(default_factory=dict)  # rule id -> line
    severity: dict[str, tuple[Severity, int]] = field(default_factory=dict)
    exceptions: tuple[RuleException, ...] = ()
    rule_dirs: tuple[tuple[Path, int], ...] = ()
    findings: tuple[Finding, ...] = ()
    exclude: tuple[str, ...] = ()  # .gitignore patterns, relative to ``root``

    def where(self, line: int) -> str:
        return f"{self.file or CONFIG_FILE}:{line}"

    @cached_property
    def _excluded(self) -> pathspec.GitIgnoreSpec:
        return pathspec.GitIgnoreSpec.from_lines(self.exclude)

    def excludes(self, path: Path | str) -> bool:
        """Whether ``exclude:`` leaves ``path`` out (a path outside the repository never is)."""
        if not self.exclude:
            return False
        relative = os.path.relpath(os.path.abspath(path), self.root.absolute())
        if relative == os.curdir or relative.startswith(os.pardir + os.sep):
            return False
        return self._excluded.match_file(Path(relative).as_posix())


def find_config(
    paths: Sequence[Path | str], limits: Limits | None = None, today: datetime.date | None = None
) -> RepoConfig:
    """The config of the repository the first of ``paths`` is in."""
    start = paths[0] if paths else Path.cwd()
    return load_config(repository_root(start), limits, today)


def load_config(
    root: Path, limits: Limits | None = None, today: datetime.date | None = None
) -> RepoConfig:
    path = root / CONFIG_FILE
    if not path.is_file():
        return RepoConfig(root)
    name = _display(path)
    try:
        text = read_manifest(name, limits or current())
        docs = list(load_documents(name, text, limits or current()))
    except YamlSyntaxError as exc:
        pos = exc.position
        problem = f"not valid YAML: {exc.problem}" if exc.rule.endswith("syntax") else exc.problem
        return RepoConfig(
            root, name, findings=(Finding(name, pos.line, pos.column, exc.rule, problem),)
        )
    except (OSError, UnicodeDecodeError) as exc:
        return RepoConfig(
            root, name, findings=(Finding(name, 1, 1, RULE_INVALID, f"cannot read: {exc}"),)
        )
    if not docs or docs[0].data is None:
        return RepoConfig(root, name)
    return _parse(root, name, docs[0], today or datetime.date.today())


def _display(path: Path) -> str:
    cwd = os.getcwd()
    absolute = os.path.abspath(path)
    return absolute[len(cwd) + 1 :] if absolute.startswith(cwd + os.sep) else str(path)


def _schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((schemas_dir() / SCHEMA_FILE).read_text("utf-8"))
    return loaded


def _parse(root: Path, name: str, doc: Document, today: datetime.date) -> RepoConfig:
    findings: list[Finding] = []
    errors = list(Draft202012Validator(_schema()).iter_errors(doc.data))
    for error in errors:
        path = tuple(error.absolute_path)
        findings.append(
            finding_at(
                doc,
                path,
                RULE_INVALID,
                f"{CONFIG_FILE}: {format_path(path) or 'top level'}: {error.message}",
            )
        )
    if errors:
        # Half a config would bind files to the wrong workspace or silence the wrong rule.
        return RepoConfig(root, name, findings=tuple(findings))
    data: dict[str, Any] = doc.data
    ws = data.get("workspace")
    workspace = None
    if isinstance(ws, dict):
        workspace = DefaultWorkspace(
            ws["name"], ws.get("subscription"), ws.get("resourceGroup"), ws.get("location")
        )
    ext = data.get("external") or {}
    assets: dict[str, dict[str, frozenset[str]]] = {}
    for asset_type in ASSET_TYPES:
        table: dict[str, set[str]] = {}
        for entry in ext.get(asset_type, ()):
            asset, _, version = entry.partition(":")
            table.setdefault(asset, set()).update([version] if version else [])
        assets[asset_type] = {k: frozenset(v) for k, v in table.items()}
    external = External(ext.get("mode") == "permissive", assets)
    pol = data.get("policies") or {}
    disabled = {
        rule: doc.locate(("policies", "disable", i)).line
        for i, rule in enumerate(pol.get("disable", ()))
    }
    severity = {
        rule: (Severity(value), doc.locate(("policies", "severity", rule)).line)
        for rule, value in (pol.get("severity") or {}).items()
    }
    exceptions: list[RuleException] = []
    for i, exc in enumerate(pol.get("exceptions", ())):
        line = doc.locate(("policies", "exceptions", i)).line
        expires = _date(exc.get("expires"))
        if "expires" in exc and expires is None:
            findings.append(
                finding_at(
                    doc,
                    ("policies", "exceptions", i, "expires"),
                    RULE_INVALID,
                    f"expires {exc['expires']!r} is not a date; write YYYY-MM-DD",
                )
            )
            continue
        if expires is not None and expires < today:
            findings.append(
                finding_at(
                    doc,
                    ("policies", "exceptions", i, "expires"),
                    RULE_EXPIRED,
                    f"the exception for {exc['rule']} expired on {expires.isoformat()} and no "
                    "longer applies: fix what it excepted, or renew it with a new reason",
                    Severity.WARNING,
                )
            )
            continue
        exceptions.append(
            RuleException(
                exc["rule"],
                exc["reason"],
                line,
                exc.get("kind"),
                exc.get("name"),
                exc.get("files"),
                expires,
            )
        )
    rule_dirs: list[tuple[Path, int]] = []
    real_root = files.real(root)
    for i, entry in enumerate(pol.get("rules", ())):
        target = files.real(root / entry)
        problem = None
        if not files.inside(real_root, target):
            problem = f"rules folder {entry!r} resolves outside the repository {root}"
        elif not target.is_dir():
            problem = f"rules folder {entry!r} does not exist (relative to {root})"
        if problem:
            findings.append(
                finding_at(doc, ("policies", "rules", i), RULE_INVALID, f"{problem}; fix the path")
            )
        else:
            rule_dirs.append((target, doc.locate(("policies", "rules", i)).line))
    return RepoConfig(
        root,
        name,
        workspace,
        external,
        disabled,
        severity,
        tuple(exceptions),
        tuple(rule_dirs),
        tuple(findings),
        tuple(data.get("exclude", ())),
    )


def _date(value: Any) -> datetime.date | None:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def unknown_rules(config: RepoConfig, known: Iterable[str]) -> list[Finding]:
    """A setting naming a rule no policy has is a typo that silently does nothing."""
    ids = set(known)
    named = [
        *((rule, line) for rule, line in config.disabled.items()),
        *((rule, line) for rule, (_, line) in config.severity.items()),
        *((e.rule, e.line) for e in config.exceptions),
    ]
    return [
        Finding(
            config.file or CONFIG_FILE,
            line,
            1,
            RULE_UNKNOWN_RULE,
            f"{rule!r} is not a policy rule (`amlops policies` lists them); only policy rules "
            "can be disabled, re-graded or excepted",
            severity=Severity.WARNING,
        )
        for rule, line in named
        if rule not in ids
    ]


def excepted(
    config: RepoConfig, findings: Sequence[Finding], policy_ids: Iterable[str]
) -> list[Finding]:
    """``findings`` without the policy findings an exception covers, plus a warning for each
    exception that covers nothing (the object was fixed or renamed: the exception is stale)."""
    ids = set(policy_ids)
    used: set[int] = set()
    out: list[Finding] = []
    for f in findings:
        hit = None
        if f.rule in ids:
            hit = next(
                (i for i, e in enumerate(config.exceptions) if e.matches(f, config.root)), None
            )
        if hit is None:
            out.append(f)
        else:
            used.add(hit)
    for i, e in enumerate(config.exceptions):
        if i not in used and e.rule in ids:
            out.append(
                Finding(
                    config.file or CONFIG_FILE,
                    e.line,
                    1,
                    RULE_UNUSED,
                    f"the exception for {e.rule} matches no finding; remove it",
                    severity=Severity.WARNING,
                )
            )
    return out


def suppressed(
    findings: Sequence[Finding], policy_ids: Iterable[str], texts: dict[str, str] | None = None
) -> list[Finding]:
    """``findings`` without the policy findings suppressed by an ``# amlops: ignore[...]``
    comment on their line. A suppression without a reason does not apply and is a warning:
    the reason is what a reviewer reads instead of the rule."""
    ids = set(policy_ids)
    lines_of: dict[str, list[str]] = {}
    out: list[Finding] = []
    no_reason: dict[tuple[str, int], Finding] = {}
    for f in findings:
        if f.rule not in ids:
            out.append(f)
            continue
        if f.file not in lines_of:
            lines_of[f.file] = _lines(f.file, texts)
        lines = lines_of[f.file]
        match = _SUPPRESSION.search(lines[f.line - 1]) if 0 < f.line <= len(lines) else None
        rules = {r.strip() for r in match.group(1).split(",")} if match else set()
        if match is None or f.rule not in rules:
            out.append(f)
            continue
        if match.group(2):
            continue
        out.append(f)
        no_reason[(f.file, f.line)] = Finding(
            f.file,
            f.line,
            match.start() + 1,
            RULE_NO_REASON,
            f"the suppression of {f.rule} gives no reason, so it does not apply; write "
            f"`# amlops: ignore[{f.rule}] <why>`",
            severity=Severity.WARNING,
        )
    return [*out, *no_reason.values()]


def _lines(file: str, texts: dict[str, str] | None) -> list[str]:
    if texts is not None and file in texts:
        return texts[file].splitlines()
    try:
        return Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
