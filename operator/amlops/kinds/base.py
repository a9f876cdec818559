"""What a kind is made of: the shape every module of ``amlops.kinds`` fills in.

A kind module imports from ``amlops.core`` only what sits below the manifest loader (findings,
source positions, asset references); the loader itself reads the registry, so ``Manifest`` is
a type here, never an import at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from amlops.core.assets import is_external, parse_asset_ref
from amlops.core.config import External
from amlops.core.findings import Finding
from amlops.core.locator import Locator, finding_at
from amlops.core.source import FieldPath

if TYPE_CHECKING:
    from amlops.core.manifests import Manifest

WORKSPACE_FIELD: FieldPath = ("spec", "workspace")


@dataclass(frozen=True)
class Part:
    """An embedded Azure ML CLI v2 part, checked by the ``azure-ai-ml`` loader of that name."""

    key: str  # under spec
    loader: str
    many: bool = False  # a list of documents
    # The Azure ML CLI v2 document type a plain file of this part is (amlops.core.manifests
    # wraps such a file into the kind).
    cli_type: str | None = None
    # An asset with versions (name + version is the asset): each version a plain file names is
    # an object of its own.
    versioned: bool = False


@dataclass(frozen=True)
class Column:
    """A column ``kubectl get`` prints (one of the CRD's ``additionalPrinterColumns``)."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0  # 0: always shown; more: only with ``-o wide``

    def printer(self) -> dict[str, Any]:
        """The column as the CRD writes it."""
        column: dict[str, Any] = {"name": self.name, "type": self.type, "jsonPath": self.json_path}
        if self.priority:
            column["priority"] = self.priority
        return column


@dataclass(frozen=True)
class Crd:
    """The custom resource the operator reconciles the kind as."""

    short_names: tuple[str, ...]
    # Printer columns between the common Workspace and Ready/Reason/Age ones.
    columns: tuple[Column, ...] = ()
    # Empty: Kubernetes' convention (kubebuilder's default), the kind's name in lower case plus
    # "s", which ``Kind`` fills in; a kind whose plural is irregular names it.
    plural: str = ""


@dataclass(frozen=True)
class Outside:
    """What the repository config (``amlops.yaml``) says exists in Azure without a manifest:
    the default workspace and the external assets."""

    workspace: str | None = None
    external: External = field(default_factory=External)


class _Computes(set[tuple[str, str]]):
    """(workspace, name) of declared clusters; an external compute (the config does not say
    of which workspace: it lives there already) is in it for every workspace."""

    def __init__(self, external: External) -> None:
        super().__init__()
        self.external = external

    def __contains__(self, item: object) -> bool:
        if super().__contains__(item):
            return True
        return (
            isinstance(item, tuple)
            and len(item) == 2
            and isinstance(item[1], str)
            and self.external.has("computes", item[1])
        )


@dataclass
class Declared:
    """What the manifests declare, indexed by workspace, for reference checks, plus what the
    repository config says exists in Azure (``external``)."""

    workspaces: set[str] = field(default_factory=set)
    computes: set[tuple[str, str]] = field(default_factory=set)
    models: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # -> versions
    environments: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    # what the repository config (amlops.yaml) says exists in Azure without a manifest
    outside: Outside = field(default_factory=Outside)

    @property
    def external(self) -> External:
        return self.outside.external

    def __post_init__(self) -> None:
        if self.outside.workspace is not None:
            self.workspaces.add(self.outside.workspace)
        if self.external.permissive or self.external.assets.get("computes"):
            computes = _Computes(self.external)
            computes.update(self.computes)
            self.computes = computes

    @staticmethod
    def add(table: dict[tuple[str, str], set[str]], ws: str, name: str, version: str) -> None:
        table.setdefault((ws, name), set()).add(version)


Declare = Callable[["Manifest", Declared], None]
References = Callable[["Manifest", Declared], Iterator["Finding"]]
Named = Callable[[Mapping[str, Any]], Iterator[tuple[FieldPath, Any]]]


def _declares_nothing(m: Manifest, declared: Declared) -> None:
    del m, declared


def _no_references(m: Manifest, declared: Declared) -> Iterator[Finding]:
    del m, declared
    return iter(())


def _names_nothing(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    del spec
    return iter(())


@dataclass(frozen=True)
class Kind:
    """One kind's metadata and the hooks the shared core calls for it."""

    name: str
    engine: str  # who applies it: "pulumi" (infra/) or "operator"
    crd: Crd | None = None  # reconciled by the operator, in ORDER
    parts: tuple[Part, ...] = ()
    cli_loader: str | None = None  # the SDK loader a plain CLI v2 file of this kind goes through
    # Where the object names its workspace; None: the object is a workspace.
    workspace_path: FieldPath | None = WORKSPACE_FIELD
    declare: Declare = _declares_nothing
    references: References = _no_references
    models: Named = _names_nothing  # model references (``azureml:NAME:VERSION``)
    environments: Named = _names_nothing  # named (a string) or written out (a mapping)

    def __post_init__(self) -> None:
        if self.crd is not None and not self.crd.plural:
            # frozen: the dataclass way to set a derived field at construction
            object.__setattr__(self, "crd", replace(self.crd, plural=f"{self.name.lower()}s"))

    @property
    def schema_file(self) -> str:
        return f"{self.name.lower()}.schema.json"

    @property
    def names_files(self) -> bool:
        """Only the embedded Azure ML parts name files (code, data, conda files)."""
        return bool(self.parts)

    def workspace_of(self, name: str, spec: Mapping[str, Any]) -> str | None:
        if self.workspace_path is None:
            return name
        value: Any = {"spec": spec}
        for key in self.workspace_path:
            value = value.get(key) if isinstance(value, Mapping) else None
        return value if isinstance(value, str) else None


RULE_SPEC = "spec.invalid"  # a spec the reconcilers cannot read (a kind's ``parse``)


def spec_finding(locator: Locator, kind: str, path: FieldPath, message: str) -> Finding:
    """A ``parse`` finding at ``path``, positioned by the driver's locator."""
    return finding_at(locator, path, RULE_SPEC, message, kind=kind)


@dataclass(frozen=True)
class Lifecycle:
    """What every operator kind's spec says besides its asset: whether to reconcile it now,
    and what deleting it does."""

    suspend: bool = False
    deletion_policy: str = "Delete"  # or "Retain"

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> Lifecycle:
        return cls(bool(spec.get("suspend", False)), str(spec.get("deletionPolicy", "Delete")))


def items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def declare_asset(part: str, table: str) -> Declare:
    """The kind declares the asset written under ``spec.<part>`` (name and version)."""

    def declare(m: Manifest, declared: Declared) -> None:
        asset = m.spec.get(part)
        if isinstance(asset, dict) and isinstance(asset.get("name"), str):
            target = getattr(declared, table)
            Declared.add(target, m.workspace or "", asset["name"], str(asset.get("version", "")))

    return declare


def check_workspace(m: Manifest, declared: Declared) -> Iterator[Finding]:
    ws = m.workspace or ""
    if ws not in declared.workspaces:
        yield m.finding(
            WORKSPACE_FIELD,
            "ref.workspace",
            f"workspace {ws!r} is not declared; add a Workspace manifest or fix the name",
        )


def check_assets(m: Manifest, declared: Declared, kind: Kind) -> Iterator[Finding]:
    """The models and environments ``kind`` names, against what is declared."""
    for path, value in kind.models(m.spec):
        yield from _check_asset(
            m, path, value, declared.models, "model", "a Model manifest", declared.external
        )
    for path, value in kind.environments(m.spec):
        if isinstance(value, str):
            yield from _check_asset(
                m,
                path,
                value,
                declared.environments,
                "environment",
                "an Environment manifest",
                declared.external,
            )


def _check_asset(
    m: Manifest,
    path: FieldPath,
    value: str,
    table: dict[tuple[str, str], set[str]],
    what: str,
    declared_by: str,
    external: External,
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
    versions = table.get((ws, ref.name))
    if versions is not None and (ref.version is None or ref.version in versions):
        return
    if external.has(f"{what}s", ref.name, ref.version):
        return  # it lives in the workspace, not in Git (amlops.yaml `external:`)
    known = sorted(versions or set())
    hint = f" (declared versions: {', '.join(known)})" if known else ""
    yield m.finding(
        path,
        f"ref.{what}",
        f"{what} {value.removeprefix('azureml:')!r} is not declared in workspace {ws!r}"
        f"{hint}; add {declared_by}, reference a registry asset, or list it under "
        f"`external.{what}s` in amlops.yaml",
    )
