"""Loading a tree of manifests: our kinds, and plain Azure ML CLI v2 files wrapped into them."""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlops import API_VERSION
from amlops.core import files
from amlops.core.assets import MODEL_TYPES
from amlops.core.findings import Finding, Severity, format_path
from amlops.core.limits import Limits, current
from amlops.core.source import (
    RULE_SYNTAX,
    Document,
    FieldPath,
    Position,
    YamlSyntaxError,
    load_documents,
    read_manifest,
)
from amlops.kinds import INFRA_KINDS as INFRA_KINDS  # what infra/ and the plan split on
from amlops.kinds import KINDS, workspace_of

YAML_SUFFIXES = (".yaml", ".yml")
ORIGIN_AMLOPS = "amlops"
ORIGIN_CLI = "azureml-cli-v2"


@dataclass(frozen=True)
class Segment:
    """Maps the part of a manifest body under ``prefix`` to ``doc_prefix`` inside ``doc``."""

    prefix: FieldPath
    doc: Document
    doc_prefix: FieldPath = ()


@dataclass
class Manifest:
    """One desired object: kind, name and body, plus where each part of it was written."""

    kind: str
    name: str
    body: dict[str, Any]
    segments: list[Segment]
    origin: str = ORIGIN_AMLOPS

    @property
    def metadata(self) -> dict[str, Any]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.body.get("spec")
        return spec if isinstance(spec, dict) else {}

    @property
    def workspace(self) -> str | None:
        return workspace_of(self.kind, self.name, self.spec)

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity: names are unique per kind within a workspace."""
        return (self.kind, self.workspace or "", self.name)

    @property
    def ref(self) -> str:
        scope = f"{self.workspace}/" if self.workspace and self.kind != "Workspace" else ""
        return f"{self.kind}/{scope}{self.name}"

    @property
    def file(self) -> str:
        return self.segments[0].doc.file

    def _segment(self, path: FieldPath) -> tuple[Segment, FieldPath]:
        best = self.segments[0]
        for seg in self.segments:
            if path[: len(seg.prefix)] == seg.prefix and len(seg.prefix) >= len(best.prefix):
                best = seg
        if path[: len(best.prefix)] != best.prefix:
            return best, best.doc_prefix
        return best, best.doc_prefix + path[len(best.prefix) :]

    def locate(self, path: FieldPath = ()) -> Position:
        seg, doc_path = self._segment(path)
        return seg.doc.locate(doc_path)

    def base_dir(self, path: FieldPath = ()) -> Path:
        """Relative paths resolve against the file that names them."""
        seg, _ = self._segment(path)
        return Path(os.path.dirname(os.path.abspath(seg.doc.file)))

    def resolve_path(self, path: FieldPath, value: str) -> Path:
        # normpath, not resolve(): symlinks stay as the user wrote them, and no syscalls.
        target = files.local_target(value)
        return Path(os.path.normpath(os.path.join(self.base_dir(path), target)))

    def document(self, path: FieldPath = ()) -> Document:
        """The YAML document ``path`` was written in."""
        return self._segment(path)[0].doc

    def source_root(self, path: FieldPath = ()) -> Path:
        """The root the paths written at ``path`` must stay inside: the one the file was
        loaded under, else (a manifest built in memory) its own folder."""
        seg, _ = self._segment(path)
        return seg.doc.root or files.real(self.base_dir(path))

    def contained_path(self, path: FieldPath, value: str, limits: Limits | None = None) -> Path:
        """``resolve_path`` for a reader: the resolved path, or ``files.PathRefusedError``
        when it leaves the source root, is special, or is over a size limit."""
        return files.admit(
            self.source_root(path),
            self.resolve_path(path, value),
            limits,
            what=f"{format_path(path)}: {value}",
        )

    def finding(
        self,
        path: FieldPath,
        rule: str,
        message: str,
        severity: Severity = Severity.ERROR,
    ) -> Finding:
        pos = self.locate(path)
        return Finding(
            file=pos.file,
            line=pos.line,
            column=pos.column,
            rule=rule,
            message=message,
            severity=severity,
            kind=self.kind,
            name=self.name,
            field=format_path(path),
        )


@dataclass
class LoadResult:
    manifests: list[Manifest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    skipped: list[str] = field(default_factory=list)


def _doc_finding(
    doc: Document, path: FieldPath, rule: str, message: str, severity: Severity = Severity.ERROR
) -> Finding:
    pos = doc.locate(path)
    return Finding(
        pos.file, pos.line, pos.column, rule, message, severity=severity, field=format_path(path)
    )


# -- plain Azure ML CLI v2 files ------------------------------------------------------------

_SCHEMA_KINDS = {
    "model": "model",
    "environment": "environment",
    "managedonlineendpoint": "online_endpoint",
    "kubernetesonlineendpoint": "online_endpoint",
    "managedonlinedeployment": "online_deployment",
    "kubernetesonlinedeployment": "online_deployment",
    "pipelinejob": "pipeline_job",
    "amlcompute": "compute",
    "workspace": "workspace",
}
_SCHEMA_RE = re.compile(r"/([A-Za-z]+)\.schema\.json$")


def cli_v2_type(data: dict[str, Any]) -> str | None:
    """Recognise a plain Azure ML CLI v2 document by its ``$schema`` or, failing that, its shape."""
    schema = data.get("$schema")
    if isinstance(schema, str):
        match = _SCHEMA_RE.search(schema)
        if match:
            return _SCHEMA_KINDS.get(match.group(1).lower(), "unsupported:" + match.group(1))
    if data.get("type") == "pipeline" and "jobs" in data:
        return "pipeline_job"
    if data.get("type") == "amlcompute":
        return "compute"
    if "endpoint_name" in data and "name" in data:
        return "online_deployment"
    if "auth_mode" in data and "name" in data:
        return "online_endpoint"
    if "name" in data and ("image" in data or "build" in data) and "path" not in data:
        return "environment"
    if "name" in data and "path" in data and data.get("type") in (None, *MODEL_TYPES):
        return "model"
    if "name" in data and "location" in data and "public_network_access" in data:
        return "workspace"
    return None


def _wrap(
    kind: str, name: str, spec: dict[str, Any], doc: Document, segs: list[Segment]
) -> Manifest:
    body = {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
    segments = [Segment((), doc, ()), *segs]
    return Manifest(kind, name, body, segments, origin=ORIGIN_CLI)


_COMPUTE_FIELDS = {
    "size": "vmSize",
    "min_instances": "minInstances",
    "max_instances": "maxInstances",
    "idle_time_before_scale_down": "idleTimeBeforeScaleDown",
    "tags": "tags",
    "description": "description",
}
_TIERS = {"dedicated": "Dedicated", "low_priority": "LowPriority"}
_WORKSPACE_FIELDS = {
    "location": "location",
    "display_name": "displayName",
    "description": "description",
    "resource_group": "resourceGroup",
    "public_network_access": "publicNetworkAccess",
    "tags": "tags",
}


def _from_cli(cli_type: str, doc: Document, default_workspace: str | None) -> Manifest | Finding:
    data: dict[str, Any] = doc.data
    name = data.get("name")
    if cli_type.startswith("unsupported:"):
        return _doc_finding(
            doc,
            ("$schema",),
            "load.unsupported-cli-type",
            f"Azure ML CLI v2 type {cli_type.split(':', 1)[1]!r} is not managed by amlops and "
            "is left alone; managed: model, environment, online endpoint/deployment, pipeline "
            "job, amlcompute, workspace",
            # a repository of existing `az ml` YAML keeps its data assets, command jobs,
            # components... and must still validate
            Severity.WARNING,
        )
    if cli_type == "pipeline_job" and not isinstance(name, str):
        name = Path(doc.file).stem if doc.index == 0 else f"{Path(doc.file).stem}-{doc.index}"
    if not isinstance(name, str) or not name:
        return _doc_finding(doc, ("name",), "load.missing-name", "set `name:`")
    name_seg = Segment(("metadata", "name"), doc, ("name",))
    ws_spec: dict[str, Any] = {"workspace": default_workspace} if default_workspace else {}
    if cli_type == "workspace":
        spec: dict[str, Any] = {}
        segs = [name_seg]
        for src, dst in _WORKSPACE_FIELDS.items():
            if src in data:
                spec[dst] = data[src]
                segs.append(Segment(("spec", dst), doc, (src,)))
        managed = data.get("managed_network")
        if isinstance(managed, dict) and "isolation_mode" in managed:
            mode = str(managed["isolation_mode"])
            spec["managedNetwork"] = {"isolationMode": _pascal(mode)}
            segs.append(Segment(("spec", "managedNetwork"), doc, ("managed_network",)))
        tags = data.get("tags") if isinstance(data.get("tags"), dict) else {}
        if isinstance(tags, dict) and "environment" in tags:
            spec["environment"] = tags["environment"]
        return _wrap("Workspace", name, spec, doc, segs)
    if cli_type == "compute":
        spec = dict(ws_spec)
        segs = [name_seg]
        for src, dst in _COMPUTE_FIELDS.items():
            if src in data:
                spec[dst] = data[src]
                segs.append(Segment(("spec", dst), doc, (src,)))
        if "tier" in data:
            spec["tier"] = _TIERS.get(str(data["tier"]).lower(), data["tier"])
            segs.append(Segment(("spec", "tier"), doc, ("tier",)))
        return _wrap("ComputeCluster", name, spec, doc, segs)
    kind, part = _CLI_PARTS[cli_type]
    spec = {**ws_spec, part.key: data}
    # The kind's lists of parts start empty: plain deployment files attach to their endpoint.
    spec.update({other.key: [] for other in kind.parts if other.many})
    return _wrap(kind.name, name, spec, doc, [name_seg, Segment(("spec", part.key), doc, ())])


_CLI_PARTS = {p.cli_type: (k, p) for k in KINDS.values() for p in k.parts if p.cli_type}


def _pascal(mode: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\s]+", mode))


# -- the tree ---------------------------------------------------------------------------------


def iter_yaml_files(paths: Sequence[Path | str]) -> Iterable[Path]:
    """YAML files under each path, sorted, skipping hidden files and folders (.git, .amlops)."""
    for raw in paths:
        yield from (Path(name) for name, _ in _yaml_files(raw))


def _yaml_files(raw: Path | str) -> list[tuple[str, bool]]:
    """(file, is a symbolic link) of each YAML file under ``raw``, sorted. Links to folders
    are not followed (as ``os.walk``); the scan says which files are links for free."""
    path = os.fspath(raw)
    if not os.path.isdir(path):
        return [(path, True)]  # named directly: checked like a link (it may be one)
    found: list[tuple[str, bool]] = []
    pending = [path]
    while pending:
        folder = pending.pop()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue  # as os.walk: an unreadable folder is skipped
        with entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.name.endswith(YAML_SUFFIXES):
                    link = entry.is_symlink()
                    if not (link and entry.is_dir()):  # a linked folder is never entered
                        found.append((entry.path, link))
    return sorted(found)


def display_path(path: Path, cwd: str | None = None) -> str:
    """Paths as users wrote them: relative to the working directory when below it."""
    cwd = cwd or os.getcwd()
    absolute = os.path.abspath(path)
    if absolute.startswith(cwd + os.sep):
        return absolute[len(cwd) + 1 :]
    return str(path)


def load_tree(
    paths: Sequence[Path | str],
    texts: dict[str, str] | None = None,
    *,
    root: Path | str | None = None,
    limits: Limits | None = None,
) -> LoadResult:
    """Load every manifest under ``paths``. ``texts`` overrides file contents (Git revisions).

    ``root`` is the source root files must stay inside (default: each path's Git top level,
    see ``amlops.core.files``); a YAML file, or a link to one, resolving outside it is a
    finding and is not read.
    """
    with gc_paused():
        return _load_tree(paths, texts, root, limits or current())


@contextmanager
def gc_paused() -> Iterator[None]:
    """Loading allocates millions of small, acyclic objects (YAML nodes kept for positions);
    the cyclic collector would rescan the growing heap again and again for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _sources(
    paths: Sequence[Path | str], texts: dict[str, str] | None, root: Path | str | None
) -> list[tuple[str, str | None, Path, bool]]:
    """(name as shown, text or None to read the file, source root, whether the file's real
    location must be checked against the root) of each file to load."""
    roots = [files.real(root)] * len(paths) if root is not None else files.default_roots(paths)
    cwd = os.getcwd()
    if texts is None:
        out: list[tuple[str, str | None, Path, bool]] = []
        for raw, top in zip(paths, roots, strict=True):
            # The scan never enters a linked folder, so below a folder that is itself inside
            # the root only links need resolving.
            folder_inside = os.path.isdir(raw) and files.inside(top, files.real(raw))
            out.extend(
                (display_path(Path(name), cwd), None, top, is_link or not folder_inside)
                for name, is_link in _yaml_files(raw)
            )
        return out
    # Git revisions: each file belongs to the path it was listed under.
    anchors = [(os.path.abspath(p), top) for p, top in zip(paths, roots, strict=True)]
    fallback = files.real(root) if root is not None else None
    listed: list[tuple[str, str | None, Path, bool]] = []
    for name, text in sorted(texts.items()):
        absolute = os.path.abspath(name)
        owner = next(
            (t for a, t in anchors if absolute == a or absolute.startswith(a + os.sep)),
            fallback,
        )
        listed.append((name, text, owner or files.default_roots([name])[0], False))
    return listed


def _load_tree(
    paths: Sequence[Path | str],
    texts: dict[str, str] | None,
    root: Path | str | None,
    limits: Limits,
) -> LoadResult:
    result = LoadResult()
    cli_docs: list[tuple[str, Document]] = []
    for name, given, top, check in _sources(paths, texts, root):
        if check:
            target = files.real(name)
            if not files.inside(top, target):
                result.findings.append(
                    Finding(
                        name,
                        1,
                        1,
                        "load.outside-root",
                        f"{name} resolves to {target}, outside the source root {top}; it was "
                        "not read: replace the link with the file, or validate that folder "
                        "on its own",
                    )
                )
                continue
        try:
            text = given if given is not None else read_manifest(name, limits)
        except FileNotFoundError:
            result.findings.append(
                Finding(name, 1, 1, "load.missing-file", f"{name} does not exist")
            )
            continue
        except YamlSyntaxError as exc:  # not a file, or over the size limit
            result.findings.append(Finding(name, 1, 1, exc.rule, exc.problem))
            continue
        except (OSError, UnicodeDecodeError) as exc:
            result.findings.append(Finding(name, 1, 1, "load.unreadable", f"cannot read: {exc}"))
            continue
        result.files += 1
        try:
            docs = list(load_documents(name, text, limits))
        except YamlSyntaxError as exc:
            pos = exc.position
            message = (
                f"not valid YAML: {exc.problem}; fix the syntax (indentation, quoting)"
                if exc.rule == RULE_SYNTAX
                else exc.problem
            )
            result.findings.append(Finding(pos.file, pos.line, pos.column, exc.rule, message))
            continue
        recognised = False
        for doc in docs:
            doc.root = top
            for dup in doc.duplicates:
                result.findings.append(
                    Finding(
                        dup.position.file,
                        dup.position.line,
                        dup.position.column,
                        "load.duplicate-key",
                        f"key {dup.key!r} is repeated (first on line {dup.first_line}); "
                        "YAML keeps only the last one, remove one of them",
                        field=format_path(dup.path),
                    )
                )
            if doc.data is None:
                continue
            if not isinstance(doc.data, dict):
                result.findings.append(
                    _doc_finding(doc, (), "load.not-a-mapping", "a manifest must be a mapping")
                )
                recognised = True
                continue
            if "apiVersion" in doc.data or "kind" in doc.data:
                recognised = True
                manifest = _native(doc, result.findings)
                if manifest is not None:
                    result.manifests.append(manifest)
                continue
            cli_type = cli_v2_type(doc.data)
            if cli_type is not None:
                recognised = True
                cli_docs.append((cli_type, doc))
        if not recognised:
            result.skipped.append(name)
    _attach_cli_docs(result, cli_docs)
    return result


def _native(doc: Document, findings: list[Finding]) -> Manifest | None:
    data: dict[str, Any] = doc.data
    api = data.get("apiVersion")
    kind = data.get("kind")
    if api != API_VERSION:
        findings.append(
            _doc_finding(
                doc,
                ("apiVersion",),
                "load.api-version",
                f"apiVersion must be {API_VERSION!r}, got {api!r}",
            )
        )
        return None
    if not isinstance(kind, str) or kind not in KINDS:
        findings.append(
            _doc_finding(
                doc,
                ("kind",),
                "load.unknown-kind",
                f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}",
            )
        )
        return None
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        findings.append(
            _doc_finding(doc, ("metadata",), "load.missing-name", "set `metadata.name`")
        )
        return None
    return Manifest(str(kind), name, data, [Segment((), doc, ())])


def _default_workspace(manifests: list[Manifest]) -> str | None:
    workspaces = [m for m in manifests if m.kind == "Workspace"]
    marked = [m for m in workspaces if m.spec.get("default") is True]
    if len(marked) == 1:
        return marked[0].name
    if len(workspaces) == 1:
        return workspaces[0].name
    return None


def _attach_cli_docs(result: LoadResult, cli_docs: list[tuple[str, Document]]) -> None:
    # Workspaces first: the other plain files bind to the default workspace.
    for cli_type, doc in cli_docs:
        if cli_type == "workspace":
            wrapped = _from_cli(cli_type, doc, None)
            _add(result, wrapped)
    default_ws = _default_workspace(result.manifests)
    deployments: list[Document] = []
    for cli_type, doc in cli_docs:
        if cli_type == "workspace":
            continue
        if cli_type == "online_deployment":
            deployments.append(doc)
            continue
        if default_ws is None and not cli_type.startswith("unsupported:"):
            result.findings.append(
                _doc_finding(
                    doc,
                    (),
                    "load.no-default-workspace",
                    "a plain Azure ML file binds to the default workspace: declare one "
                    "Workspace, or mark one with `spec.default: true`",
                )
            )
            continue
        _add(result, _from_cli(cli_type, doc, default_ws))
    for doc in deployments:
        _attach_deployment(result, doc)


def _add(result: LoadResult, item: Manifest | Finding) -> None:
    if isinstance(item, Finding):
        result.findings.append(item)
    else:
        result.manifests.append(item)


def _attach_deployment(result: LoadResult, doc: Document) -> None:
    endpoint_name = doc.data.get("endpoint_name")
    targets = [m for m in result.manifests if m.kind == "Endpoint" and m.name == endpoint_name]
    if len(targets) != 1:
        result.findings.append(
            _doc_finding(
                doc,
                ("endpoint_name",),
                "ref.endpoint",
                f"deployment names endpoint {endpoint_name!r}, which no manifest declares"
                if not targets
                else f"endpoint {endpoint_name!r} is declared in several workspaces; "
                "put the deployment under `spec.deployments` of the right one",
            )
        )
        return
    endpoint = targets[0]
    deployments = endpoint.spec.setdefault("deployments", [])
    if not isinstance(deployments, list):
        return
    data = {k: v for k, v in doc.data.items() if k != "endpoint_name"}
    deployments.append(data)
    endpoint.segments.append(Segment(("spec", "deployments", len(deployments) - 1), doc, ()))
