"""Component: an Azure ML command or pipeline component, as one typed spec.

A component is the interface (typed inputs and outputs) and the body (a command, its code and
environment; or, for a pipeline component, the jobs it runs) that a pipeline step names with
``component:``. A step names one in four ways, which ``component_ref`` tells apart:

* written out in the step (a mapping);
* a file, relative to the file that names it (``./train.yml``, ``file:./train.yml``), read here
  through the bounded loader and the containment rule (``amlops.core.source``,
  ``amlops.core.files``);
* ``azureml:NAME:VERSION`` / ``azureml:NAME@latest``: a Component declared in the repository
  (its interface is known; ``Repository`` finds it, and ``amlops up`` runs it as it runs a
  file) or listed under ``external.components`` in amlops.yaml (it is not);
* ``azureml://registries/REG/components/NAME/versions/V`` (or ``/labels/latest``): a registry
  component, such as the model catalog's fine-tuning ones. Its interface is unknown offline, so
  bindings to it are accepted with a note, and the local backend refuses to run it.

A Component object is an Azure ML CLI v2 component file (``commandComponent.schema.json``,
``pipelineComponent.schema.json``) as it is, or wrapped as ``spec.component``.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum, auto
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from amlops.core import files
from amlops.core.assets import AssetRef, is_local, parse_asset_ref
from amlops.core.findings import Finding
from amlops.core.limits import Limits
from amlops.core.locator import Locator, located_document
from amlops.core.source import Document, FieldPath, Position, load_documents, read_manifest
from amlops.kinds.base import (
    RULE_SPEC,
    Declared,
    Kind,
    Lifecycle,
    Part,
    check_assets,
    check_workspace,
    mapping,
    spec_finding,
)

if TYPE_CHECKING:
    from amlops.core.manifests import Manifest

COMPONENT: FieldPath = ("spec", "component")
TYPES = ("command", "pipeline")
# ``${{...}}``: the one pattern of a binding (amlops.kinds.pipeline reads it from here)
BINDING_RE = re.compile(r"\$\{\{\s*([^{}]*?)\s*\}\}")
_REGISTRY_RE = re.compile(
    r"^azureml://registries/(?P<registry>[^/]+)/components/(?P<name>[^/]+)"
    r"(?:/versions/(?P<version>[^/]+)|/labels/(?P<label>[^/]+))?$"
)


class ComponentRef(StrEnum):
    """What a step's ``component:`` names (``component_ref``)."""

    INLINE = auto()
    FILE = auto()
    ASSET = auto()
    REGISTRY = auto()
    OTHER = auto()


def component_ref(value: Any) -> ComponentRef:
    """Which of the ways to name a component ``value`` is (see the module's docstring)."""
    if isinstance(value, Mapping):
        return ComponentRef.INLINE
    if not isinstance(value, str):
        return ComponentRef.OTHER
    if _REGISTRY_RE.match(value):
        return ComponentRef.REGISTRY
    if value.startswith("azureml:") and parse_asset_ref(value) is not None:
        return ComponentRef.ASSET
    if is_local(value):
        return ComponentRef.FILE
    return ComponentRef.OTHER


@dataclass(frozen=True)
class ComponentSpec:
    """A component as the pipeline checks and the runner read it."""

    type: str  # "command" or "pipeline"
    inputs: Mapping[str, Mapping[str, Any]]  # name -> declaration (type, default, optional)
    outputs: Mapping[str, Mapping[str, Any]]
    name: str | None = None
    version: str | None = None
    command: str | None = None  # command components
    code: str | None = None  # as written: relative to the component's file
    environment: Any = None
    jobs: Mapping[str, Any] = field(default_factory=dict)  # pipeline components, as written
    lifecycle: Lifecycle = field(default_factory=Lifecycle)

    def required_inputs(self) -> list[str]:
        """Inputs a step must give: not optional and without a default."""
        return [
            name
            for name, decl in self.inputs.items()
            if not decl.get("optional", False) and "default" not in decl
        ]


def _declarations(
    value: Any, where: FieldPath, problems: list[tuple[FieldPath, str]]
) -> dict[str, Mapping[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append((where, "must be a mapping of names to declarations"))
        return {}
    out: dict[str, Mapping[str, Any]] = {}
    for name, decl in value.items():
        if isinstance(decl, Mapping):
            out[str(name)] = decl
        else:
            # a bare value is a default (what Azure ML accepts for literal inputs)
            out[str(name)] = {"default": decl}
    return out


def read(data: Mapping[str, Any]) -> tuple[ComponentSpec | None, list[tuple[FieldPath, str]]]:
    """Read a component document (the file's top level, or a step's inline ``component:``):
    its spec, or None, and what keeps it from running, each as its field and what to write."""
    problems: list[tuple[FieldPath, str]] = []
    kind = data.get("type", "command")
    if kind not in TYPES:
        return None, [
            (
                ("type",),
                f"amlops runs command and pipeline components, not {kind!r}; write "
                "`type: command` or `type: pipeline`",
            )
        ]
    inputs = _declarations(data.get("inputs"), ("inputs",), problems)
    outputs = _declarations(data.get("outputs"), ("outputs",), problems)
    command = data.get("command")
    code = data.get("code")
    jobs = data.get("jobs")
    if kind == "command":
        if not isinstance(command, str) or not command.strip():
            problems.append((("command",), "a command component needs a `command`"))
        else:
            for expr in BINDING_RE.findall(command):
                problems.extend(_command_binding(expr, inputs, outputs))
    elif not isinstance(jobs, Mapping) or not jobs:
        problems.append((("jobs",), "a pipeline component needs at least one job under `jobs`"))
    if problems:
        return None, problems
    version = data.get("version")
    return ComponentSpec(
        type=str(kind),
        inputs=inputs,
        outputs=outputs,
        name=str(data["name"]) if isinstance(data.get("name"), str) else None,
        version=str(version) if version is not None else None,
        command=command if isinstance(command, str) else None,
        code=code if isinstance(code, str) else None,
        environment=data.get("environment"),
        jobs=jobs if isinstance(jobs, Mapping) else {},
    ), []


def _command_binding(
    expr: str, inputs: Mapping[str, Any], outputs: Mapping[str, Any]
) -> Iterator[tuple[FieldPath, str]]:
    what, _, name = expr.partition(".")
    if (what == "inputs" and name in inputs) or (what == "outputs" and name in outputs):
        return
    if what in ("inputs", "outputs"):
        yield ("command",), f"${{{{{expr}}}}}: the component declares no {what[:-1]} {name!r}"
    else:
        yield (
            ("command",),
            f"${{{{{expr}}}}} is not supported in a command; use ${{{{inputs.X}}}} or "
            "${{outputs.X}}",
        )


# -- component files -------------------------------------------------------------------------


class ComponentFileError(ValueError):
    """A component file that cannot be read: ``rule`` is the finding id."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def read_file(path: Path, root: Path | None, limits: Limits | None = None) -> Document:
    """The one YAML document of the component file at ``path`` (already resolved against the
    file naming it), read only when it stays inside ``root`` and within the loader's limits."""
    top = root or files.real(path.parent)
    try:
        target = files.contained(top, path, what=str(path))
        text = read_manifest(target, limits)
        docs = list(load_documents(str(path), text, limits))
    except files.PathRefusedError as exc:
        raise ComponentFileError(exc.rule, str(exc)) from exc
    except FileNotFoundError as exc:
        raise ComponentFileError("ref.missing-file", f"{path} does not exist") from exc
    except OSError as exc:
        raise ComponentFileError("load.unreadable", f"{path}: cannot read: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ComponentFileError("load.unreadable", f"{path}: not UTF-8 text") from exc
    except Exception as exc:  # YamlSyntaxError and its limit errors carry their rule
        rule = str(getattr(exc, "rule", "load.yaml-syntax"))
        raise ComponentFileError(rule, f"{path}: {getattr(exc, 'problem', exc)}") from exc
    if len(docs) != 1 or not isinstance(docs[0].data, Mapping):
        raise ComponentFileError(
            "spec.invalid", f"{path}: a component file holds one YAML mapping, the component"
        )
    docs[0].root = top
    return docs[0]


# A component file named relative to the manifest -> its document (``read_file`` behind the
# caller's containment rule); raises ComponentFileError.
LoadComponent = Callable[[str], Document]


@dataclass(frozen=True)
class Named:
    """A Component of the repository that an ``azureml:NAME:VERSION`` reference names."""

    path: str  # the file it is written in, relative to the manifest naming it (posix)
    document: Document  # the component as written, with its positions in that file


# ``azureml:NAME:VERSION`` / ``azureml:NAME@latest`` -> the Component of the repository it
# names; None when the repository declares no such component (``Repository.naming``).
NameComponent = Callable[[str], Named | None]


@dataclass(frozen=True)
class Inlined:
    """A job with the component files it names put in place."""

    job: Mapping[str, Any]  # local paths in it relative to the manifest's file
    # where (inside the job) each component file was put -> its document: positions inside it
    origins: Mapping[FieldPath, Document] = field(default_factory=dict)
    # the component files that could not be read: (where it is named, rule, message)
    problems: tuple[tuple[FieldPath, str, str], ...] = ()

    def origin(self, path: FieldPath) -> tuple[Document, FieldPath] | None:
        """The component file ``path`` (inside the job) was written in, and its path there."""
        best: FieldPath | None = None
        for where in self.origins:
            if path[: len(where)] == where and (best is None or len(where) > len(best)):
                best = where
        return None if best is None else (self.origins[best], path[len(best) :])


def inline_components(
    job: Mapping[str, Any], load: LoadComponent, named: NameComponent | None = None
) -> Inlined:
    """``job`` with every component file it names (``component: ./train.yml``, also inside
    a pipeline component's jobs) replaced by the component it holds, whose own relative paths
    (``code``, nested components, input paths) are rewritten relative to the manifest, so
    that the job reads as if the components were written out in it. With ``named``, an
    ``azureml:NAME:VERSION`` component the repository declares is put in place the same way
    (its paths relative to its own file); one it does not declare is left as written."""
    origins: dict[FieldPath, Document] = {}
    problems: list[tuple[FieldPath, str, str]] = []

    def component(value: Any, where: FieldPath, base: str, chain: tuple[str, ...]) -> Any:
        ref = component_ref(value)
        found: Named | None = None
        if ref == ComponentRef.ASSET and named is not None:
            found = named(value)
            if found is None:
                return value  # not the repository's: only Azure ML knows it
            at = found.path
        elif ref == ComponentRef.FILE:
            at = _rebase(base, value)
        else:
            return value
        if posixpath.normpath(at) in chain:
            cycle = " -> ".join((*chain, posixpath.normpath(at)))
            problems.append((where, RULE_SPEC, f"component files include each other: {cycle}"))
            return value
        if found is None:
            try:
                doc = load(at)
            except ComponentFileError as exc:
                problems.append((where, exc.rule, f"component: {exc}"))
                return value
        else:
            doc = found.document
        origins[where] = doc
        return body(dict(doc.data), where, at, (*chain, posixpath.normpath(at)))

    def body(data: dict[str, Any], where: FieldPath, base: str, chain: tuple[str, ...]) -> Any:
        code = data.get("code")
        if isinstance(code, str) and is_local(code) and base:
            data["code"] = _rebase(base, code)
        jobs = data.get("jobs")
        if isinstance(jobs, Mapping):
            data["jobs"] = {
                name: step(step_body, (*where, "jobs", name), base, chain)
                for name, step_body in jobs.items()
            }
        if "component" in data:
            data["component"] = component(data["component"], (*where, "component"), base, chain)
        return data

    def step(value: Any, where: FieldPath, base: str, chain: tuple[str, ...]) -> Any:
        if not isinstance(value, Mapping):
            return value
        data = dict(value)
        if base:
            inputs = data.get("inputs")
            if isinstance(inputs, Mapping):
                data["inputs"] = {k: _rebase_input(base, v) for k, v in inputs.items()}
        return body(data, where, base, chain)

    inlined = body(dict(job), (), "", ())
    return Inlined(inlined, origins, tuple(problems))


def _rebase(base: str, value: str) -> str:
    """``value``, written in the component file ``base`` (relative to the manifest), made
    relative to the manifest."""
    if not base:
        return files.local_target(value)
    return posixpath.normpath(
        posixpath.join(posixpath.dirname(files.local_target(base)), files.local_target(value))
    )


def _rebase_input(base: str, value: Any) -> Any:
    path = value.get("path") if isinstance(value, Mapping) else None
    if isinstance(path, str) and is_local(path) and "${{" not in path:
        return {**value, "path": _rebase(base, path)}
    return value


def registry_note(value: str) -> str:
    """What validate says about a step that runs a registry component."""
    return (
        f"component {value!r} comes from an Azure ML registry: its inputs and outputs are not "
        "known offline, so the bindings to it are not checked (the local backend does not run "
        "registry components)"
    )


# -- the kind ------------------------------------------------------------------------------------


T = TypeVar("T")


def pick(versions: Mapping[str, T], ref: AssetRef) -> T | None:
    """The version ``ref`` names among ``versions`` (version -> what declares it): its own, or
    for ``@latest`` (or no version) the highest, compared as numbers when both are integers."""
    if not versions:
        return None
    if ref.version is None:
        return versions[max(versions, key=_version_key)]
    return versions.get(ref.version)


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (-1, version)


@dataclass(frozen=True)
class _Within:
    """The positions of the component inside the object that declares it."""

    locator: Locator
    prefix: FieldPath

    def locate(self, path: FieldPath, /) -> Position:
        return self.locator.locate((*self.prefix, *path))


class Repository:
    """The Components a tree of manifests declares (component files, ``kind: Component``), by
    workspace, name and version: what an ``azureml:NAME:VERSION`` step runs under ``amlops
    up``, which has the whole repository (the operator gets one object at a time, and none)."""

    def __init__(self, manifests: Iterable[Manifest] = ()) -> None:
        self._versions: dict[tuple[str, str], dict[str, Manifest]] = {}
        for m in manifests:
            self.add(m)

    def add(self, m: Manifest) -> None:
        """Count ``m`` in, when it is a Component with a name."""
        component = m.spec.get("component") if m.kind == KIND.name else None
        if isinstance(component, Mapping) and isinstance(component.get("name"), str):
            version = str(component.get("version", ""))
            key = (m.workspace or "", component["name"])
            self._versions.setdefault(key, {})[version] = m

    def find(self, workspace: str, value: str) -> Manifest | None:
        """The Component manifest ``azureml:NAME:VERSION`` / ``azureml:NAME@latest`` names in
        ``workspace``; None when the repository declares no such version."""
        ref = parse_asset_ref(value) if component_ref(value) == ComponentRef.ASSET else None
        if ref is None:
            return None
        return pick(self._versions.get((workspace, ref.name), {}), ref)

    def naming(self, m: Manifest, path: FieldPath) -> NameComponent:
        """How the job written at ``path`` of ``m`` finds the Components it names: each with
        its file relative to ``m``'s, so that its own paths resolve against its file."""
        base = m.base_dir(path)

        def named(value: str) -> Named | None:
            found = self.find(m.workspace or "", value)
            if found is None:
                return None
            written = found.document(COMPONENT)
            document = located_document(found.spec["component"], _Within(found, COMPONENT))
            document.file = written.file
            document.root = found.source_root(COMPONENT)
            relative = os.path.relpath(os.path.abspath(written.file), base)
            return Named(Path(relative).as_posix(), document)

        return named


@dataclass
class ComponentsDeclared(Declared):
    """``Declared`` plus the Components of the repository (``Repository``)."""

    repository: Repository = field(default_factory=Repository)


def parse(spec: Mapping[str, Any], locator: Locator) -> tuple[ComponentSpec | None, list[Finding]]:
    """Read a Component spec once; one that cannot run is None with its findings."""
    component = spec.get("component")
    if not isinstance(component, Mapping):
        return None, [spec_finding(locator, "Component", COMPONENT, "write the component here")]
    read_spec, problems = read(component)
    if read_spec is None:
        return None, [
            spec_finding(locator, "Component", (*COMPONENT, *path), message)
            for path, message in problems
        ]
    if read_spec.name is None:
        return None, [
            spec_finding(locator, "Component", (*COMPONENT, "name"), "set the component's name")
        ]
    return replace(read_spec, lifecycle=Lifecycle.of(spec)), []


def _declare(m: Manifest, declared: Declared) -> None:
    if isinstance(declared, ComponentsDeclared):
        declared.repository.add(m)


def _environments(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    component = mapping(spec.get("component"))
    if "environment" in component:
        yield (*COMPONENT, "environment"), component["environment"]


def _references(m: Manifest, declared: Declared) -> Iterator[Finding]:
    yield from check_workspace(m, declared)
    yield from check_assets(m, declared, KIND)
    component = m.spec.get("component")
    if isinstance(component, Mapping):
        # what ``parse`` refuses, validate reports: whatever validate accepts, ``up`` runs
        for path, message in read(component)[1]:
            yield m.finding((*COMPONENT, *path), RULE_SPEC, message)


KIND = Kind(
    name="Component",
    engine="operator",
    parts=(Part("component", "load_component", cli_type="component", versioned=True),),
    declare=_declare,
    references=_references,
    environments=_environments,
)
