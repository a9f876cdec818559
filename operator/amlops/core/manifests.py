"""Loading a tree of manifests: our kinds, and plain Azure ML CLI v2 files wrapped into them."""

from __future__ import annotations

import gc
import hashlib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlops import API_VERSION
from amlops.core import files
from amlops.core.assets import MODEL_TYPES
from amlops.core.config import CONFIG_FILE, DefaultWorkspace
from amlops.core.findings import Finding, Severity, format_path
from amlops.core.limits import Limits, current
from amlops.core.locator import finding_at
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

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def kubernetes_name(name: str) -> str:
    """The custom resource name of an object named ``name`` in Azure ML.

    A plain Azure ML file keeps Azure ML's name (``SKLearnEnv``, ``nemo_pipeline_job``), which
    need not be a DNS-1123 label. A name that is one is kept; any other is lower-cased, each run
    of other characters becomes '-', and a hash of the original is appended, so two names that
    fold to the same label (``SKLearnEnv``, ``sklearnenv``) stay two objects.
    """
    if DNS_LABEL.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[: 63 - len(digest) - 1]
    return f"{base.rstrip('-')}-{digest}" if base else digest


# A field path in a hint: ``spec.tags.cost-center``, ``metadata.name`` (a trailing '.' ends
# the sentence, not the path).
_NAMED_FIELD = re.compile(r"\b(?:spec|metadata)(?:\.[A-Za-z0-9_-]+)+")


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

    def written_path(self, path: FieldPath) -> FieldPath:
        """``path`` as the user wrote it: a plain file's own field names (``tags.cost-center``,
        ``resource_group``), also for a field the file leaves out; ours for our manifests."""
        if self.origin != ORIGIN_CLI:
            return path
        fields = CLI_FIELDS.get(self.kind, {})
        for size in range(len(path), 0, -1):
            if path[:size] in fields:
                return fields[path[:size]] + path[size:]
        # an object of ours the file spells as one field (storage -> system_datastores_auth_mode)
        below = [theirs for ours, theirs in fields.items() if ours[: len(path)] == path]
        if len(below) == 1 and path:
            return below[0]
        seg, doc_path = self._segment(path)
        return doc_path if seg.prefix or seg.doc_prefix else path

    def written(self, text: str) -> str:
        """``text`` (a hint) with the ``spec.*`` / ``metadata.*`` fields it names spelt as in
        the file the user wrote."""
        if self.origin != ORIGIN_CLI:
            return text
        return _NAMED_FIELD.sub(
            lambda m: format_path(self.written_path(tuple(m.group(0).split(".")))), text
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
            field=format_path(self.written_path(path)),
        )


@dataclass
class LoadResult:
    manifests: list[Manifest] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    skipped: list[str] = field(default_factory=list)
    # Plain files nothing but the SDK loader (named) checks: types amlops leaves alone, and
    # files that cannot become objects without a default workspace (their mistakes still count).
    sdk_only: list[tuple[str, Document]] = field(default_factory=list)


# -- plain Azure ML CLI v2 files ------------------------------------------------------------

_SCHEMA_KINDS = {
    "model": "model",
    "environment": "environment",
    "managedonlineendpoint": "online_endpoint",
    "kubernetesonlineendpoint": "online_endpoint",
    "managedonlinedeployment": "online_deployment",
    "kubernetesonlinedeployment": "online_deployment",
    "pipelinejob": "pipeline_job",
    "commandjob": "pipeline_job",  # one step: the Pipeline kind runs it (amlops.kinds.pipeline)
    "commandcomponent": "component",
    "pipelinecomponent": "component",
    "amlcompute": "compute",
    "workspace": "workspace",
    "serverlessendpoint": "serverless_endpoint",
}
_SCHEMA_RE = re.compile(r"/([A-Za-z]+)\.schema\.json$")
# Types amlops does not manage, each with the azure-ai-ml loader that still judges the file: a
# repository of `az ml` YAML keeps its data assets and datastores, and their mistakes count.
UNMANAGED_LOADERS = {
    "data": "load_data",
    "azureblob": "load_datastore",
    "azurefile": "load_datastore",
    "azuredatalakegen1": "load_datastore",
    "azuredatalakegen2": "load_datastore",
    "batchendpoint": "load_batch_endpoint",
    "batchdeployment": "load_batch_deployment",
    "modelbatchdeployment": "load_batch_deployment",
    "sweepjob": "load_job",
    "paralleljob": "load_job",
    "sparkjob": "load_job",
    "computeinstance": "load_compute",
    "kubernetescompute": "load_compute",
    "registry": "load_registry",
}
_DATA_TYPES = ("uri_file", "uri_folder", "mltable")


def cli_v2_type(data: dict[str, Any]) -> str | None:
    """Recognise a plain Azure ML CLI v2 document by its ``$schema`` or, failing that, its shape."""
    schema = data.get("$schema")
    if isinstance(schema, str):
        match = _SCHEMA_RE.search(schema)
        if match:
            return _SCHEMA_KINDS.get(match.group(1).lower(), "unsupported:" + match.group(1))
    if data.get("type") == "pipeline" and ("jobs" in data or "component" in data):
        return "pipeline_job"
    if data.get("type") == "command" and "command" in data and "compute" in data:
        return "pipeline_job"  # a command job (a command component has no compute)
    if data.get("type") == "amlcompute":
        return "compute"
    if "endpoint_name" in data and "name" in data:
        return "online_deployment"
    if "model_id" in data and "name" in data:  # a model-catalog (serverless) endpoint
        return "serverless_endpoint"
    if "name" in data and "path" in data and data.get("type") in _DATA_TYPES:
        return "unsupported:data"
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


def _snake_cased(*fields: str) -> dict[FieldPath, FieldPath]:
    """Our ``spec`` fields (dotted) that a plain file spells the same in snake_case:
    ``managedNetwork.isolationMode`` is ``managed_network.isolation_mode``."""
    return {
        ("spec", *dotted.split(".")): tuple(
            re.sub(r"(?<=[a-z])(?=[A-Z])", "_", key).lower() for key in dotted.split(".")
        )
        for dotted in fields
    }


# Our field -> the field of a plain file it comes from, per kind: how a plain file is wrapped,
# and how a finding on one names the field the user wrote (``tags.cost-center``, never
# ``spec.tags.cost-center``), also for a field the file leaves out.
CLI_FIELDS: dict[str, dict[FieldPath, FieldPath]] = {
    "Workspace": {
        **_snake_cased(
            "location", "resourceGroup", "displayName", "description", "publicNetworkAccess", "tags"
        ),
        # which policies apply: Azure has no such field, teams keep it as a tag
        ("spec", "environment"): ("tags", "environment"),
        **_snake_cased("managedNetwork.isolationMode"),
        # identity-based system datastores are what a storage account without keys needs
        ("spec", "storage", "allowSharedKeyAccess"): ("system_datastores_auth_mode",),
    },
    "ComputeCluster": {
        ("spec", "vmSize"): ("size",),
        **_snake_cased(
            "minInstances", "maxInstances", "idleTimeBeforeScaleDown", "tier", "tags", "description"
        ),
    },
}
# Fields of a plain file that are the object's identity, not part of its spec.
_CLI_IDENTITY = frozenset({"$schema", "name", "type"})
_TIERS = {"dedicated": "Dedicated", "low_priority": "LowPriority"}
_AUTH_MODES = {"identity": False, "accesskey": True}


def _pascal(mode: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\s]+", mode))


def _convert(path: FieldPath, value: Any) -> Any:
    """A plain file's value in our spelling; a value we do not know stays as written, for the
    schema to name at its line."""
    if not isinstance(value, str):
        return value
    if path in (("spec", "managedNetwork", "isolationMode"), ("spec", "publicNetworkAccess")):
        return _pascal(value)  # the SDK takes any casing: allow_internet_outbound, enabled
    if path == ("spec", "tier"):
        return _TIERS.get(value.lower(), value)
    if path == ("spec", "storage", "allowSharedKeyAccess"):
        return _AUTH_MODES.get(value.lower(), value)
    return value


def _lookup(data: Any, path: FieldPath) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return False, None
        data = data[key]
    return True, data


def _mapped(
    kind: str, doc: Document, spec: dict[str, Any], findings: list[Finding]
) -> list[Segment]:
    """Copy the fields of ``doc`` that ``CLI_FIELDS`` maps into ``spec``; a field it does not
    map is a warning naming it, so nothing the user wrote is dropped silently."""
    fields = CLI_FIELDS[kind]
    segs: list[Segment] = []
    for ours, theirs in fields.items():
        found, value = _lookup(doc.data, theirs)
        if not found:
            continue
        target = spec
        for key in ours[1:-1]:
            target = target.setdefault(str(key), {})
            # the enclosing object is written where its first field is
            segs.append(Segment(ours[:-1], doc, theirs[: max(1, len(theirs) - 1)]))
        target[str(ours[-1])] = _convert(ours, value)
        segs.append(Segment(ours, doc, theirs))
    known = {theirs[0] for theirs in fields.values()} | _CLI_IDENTITY
    nested = {theirs[:2] for theirs in fields.values() if len(theirs) == 2}
    for key, value in doc.data.items():
        if key not in known:
            findings.append(_unmapped(doc, (key,), kind))
        elif isinstance(value, dict) and key != "tags":
            findings.extend(
                _unmapped(doc, (key, sub), kind) for sub in value if (key, sub) not in nested
            )
    return segs


def _unmapped(doc: Document, path: FieldPath, kind: str) -> Finding:
    return finding_at(
        doc,
        path,
        "load.unmapped-field",
        f"amlops does not model `{format_path(path)}` of a plain Azure ML file; the {kind} is "
        "created without it: remove it, or manage that setting outside amlops",
        Severity.WARNING,
    )


# What `az ml compute create` fills in for an amlcompute file that leaves it out (the SDK's
# azure.ai.ml.constants ComputeDefaults), so the Pulumi program creates the same cluster.
_COMPUTE_DEFAULTS = {"vmSize": "Standard_DS3_v2", "minInstances": 0, "maxInstances": 4}


def _from_cli(
    cli_type: str,
    doc: Document,
    default_workspace: str | None,
    findings: list[Finding],
    config: DefaultWorkspace | None = None,
) -> Manifest | Finding:
    data: dict[str, Any] = doc.data
    name = data.get("name")
    if cli_type.startswith("unsupported:"):
        return finding_at(
            doc,
            ("$schema",),
            "load.unsupported-cli-type",
            f"Azure ML CLI v2 type {cli_type.split(':', 1)[1]!r} is not managed by amlops and "
            "is left alone; managed: model, environment, online endpoint/deployment, "
            "serverless endpoint, pipeline and command job, command and pipeline component, "
            "amlcompute, workspace",
            # a repository of existing `az ml` YAML keeps its data assets, sweep jobs... and
            # must still validate
            Severity.WARNING,
        )
    if cli_type == "pipeline_job" and not isinstance(name, str):
        name = Path(doc.file).stem if doc.index == 0 else f"{Path(doc.file).stem}-{doc.index}"
    if not isinstance(name, str) or not name:
        return finding_at(doc, ("name",), "load.missing-name", "set `name:`")
    name_seg = Segment(("metadata", "name"), doc, ("name",))
    ws_spec: dict[str, Any] = {"workspace": default_workspace} if default_workspace else {}
    if cli_type in ("workspace", "compute"):
        kind_name = "Workspace" if cli_type == "workspace" else "ComputeCluster"
        spec: dict[str, Any] = {} if cli_type == "workspace" else dict(ws_spec)
        segs = _mapped(kind_name, doc, spec, findings)
        if cli_type == "workspace":
            # `az ml workspace create` puts the workspace in a resource group that must exist
            spec["existingResourceGroup"] = True
            if config is not None:  # amlops.yaml is the repository's `az configure --defaults`
                given = {"resourceGroup": config.resource_group, "location": config.location}
                spec.update({k: v for k, v in given.items() if v and k not in spec})
        else:
            spec.update({k: v for k, v in _COMPUTE_DEFAULTS.items() if k not in spec})
        return _wrap(kind_name, name, spec, doc, [name_seg, *segs])
    kind, part = _CLI_PARTS[cli_type]
    version = data.get("version")
    if part.versioned and isinstance(version, (str, int)) and not isinstance(version, bool):
        # An asset version is the asset: two files, two versions of one model, two objects.
        name = f"{name}-{version}"
    spec = {**ws_spec, part.key: data}
    # The kind's lists of parts start empty: plain deployment files attach to their endpoint.
    spec.update({other.key: [] for other in kind.parts if other.many})
    return _wrap(kind.name, name, spec, doc, [name_seg, Segment(("spec", part.key), doc, ())])


_CLI_PARTS = {p.cli_type: (k, p) for k in KINDS.values() for p in k.parts if p.cli_type}


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
    found = [
        (entry.path, entry.is_symlink())
        for entry in files.scan(path, skip=_hidden)
        # the scan gives links to folders without entering them: a linked folder is not a file
        if entry.name.endswith(YAML_SUFFIXES) and not entry.is_dir()
    ]
    return sorted(found)


def _hidden(name: str) -> bool:
    return name.startswith(".")


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
    default_workspace: str | DefaultWorkspace | None = None,
    exclude: Callable[[str], bool] | None = None,
) -> LoadResult:
    """Load every manifest under ``paths``. ``texts`` overrides file contents (Git revisions).
    ``default_workspace`` (the repository config's) is the workspace plain files bind to;
    ``exclude`` says which files the repository config leaves out (they are not read).

    ``root`` is the source root files must stay inside (default: each path's Git top level,
    see ``amlops.core.files``); a YAML file, or a link to one, resolving outside it is a
    finding and is not read.
    """
    with gc_paused():
        return _load_tree(paths, texts, root, limits or current(), default_workspace, exclude)


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
    default_workspace: str | DefaultWorkspace | None = None,
    exclude: Callable[[str], bool] | None = None,
) -> LoadResult:
    result = LoadResult()
    cli_docs: list[tuple[str, Document]] = []
    for name, given, top, check in _sources(paths, texts, root):
        if os.path.basename(name) == CONFIG_FILE:
            continue  # the repository config (amlops.core.config), not a manifest
        if exclude is not None and exclude(name):
            continue
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
                    finding_at(doc, (), "load.not-a-mapping", "a manifest must be a mapping")
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
    _attach_cli_docs(result, cli_docs, default_workspace)
    return result


def _native(doc: Document, findings: list[Finding]) -> Manifest | None:
    data: dict[str, Any] = doc.data
    api = data.get("apiVersion")
    kind = data.get("kind")
    if api != API_VERSION:
        findings.append(
            finding_at(
                doc,
                ("apiVersion",),
                "load.api-version",
                f"apiVersion must be {API_VERSION!r}, got {api!r}",
            )
        )
        return None
    if not isinstance(kind, str) or kind not in KINDS:
        findings.append(
            finding_at(
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
        findings.append(finding_at(doc, ("metadata",), "load.missing-name", "set `metadata.name`"))
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


def _attach_cli_docs(
    result: LoadResult,
    cli_docs: list[tuple[str, Document]],
    configured: str | DefaultWorkspace | None,
) -> None:
    config = configured if isinstance(configured, DefaultWorkspace) else None
    # Workspaces first: the other plain files bind to the default workspace.
    for cli_type, doc in cli_docs:
        if cli_type == "workspace":
            wrapped = _from_cli(cli_type, doc, None, result.findings, config)
            _add(result, wrapped)
    # The repository config names it explicitly, so it wins over the manifests' heuristics.
    named = config.name if config is not None else configured
    default_ws = named if isinstance(named, str) else _default_workspace(result.manifests)
    deployments: list[Document] = []
    for cli_type, doc in cli_docs:
        if cli_type == "workspace":
            continue
        if cli_type == "online_deployment":
            deployments.append(doc)
            continue
        loader = UNMANAGED_LOADERS.get(cli_type.removeprefix("unsupported:").lower())
        if cli_type.startswith("unsupported:") and loader is not None:
            result.sdk_only.append((loader, doc))
        if default_ws is None and not cli_type.startswith("unsupported:"):
            result.findings.append(
                finding_at(
                    doc,
                    (),
                    "load.no-default-workspace",
                    "a plain Azure ML file binds to the default workspace: declare one "
                    "Workspace, mark one with `spec.default: true`, or name it under "
                    "`workspace:` in amlops.yaml at the repository root",
                )
            )
            if cli_type == "compute":
                result.sdk_only.append(("load_compute", doc))
            else:
                result.sdk_only.append((_CLI_PARTS[cli_type][1].loader, doc))
            continue
        _add(result, _from_cli(cli_type, doc, default_ws, result.findings))
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
            finding_at(
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
