"""Server-side apply of the operator kinds' objects, in order, writing nothing when nothing
changed, and prune of what left the inventory: what ``amlops apply`` and the GitSource handler
both run.

    objects = build_objects(manifests, namespace=None, origin_of=Provenance().origin,
                            labels={MANAGED_BY: "amlops", INSTANCE: "default"})
    result = sync(Kube(api), objects, SyncOptions(prune=True), previous=inventory)
    result.applied, result.unchanged, result.pruned, result.inventory

Order: the CRDs (generated from the schemas this amlops ships; ``crds=True``) and a wait until
they are served, then the namespaces (``namespaces=True``), then the objects in ``kinds.ORDER``
(what an Endpoint serves is applied before it); prune last, in reverse order.

Stamps. Every object gets the ``labels`` and ``annotations`` of the options (the CLI: managed-by
and ``amlops.io/instance``; a GitSource: also ``amlops.io/source: ns/name``), its manifest's
path (``amlops.io/source-file``); never ``ownerReferences`` (deleting a source, its namespace
or the CRD would have the garbage collector delete the objects, and their Azure assets, with it:
the inventory and the labels say what a sync owns, as in Flux). ``amlops.io/applied-digest``
is a digest of the body *without* the volatile annotations (``amlops.io/git-commit`` and the
options' ``volatile``, e.g. ``amlops.io/revision``), so a new commit alone rewrites nothing and
those annotations name the commit that last changed the object. An object is skipped when its
live digest matches and the live object still holds every applied field (someone else's edit of
an applied field is taken back).

Inventory (``gitops.inventory``): the result's inventory is what the caller stores (the CLI in a
ConfigMap per instance, a GitSource in its status). Prune deletes an object only when it is in
the previous inventory, no longer desired, and its live labels still carry every one of the
options' ``labels`` (so an object another instance or a person took over stays). An object with
``deletionPolicy: Retain`` is deleted from the cluster like any other; its operator finalizer
keeps the Azure asset, and the plan line says so. An empty desired set with a non-empty previous
inventory raises ``PruneAllRefused`` unless ``allow_empty``. Without ``prune``, stale objects
stay in the inventory so a later prune still finds them.

Reads: with ``list_selector`` one LIST per kind (the CLI: cheap for hundreds of objects); without
it one GET per object of desired and previous inventory (the operator, which may not LIST).
Requests are retried on conflicts, throttling and 5xx (``Kube``), except a 409 on DELETE (an
admission webhook's denial). With ``claimed_by``, a live object another owner holds is refused
(``ApplyError`` naming it and its owner) before anything is written. A sync that fails midway
raises ``ApplyError`` with the entries it had written (``applied``).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amlops import API_GROUP, API_VERSION
from amlops.core.manifests import DNS_LABEL, Manifest, kubernetes_name
from amlops.core.provenance import Origin
from amlops.core.schemas import read_schemas
from amlops.crds import VERSION, build_crd, crd_of
from amlops.gitops.inventory import Entry, Inventory, diff
from amlops.kinds import ORDER
from amlops.paths import schemas_dir

FIELD_MANAGER = "amlops"
MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = f"{API_GROUP}/instance"
SOURCE = f"{API_GROUP}/source"
# a GitSource's labels on what it applied (a label value holds no "/", hence two of them)
SOURCE_NAME = f"{API_GROUP}/source-name"
SOURCE_NAMESPACE = f"{API_GROUP}/source-namespace"
REVISION = f"{API_GROUP}/revision"
SOURCE_FILE = f"{API_GROUP}/source-file"
GIT_COMMIT = f"{API_GROUP}/git-commit"
APPLIED_DIGEST = f"{API_GROUP}/applied-digest"
_RETRY_STATUS = (409, 429, 500, 502, 503, 504)
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)
_CRD_WAIT_S = 60

# Where a manifest comes from (its path in the repository, the commit): amlops.core.provenance.
OriginOf = Callable[[str], Origin]


class ApplyError(Exception):
    """A request the API server refused (after retries), or an object another owner holds;
    the message names method and path (or the object and its owner). ``applied`` holds the
    objects this sync had written before it failed: they are in the cluster, so the caller's
    inventory must hold them too, or a prune would never find them."""

    def __init__(self, message: str, applied: Sequence[Entry] = ()) -> None:
        super().__init__(message)
        self.applied = tuple(applied)


class BuildError(ValueError):
    """Manifests that cannot become objects (a namespace that is no DNS label, two manifests
    for one object); names the file."""


# -- building the objects -------------------------------------------------------------------


def digest(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def namespace_of(m: Manifest, forced: str | None) -> str:
    if forced:
        return forced
    declared = m.metadata.get("namespace")
    # a workspace named by a plain Azure ML file (MLW_Team) is folded like object names
    return str(declared) if declared else kubernetes_name(m.workspace or "default")


def build_object(
    m: Manifest,
    namespace: str,
    origin_of: OriginOf,
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    volatile: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The custom resource for a manifest, as it is applied (digest annotation included)."""
    meta = m.metadata
    origin = origin_of(m.file)
    metadata: dict[str, Any] = {
        # A plain Azure ML file's name (SKLearnEnv) may be no DNS-1123 label; the Azure ML
        # name stays in the spec's part, which is what the reconcilers send to Azure.
        "name": kubernetes_name(m.name),
        "namespace": namespace,
        "labels": {**(meta.get("labels") or {}), **labels},
        "annotations": {
            **(meta.get("annotations") or {}),
            **(annotations or {}),
            SOURCE_FILE: origin.manifest,
        },
    }
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": m.kind,
        "metadata": metadata,
        "spec": m.spec,
    }
    return stamp(body, origin.commit, volatile)


def build_objects(
    manifests: Iterable[Manifest],
    *,
    namespace: str | None,
    origin_of: OriginOf,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    volatile: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The objects of the operator kinds among ``manifests``, in ``kinds.ORDER``; ``namespace``
    puts every object there. Raises ``BuildError``."""
    objects: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str], str] = {}
    for m in in_order(manifests):
        ns = namespace_of(m, namespace)
        if not DNS_LABEL.match(ns):
            raise BuildError(
                f"{m.file}: namespace {ns!r} (from the workspace) is not a DNS label; "
                "set metadata.namespace or --namespace"
            )
        key = (m.kind, ns, kubernetes_name(m.name))
        if key in seen:
            raise BuildError(
                f"{m.file}: {m.kind} {ns}/{key[2]} is also defined in {seen[key]}; give "
                "them different namespaces (or leave --namespace out)"
            )
        seen[key] = m.file
        objects.append(
            build_object(
                m, ns, origin_of, labels=labels, annotations=annotations, volatile=volatile
            )
        )
    return objects


def in_order(manifests: Iterable[Manifest]) -> list[Manifest]:
    """The manifests of the operator kinds in ``kinds.ORDER`` (an object after those it waits
    for), those of one kind in the order given."""
    rank = {kind: i for i, kind in enumerate(ORDER)}
    return sorted((m for m in manifests if m.kind in rank), key=lambda m: rank[m.kind])


def stamp(
    body: dict[str, Any], commit: str | None, volatile: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Add the digest of ``body`` (the commit and the ``volatile`` annotations excluded: a new
    commit alone changes nothing), then the commit and the volatile annotations."""
    annotations = body["metadata"].setdefault("annotations", {})
    annotations[APPLIED_DIGEST] = digest(body)
    if commit:
        annotations[GIT_COMMIT] = commit
    annotations.update(volatile or {})
    return body


def holds(want: Any, live: Any) -> bool:
    """Does ``live`` hold every field of ``want``? (Extra live fields - defaults, status,
    other managers' fields - do not matter.)"""
    if isinstance(want, Mapping):
        return isinstance(live, Mapping) and all(
            k in live and holds(v, live[k]) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(live, list)
            and len(want) == len(live)
            and all(holds(w, x) for w, x in zip(want, live, strict=True))
        )
    return bool(want == live)


def unchanged(
    desired: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    volatile: Iterable[str] = (),
) -> bool:
    """Whether applying ``desired`` over ``live`` would change nothing that matters: same
    digest, and every applied field still holds (volatile annotations and the commit aside)."""
    if live is None:
        return False
    want = json.loads(json.dumps(desired))
    live_annotations = live.get("metadata", {}).get("annotations") or {}
    if live_annotations.get(APPLIED_DIGEST) != want["metadata"]["annotations"][APPLIED_DIGEST]:
        return False
    for key in (GIT_COMMIT, *volatile):
        want["metadata"]["annotations"].pop(key, None)
    return holds(want, live)


# -- the cluster ----------------------------------------------------------------------------


class Kube:
    """The few raw requests apply needs, retried on conflicts, throttling and 5xx; applies as
    ``field_manager`` (``amlops`` for the CLI, the GitSource handler its own)."""

    def __init__(self, api: Any, field_manager: str = FIELD_MANAGER) -> None:
        self.api = api
        self.field_manager = field_manager

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any] | None:
        """The answer as JSON, or None for 404."""
        from kubernetes.client.rest import ApiException

        for pause in (*_BACKOFF_S, None):
            try:
                resp = self.api.call_api(
                    path,
                    method,
                    query_params=list(query),
                    header_params={"Content-Type": content_type, "Accept": "application/json"},
                    body=body,
                    auth_settings=["BearerToken"],
                    response_types_map={},
                    _preload_content=False,
                    _return_http_data_only=True,
                )
                data: dict[str, Any] = json.loads(resp.data or b"{}")
                return data
            except ApiException as exc:
                if exc.status == 404:
                    return None
                # a 409 on DELETE is no write conflict but an admission webhook's denial (a
                # Model an Endpoint serves): asking again gets the same answer
                final = exc.status == 409 and method == "DELETE"
                if exc.status not in _RETRY_STATUS or pause is None or final:
                    raise ApplyError(f"{method} {path}: {exc.status} {_reason(exc)}") from exc
            except OSError as exc:  # connection refused/reset: the API server restarting
                if pause is None:
                    raise ApplyError(f"{method} {path}: {exc}") from exc
            time.sleep(pause)
        raise AssertionError("unreachable")

    def apply(self, path: str, body: Mapping[str, Any]) -> None:
        self.request(
            "PATCH",
            path,
            query=[("fieldManager", self.field_manager), ("force", "true")],
            body=dict(body),
            content_type="application/apply-patch+yaml",
        )


def _reason(exc: Any) -> str:
    try:
        return str(json.loads(exc.body).get("message", exc.reason))
    except (TypeError, ValueError):
        return str(exc.reason)


def plural(kind: str) -> str:
    return crd_of(kind).plural


def object_path(kind: str, namespace: str, name: str) -> str:
    return f"/apis/{API_GROUP}/{VERSION}/namespaces/{namespace}/{plural(kind)}/{name}"


def crd_path(name: str) -> str:
    return f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"


def _established(crd: Mapping[str, Any] | None) -> bool:
    conditions = (crd or {}).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


# -- the sync -------------------------------------------------------------------------------


@dataclass
class Plan:
    lines: list[tuple[str, str]]  # (verb, what): create, apply, unchanged, prune
    writes: int = 0

    def add(self, verb: str, what: str) -> None:
        self.lines.append((verb, what))

    def write(self, verb: str, what: str) -> None:
        """A line for a request that writes (or would, in a dry run): ``writes`` counts them."""
        self.add(verb, what)
        self.writes += 1


@dataclass(frozen=True)
class SyncOptions:
    labels: Mapping[str, str] = field(default_factory=dict)  # prune requires them on the object
    volatile: Sequence[str] = ()  # stamped annotations left out of the digest, besides the commit
    crds: bool = True  # apply the CRDs first (the operator's ServiceAccount may not)
    namespaces: bool = True  # create missing namespaces first
    extra_namespaces: Sequence[str] = ()  # with ``namespaces``: also these (an inventory's)
    prune: bool = False
    allow_empty: bool = False  # let an empty revision prune everything
    dry_run: bool = False
    list_selector: str | None = None  # read live objects with one LIST per kind, else GETs
    # who else holds a live object (None: nobody): a sync refuses to apply over another owner
    # (another GitSource, an ``amlops apply`` instance) instead of taking it over every interval
    claimed_by: Callable[[Mapping[str, Any]], str | None] | None = None


@dataclass
class SyncResult:
    plan: Plan
    inventory: Inventory  # store it: the next sync's ``previous``
    applied: int = 0  # objects created or patched
    unchanged: int = 0
    pruned: int = 0
    # live objects this sync left as they were (unchanged, or stale and not pruned): what they
    # point at (their volatile annotations, a revision) is still in use
    untouched: list[Mapping[str, Any]] = field(default_factory=list)

    @property
    def written(self) -> int:
        """Every write of the sync (CRDs, namespaces, objects, deletes): 0 for a no-op."""
        return self.plan.writes


Key = tuple[str, str, str]  # kind, namespace, name


def sync(
    kube: Kube,
    objects: Sequence[Mapping[str, Any]],
    options: SyncOptions,
    previous: Inventory | None = None,
) -> SyncResult:
    """Apply ``objects`` (built by ``build_objects``), prune what left ``previous`` (with
    ``options.prune``); see the module docstring. Raises ``ApplyError`` and
    ``inventory.PruneAllRefused`` (before any write)."""
    desired = Inventory.of(objects)
    changes = diff(
        previous,
        desired,
        allow_empty=options.allow_empty or not options.prune,
        order=ORDER,
    )
    result = SyncResult(Plan([]), desired)
    if options.crds:
        _apply_crds(kube, result.plan, options.dry_run)
    if options.namespaces:
        wanted = {o["metadata"]["namespace"] for o in objects} | set(options.extra_namespaces)
        for ns in sorted(wanted):
            ensure_namespace(kube, ns, result.plan, options.dry_run)
    live = _live(kube, objects, changes.to_prune, options.list_selector)
    _refuse_claimed(objects, live, options.claimed_by)
    written: list[Entry] = []
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        what = f"{obj['kind']} {meta['namespace']}/{meta['name']}"
        current = live.get(key)
        if unchanged(obj, current, options.volatile):
            result.plan.add("unchanged", what)
            result.unchanged += 1
            assert current is not None
            result.untouched.append(current)
            continue
        result.plan.write("create" if current is None else "apply", what)
        result.applied += 1
        if not options.dry_run:
            try:
                kube.apply(object_path(*key), obj)
            except ApplyError as exc:
                raise ApplyError(str(exc), written) from exc
            written.append(Entry.of(obj))
    kept: list[Entry] = []
    for entry in changes.to_prune:
        current = live.get((entry.kind, entry.namespace, entry.name))
        if current is None or entry.kind not in ORDER:
            continue  # gone already (or a kind this amlops no longer has): out of the inventory
        if not _owned(current, options.labels):
            continue  # taken over by someone else: not ours to delete, nor to remember
        if not options.prune:
            kept.append(entry)
            result.untouched.append(current)
            continue
        policy = (current.get("spec") or {}).get("deletionPolicy", "Delete")
        note = " (deletionPolicy Retain: the Azure asset stays)" if policy == "Retain" else ""
        result.plan.write("prune", f"{entry}{note}")
        result.pruned += 1
        if not options.dry_run:
            try:
                kube.request("DELETE", object_path(entry.kind, entry.namespace, entry.name))
            except ApplyError as exc:
                # what is not pruned yet stays in the inventory with what was written
                raise ApplyError(str(exc), written) from exc
    result.inventory = Inventory.from_entries([*desired.entries, *kept])
    return result


def _refuse_claimed(
    objects: Sequence[Mapping[str, Any]],
    live: Mapping[Key, Mapping[str, Any]],
    claimed_by: Callable[[Mapping[str, Any]], str | None] | None,
) -> None:
    """Raise ``ApplyError`` (before any write) naming the objects another owner holds."""
    if claimed_by is None:
        return
    taken: list[str] = []
    for obj in objects:
        meta = obj["metadata"]
        current = live.get((obj["kind"], meta["namespace"], meta["name"]))
        owner = claimed_by(current) if current is not None else None
        if owner:
            taken.append(f"{obj['kind']} {meta['namespace']}/{meta['name']} (held by {owner})")
    if taken:
        raise ApplyError(
            f"{len(taken)} object(s) belong to another owner and were not applied: "
            f"{', '.join(taken[:5])}{' ...' if len(taken) > 5 else ''}; remove them from one "
            "of the sources, or delete the live object to hand it over"
        )


def _owned(live: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    have = (live.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def instance_labels(instance: str) -> dict[str, str]:
    return {MANAGED_BY: FIELD_MANAGER, INSTANCE: instance}


def instance_options(instance: str) -> SyncOptions:
    """How ``amlops apply --instance INSTANCE`` syncs: its objects carry the instance's labels
    and the live ones are listed by them (CRDs and namespaces first)."""
    labels = instance_labels(instance)
    return SyncOptions(labels=labels, list_selector=",".join(f"{k}={v}" for k, v in labels.items()))


def _apply_crds(kube: Kube, plan: Plan, dry_run: bool) -> None:
    schemas = read_schemas(schemas_dir())
    applied: list[str] = []
    for kind in ORDER:
        crd = stamp(build_crd(kind, schemas[kind]), None)
        name = crd["metadata"]["name"]
        current = kube.request("GET", crd_path(name))
        if unchanged(crd, current):
            continue
        plan.write("create" if current is None else "apply", f"CustomResourceDefinition {name}")
        if not dry_run:
            kube.apply(crd_path(name), crd)
            applied.append(name)
    deadline = time.monotonic() + _CRD_WAIT_S
    for name in applied:  # a CR sent before its CRD is served would be a 404
        while not _established(kube.request("GET", crd_path(name))):
            if time.monotonic() > deadline:
                raise ApplyError(
                    f"CustomResourceDefinition {name} not established after {_CRD_WAIT_S} s"
                )
            time.sleep(0.2)


def ensure_namespace(kube: Kube, ns: str, plan: Plan, dry_run: bool) -> None:
    if kube.request("GET", f"/api/v1/namespaces/{ns}") is not None:
        return
    plan.write("create", f"Namespace {ns}")
    if not dry_run:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {MANAGED_BY: FIELD_MANAGER}},
        }
        kube.apply(f"/api/v1/namespaces/{ns}", body)


def _live(
    kube: Kube,
    objects: Sequence[Mapping[str, Any]],
    stale: Sequence[Entry],
    selector: str | None,
) -> dict[Key, dict[str, Any]]:
    """The live objects among ``objects`` and ``stale``: one LIST per kind with ``selector``
    (an absent CRD lists nothing), else one GET each."""
    live: dict[Key, dict[str, Any]] = {}
    if selector is not None:
        for kind in ORDER:
            listed = kube.request(
                "GET",
                f"/apis/{API_GROUP}/{VERSION}/{plural(kind)}",
                query=[("labelSelector", selector)],
            )
            for item in (listed or {}).get("items") or []:
                meta = item.get("metadata", {})
                live[(kind, meta.get("namespace", ""), meta.get("name", ""))] = item
        return live
    keys = [(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects]
    keys += [(e.kind, e.namespace, e.name) for e in stale if e.kind in ORDER]
    for key in keys:
        found = kube.request("GET", object_path(*key))
        if found is not None:
            live[key] = found
    return live
