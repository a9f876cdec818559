"""Cross-references between manifests. A dangling reference is an error at the referring line.

Registry assets (``azureml://registries/...``), ARM IDs and Azure ML's curated environments
(``AzureML-...``) live outside the repository and are accepted as they are.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from amlops.core import files
from amlops.core.findings import Finding
from amlops.core.manifests import Manifest
from amlops.core.source import Path_

MODEL_TYPES = ("custom_model", "mlflow_model", "triton_model")
_ASSET_RE = re.compile(
    r"^azureml:(?P<name>[A-Za-z0-9_.-]+)(?::(?P<version>[^:@]+)|@(?P<label>\w+))?$"
)
_BINDING_RE = re.compile(r"\$\{\{\s*parent\.(?P<what>inputs|outputs|jobs)\.(?P<rest>[\w.]+)\s*\}\}")


@dataclass(frozen=True)
class AssetRef:
    name: str
    version: str | None
    label: str | None


def parse_asset_ref(value: str) -> AssetRef | None:
    """``azureml:name:1`` / ``azureml:name@latest``; None for external or non-asset values."""
    match = _ASSET_RE.match(value)
    if not match:
        return None
    return AssetRef(match["name"], match["version"], match["label"])


def is_external(value: str) -> bool:
    return value.startswith(("azureml://", "azureml:/subscriptions/")) or value.startswith(
        "azureml:AzureML-"
    )


_PATH_FIELDS = ("path", "code", "conda_file", "component")


def is_local(value: str) -> bool:
    """A path on disk, relative to the file that names it (not an asset, URL or binding);
    ``file:`` URIs, which Azure ML reads from the local disk too, count as paths."""
    if value.startswith("file:"):
        return True
    return not (value.startswith(("azureml:", "${{")) or "://" in value)


def local_paths(prefix: Path_, value: Any) -> Iterator[tuple[Path_, str, str]]:
    """Every ``path:``/``code:``/``conda_file:``/``component:`` naming a local file or folder:
    (where, field name, the path as written)."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = (*prefix, key)
            if key in _PATH_FIELDS and isinstance(item, str) and is_local(item):
                yield path, key, item
            else:
                yield from local_paths(path, item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from local_paths((*prefix, i), item)


# Paths written relative to another path field of the same mapping: (field, relative to).
_NESTED_FIELDS = (("scoring_script", "code"), ("dockerfile_path", "path"))
# Kinds whose spec embeds Azure ML parts that name files; the infra kinds name none.
FILE_KINDS = ("Model", "Pipeline", "Endpoint", "Environment")


def read_paths(prefix: Path_, value: Any) -> Iterator[tuple[Path_, str, str, Path_ | None]]:
    """``local_paths`` plus the paths written relative to one of them (a deployment's
    ``scoring_script`` inside its ``code``, a build's ``dockerfile_path`` inside its
    ``path``), joined: (where, field name, path relative to the manifest, where the path it
    is relative to is written, or None). Every file a reader of the spec may open is here;
    a path comes after the one it is relative to."""
    if isinstance(value, dict):
        for key, item in value.items():
            path = (*prefix, key)
            if key in _PATH_FIELDS and isinstance(item, str) and is_local(item):
                yield path, key, item, None
            else:
                yield from read_paths(path, item)
        for name, parent in _NESTED_FIELDS:
            item, base = value.get(name), value.get(parent)
            if isinstance(item, str) and isinstance(base, str) and is_local(base):
                joined = os.path.join(files.local_target(base), files.local_target(item))
                yield (*prefix, name), name, joined, (*prefix, parent)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from read_paths((*prefix, i), item)


def check_files(m: Manifest, checker: files.Checker, *, on_disk: bool = True) -> list[Finding]:
    """Findings for the files ``m`` names: outside the source root, special or over a size
    limit (``amlops.core.files``), or, ``on_disk``, missing. ``on_disk`` False (a Git
    revision that is not checked out) checks only where the paths point."""
    if m.kind not in FILE_KINDS:
        return []
    findings = []
    refused: set[Path_] = set()
    for path, name, value, relative_to in read_paths(("spec",), m.spec):
        if relative_to in refused:
            continue  # one finding for one mistake: the folder it is relative to is refused
        doc = m.document(path)
        verdict = checker.check(doc.file, doc.root, value, on_disk=on_disk)
        if verdict.problem is not None:
            refused.add(path)
            findings.append(m.finding(path, verdict.problem.rule, f"{name}: {verdict.problem}"))
        elif on_disk and relative_to is None and not verdict.exists:
            findings.append(
                m.finding(
                    path,
                    "ref.missing-file",
                    f"{name}: {value!r} does not exist (resolved to {verdict.resolved}); paths "
                    "are relative to the file that names them",
                )
            )
    return findings


def compute_name(value: str) -> str:
    return value.removeprefix("azureml:")


@dataclass
class Catalog:
    """What the manifests declare, indexed by workspace, for reference lookups."""

    workspaces: set[str]
    computes: set[tuple[str, str]]
    models: dict[tuple[str, str], set[str]]  # (workspace, model name) -> versions
    environments: dict[tuple[str, str], set[str]]

    @classmethod
    def build(cls, manifests: list[Manifest]) -> Catalog:
        cat = cls(set(), set(), {}, {})
        for m in manifests:
            ws = m.workspace or ""
            if m.kind == "Workspace":
                cat.workspaces.add(m.name)
            elif m.kind == "ComputeCluster":
                cat.computes.add((ws, m.name))
            elif m.kind == "Model":
                model = m.spec.get("model")
                if isinstance(model, dict) and isinstance(model.get("name"), str):
                    versions = cat.models.setdefault((ws, model["name"]), set())
                    versions.add(str(model.get("version", "")))
            elif m.kind == "Environment":
                env = m.spec.get("environment")
                if isinstance(env, dict) and isinstance(env.get("name"), str):
                    versions = cat.environments.setdefault((ws, env["name"]), set())
                    versions.add(str(env.get("version", "")))
            elif m.kind == "Pipeline":
                for _, name, version in pipeline_registered_models(m):
                    cat.models.setdefault((ws, name), set()).add(version)
        return cat

    def has_asset(self, table: dict[tuple[str, str], set[str]], ws: str, ref: AssetRef) -> bool:
        versions = table.get((ws, ref.name))
        if versions is None:
            return False
        return ref.version is None or ref.version in versions


def pipeline_registered_models(m: Manifest) -> Iterator[tuple[str, str, str]]:
    """(output name, model name, version) of pipeline outputs that register a model."""
    job = m.spec.get("job")
    outputs = job.get("outputs") if isinstance(job, dict) else None
    if not isinstance(outputs, dict):
        return
    for out_name, out in outputs.items():
        if (
            isinstance(out, dict)
            and out.get("type") in MODEL_TYPES
            and isinstance(out.get("name"), str)
        ):
            yield str(out_name), out["name"], str(out.get("version", ""))


def model_refs(m: Manifest) -> Iterator[tuple[Path_, str]]:
    """Every model an Endpoint or Pipeline consumes, with where it is named."""
    if m.kind == "Endpoint":
        for i, dep in enumerate(_list(m.spec.get("deployments"))):
            if isinstance(dep, dict) and isinstance(dep.get("model"), str):
                yield ("spec", "deployments", i, "model"), dep["model"]
    elif m.kind == "Pipeline":
        job = m.spec.get("job")
        inputs = job.get("inputs") if isinstance(job, dict) else None
        for name, value in (inputs or {}).items() if isinstance(inputs, dict) else []:
            if (
                isinstance(value, dict)
                and value.get("type") in MODEL_TYPES
                and isinstance(value.get("path"), str)
            ):
                yield ("spec", "job", "inputs", name, "path"), value["path"]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _steps(m: Manifest) -> dict[str, Any]:
    job = m.spec.get("job")
    jobs = job.get("jobs") if isinstance(job, dict) else None
    return jobs if isinstance(jobs, dict) else {}


def pipeline_computes(m: Manifest) -> Iterator[tuple[Path_, str]]:
    job = m.spec.get("job")
    if not isinstance(job, dict):
        return
    settings = job.get("settings")
    if isinstance(settings, dict) and isinstance(settings.get("default_compute"), str):
        yield ("spec", "job", "settings", "default_compute"), settings["default_compute"]
    if isinstance(job.get("compute"), str):
        yield ("spec", "job", "compute"), job["compute"]
    for step, body in _steps(m).items():
        if isinstance(body, dict) and isinstance(body.get("compute"), str):
            yield ("spec", "job", "jobs", step, "compute"), body["compute"]


def _environments(m: Manifest) -> Iterator[tuple[Path_, Any]]:
    if m.kind == "Endpoint":
        for i, dep in enumerate(_list(m.spec.get("deployments"))):
            if isinstance(dep, dict) and "environment" in dep:
                yield ("spec", "deployments", i, "environment"), dep["environment"]
    elif m.kind == "Pipeline":
        for step, body in _steps(m).items():
            if isinstance(body, dict) and "environment" in body:
                yield ("spec", "job", "jobs", step, "environment"), body["environment"]


def inline_environments(m: Manifest) -> Iterator[tuple[Path_, dict[str, Any]]]:
    """Environments written out in a deployment or step (image, conda_file) instead of named."""
    for path, value in _environments(m):
        if isinstance(value, dict):
            yield path, value


def environment_refs(m: Manifest) -> Iterator[tuple[Path_, str]]:
    """Environments a deployment or step names (``azureml:NAME:VERSION``)."""
    for path, value in _environments(m):
        if isinstance(value, str):
            yield path, value


def check(all_manifests: list[Manifest], valid: list[Manifest]) -> list[Finding]:
    """Cross-references (the files a manifest names: ``check_files``)."""
    findings = list(_duplicates(all_manifests))
    cat = Catalog.build(valid)
    for m in valid:
        findings.extend(_check_one(m, cat))
    return findings


def _duplicates(manifests: list[Manifest]) -> Iterator[Finding]:
    seen: dict[tuple[str, str, str], Manifest] = {}
    for m in manifests:
        first = seen.get(m.key)
        if first is not None:
            where = first.locate(("metadata", "name"))
            scope = (
                f" in workspace {m.workspace!r}" if m.workspace and m.kind != "Workspace" else ""
            )
            yield m.finding(
                ("metadata", "name"),
                "ref.duplicate",
                f"{m.kind} {m.name!r}{scope} is already declared at {where.file}:{where.line}; "
                "names are unique per kind and workspace",
            )
        else:
            seen[m.key] = m


def _check_one(m: Manifest, cat: Catalog) -> Iterator[Finding]:
    ws = m.workspace or ""
    if m.kind not in ("Workspace", "RoleAssignment") and ws not in cat.workspaces:
        yield m.finding(
            ("spec", "workspace"),
            "ref.workspace",
            f"workspace {ws!r} is not declared; add a Workspace manifest or fix the name",
        )
    if m.kind == "RoleAssignment":
        yield from _check_scope(m, cat)
    for path, value in model_refs(m):
        yield from _check_asset(m, path, value, cat.models, cat, "model", "a Model manifest")
    for path, value in environment_refs(m):
        yield from _check_asset(
            m, path, value, cat.environments, cat, "environment", "an Environment manifest"
        )
    if m.kind == "Pipeline":
        for path, value in pipeline_computes(m):
            name = compute_name(value)
            if name != "serverless" and (ws, name) not in cat.computes:
                yield m.finding(
                    path,
                    "ref.compute",
                    f"compute {name!r} is not a ComputeCluster of workspace {ws!r}",
                )
        yield from _check_bindings(m)


def _check_scope(m: Manifest, cat: Catalog) -> Iterator[Finding]:
    scope = m.spec.get("scope")
    if not isinstance(scope, dict):
        return
    ws = scope.get("workspace")
    if ws not in cat.workspaces:
        yield m.finding(
            ("spec", "scope", "workspace"),
            "ref.scope",
            f"scope names workspace {ws!r}, which is not declared",
        )
        return
    compute = scope.get("compute")
    if isinstance(compute, str) and (ws, compute) not in cat.computes:
        yield m.finding(
            ("spec", "scope", "compute"),
            "ref.scope",
            f"scope names compute {compute!r}, which is not a ComputeCluster of workspace {ws!r}",
        )


def _check_asset(
    m: Manifest,
    path: Path_,
    value: str,
    table: dict[tuple[str, str], set[str]],
    cat: Catalog,
    what: str,
    declared_by: str,
) -> Iterator[Finding]:
    if is_external(value) or not value.startswith("azureml:"):
        return
    ref = parse_asset_ref(value)
    if ref is None:
        yield m.finding(
            path,
            f"ref.{what}",
            f"{value!r} is not an asset reference; write azureml:NAME:VERSION",
        )
        return
    ws = m.workspace or ""
    if not cat.has_asset(table, ws, ref):
        known = sorted(table.get((ws, ref.name), set()))
        hint = f" (declared versions: {', '.join(known)})" if known else ""
        yield m.finding(
            path,
            f"ref.{what}",
            f"{what} {value.removeprefix('azureml:')!r} is not declared in workspace {ws!r}"
            f"{hint}; add {declared_by} or reference a registry asset",
        )


def _check_bindings(m: Manifest) -> Iterator[Finding]:
    job = m.spec.get("job")
    if not isinstance(job, dict):
        return
    steps = _steps(m)
    inputs = job.get("inputs") if isinstance(job.get("inputs"), dict) else {}
    outputs = job.get("outputs") if isinstance(job.get("outputs"), dict) else {}
    for path, text in _strings(("spec", "job", "jobs"), steps):
        for match in _BINDING_RE.finditer(text):
            what, rest = match["what"], match["rest"].split(".")
            if what == "inputs" and rest[0] not in (inputs or {}):
                yield m.finding(path, "ref.binding", f"pipeline has no input {rest[0]!r}")
            elif what == "outputs" and rest[0] not in (outputs or {}):
                yield m.finding(path, "ref.binding", f"pipeline has no output {rest[0]!r}")
            elif what == "jobs":
                step = steps.get(rest[0])
                if not isinstance(step, dict):
                    yield m.finding(path, "ref.binding", f"pipeline has no step {rest[0]!r}")
                elif len(rest) >= 3 and rest[1] == "outputs":
                    step_outputs = step.get("outputs")
                    if not isinstance(step_outputs, dict) or rest[2] not in step_outputs:
                        yield m.finding(
                            path,
                            "ref.binding",
                            f"step {rest[0]!r} has no output {rest[2]!r}",
                        )


def _strings(prefix: Path_, value: Any) -> Iterator[tuple[Path_, str]]:
    if isinstance(value, str):
        yield prefix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings((*prefix, key), item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings((*prefix, i), item)
