"""``amlops apply [PATH] [--prune] [--dry-run]``: server-side apply of the Model, Pipeline and
Endpoint manifests to the cluster of the current kube context (field manager ``amlops``).

Order: the CRDs (generated from the schemas this amlops ships) and wait until they are served,
then the namespaces, then Models, Pipelines, Endpoints (what an Endpoint serves is applied
before it); ``--prune`` then deletes the managed objects whose manifests left Git, Endpoints
first. Namespace of an object: ``--namespace``, else its ``metadata.namespace``, else its
workspace (``mlw-platform-dev`` ...), so one name can live in two workspaces.

Every object is labelled as managed (``app.kubernetes.io/managed-by: amlops`` and
``amlops.io/instance``, what prune selects on) and annotated with its manifest's path in the
repository and the Git commit (``amlops.io/source-file``, ``amlops.io/git-commit``), which the
operator uses to resolve relative paths and to tag the assets it creates.

A no-op apply writes nothing: each object carries a digest of what was last applied
(``amlops.io/applied-digest``), and an object is skipped when the digest matches and the live
object still holds every applied field. A new commit alone does not rewrite unchanged objects,
so ``git-commit`` names the commit that last changed the object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

from amlops import API_GROUP, API_VERSION
from amlops.cli import common
from amlops.cli.validate import findings_table
from amlops.core.limits import LimitsError
from amlops.core.manifests import DNS_LABEL, Manifest, kubernetes_name
from amlops.core.provenance import Origin, Provenance
from amlops.core.schemas import read_schemas
from amlops.core.validate import validate_paths
from amlops.crds import VERSION, build_crd, crd_of
from amlops.kinds import ORDER
from amlops.paths import schemas_dir

FIELD_MANAGER = "amlops"
MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = f"{API_GROUP}/instance"
SOURCE_FILE = f"{API_GROUP}/source-file"
GIT_COMMIT = f"{API_GROUP}/git-commit"
APPLIED_DIGEST = f"{API_GROUP}/applied-digest"
_RETRY_STATUS = (409, 429, 500, 502, 503, 504)
_BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 4.0)


HELP = "server-side apply the operator kinds' manifests (Model, Pipeline, Endpoint...) to a cluster"
EXITS = (
    "Exit 0 applied (or nothing to do); 1 invalid manifests or a failed "
    "request; 2 usage (no kube context)."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = common.command(sub, "apply", HELP, EXITS, path="manifests")
    p.add_argument("--prune", action="store_true", help="delete managed objects not in PATH")
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument("--namespace", "-n", metavar="NS", help="put every object in NS")
    p.add_argument(
        "--instance",
        default="default",
        metavar="NAME",
        help="which apply owns the objects (prune only deletes its own); default: default",
    )
    p.add_argument("--context", metavar="CTX", help="kube context (default: the current one)")
    p.set_defaults(func=run_apply)


# -- what to apply --------------------------------------------------------------------------


# Where a manifest comes from (its path in the repository, the commit): amlops.core.provenance,
# the same lookup `amlops up` and the Pulumi program tag assets with.
OriginOf = Callable[[str], Origin]


def digest(obj: Mapping[str, Any]) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def namespace_of(m: Manifest, forced: str | None) -> str:
    if forced:
        return forced
    declared = m.metadata.get("namespace")
    # a workspace named by a plain Azure ML file (MLW_Team) is folded like object names
    return str(declared) if declared else kubernetes_name(m.workspace or "default")


def build_object(m: Manifest, namespace: str, origin_of: OriginOf, instance: str) -> dict[str, Any]:
    """The custom resource for a manifest, as it is applied (digest annotation included)."""
    meta = m.metadata
    origin = origin_of(m.file)
    labels = {**(meta.get("labels") or {}), MANAGED_BY: FIELD_MANAGER, INSTANCE: instance}
    annotations = {**(meta.get("annotations") or {}), SOURCE_FILE: origin.manifest}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": m.kind,
        "metadata": {
            # A plain Azure ML file's name (SKLearnEnv) may be no DNS-1123 label; the Azure ML
            # name stays in the spec's part, which is what the reconcilers send to Azure.
            "name": kubernetes_name(m.name),
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": m.spec,
    }
    return stamp(body, origin.commit)


def stamp(body: dict[str, Any], commit: str | None) -> dict[str, Any]:
    """Add the digest of ``body`` (commit excluded: a new commit alone changes nothing), then
    the commit."""
    annotations = body["metadata"].setdefault("annotations", {})
    annotations[APPLIED_DIGEST] = digest(body)
    if commit:
        annotations[GIT_COMMIT] = commit
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


def unchanged(desired: Mapping[str, Any], live: Mapping[str, Any] | None) -> bool:
    if live is None:
        return False
    want = json.loads(json.dumps(desired))
    live_annotations = live.get("metadata", {}).get("annotations") or {}
    if live_annotations.get(APPLIED_DIGEST) != want["metadata"]["annotations"][APPLIED_DIGEST]:
        return False
    want["metadata"]["annotations"].pop(GIT_COMMIT, None)
    return holds(want, live)


# -- the cluster ----------------------------------------------------------------------------


class ApplyError(Exception):
    pass


class Kube:
    """The few raw requests apply needs, retried on conflicts, throttling and 5xx."""

    def __init__(self, api: Any) -> None:
        self.api = api

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
                if exc.status not in _RETRY_STATUS or pause is None:
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
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
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


# -- the command ----------------------------------------------------------------------------


@dataclass
class Plan:
    lines: list[tuple[str, str]]  # (verb, what)
    writes: int = 0

    def add(self, verb: str, what: str) -> None:
        self.lines.append((verb, what))


def desired_objects(
    manifests: Iterable[Manifest], namespace: str | None, origin_of: OriginOf, instance: str
) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, str], str] = {}
    for kind in ORDER:
        for m in manifests:
            if m.kind != kind:
                continue
            ns = namespace_of(m, namespace)
            if not DNS_LABEL.match(ns):
                raise common.UsageError(
                    f"{m.file}: namespace {ns!r} (from the workspace) is not a DNS label; "
                    "set metadata.namespace or --namespace"
                )
            key = (kind, ns, kubernetes_name(m.name))
            if key in seen:
                raise common.UsageError(
                    f"{m.file}: {kind} {ns}/{key[2]} is also defined in {seen[key]}; give "
                    "them different namespaces (or leave --namespace out)"
                )
            seen[key] = m.file
            objects.append(build_object(m, ns, origin_of, instance))
    return objects


def run_apply(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise common.UsageError(f"{path} does not exist")
    try:
        report = validate_paths([path])
    except LimitsError as exc:
        raise common.UsageError(str(exc)) from exc
    if not report.ok:
        common.stderr.print(findings_table(report.errors))
        common.stderr.print(f"{len(report.errors)} error(s): nothing applied")
        return common.EXIT_FINDINGS
    objects = desired_objects(
        report.of_kind(*ORDER), args.namespace, Provenance().origin, args.instance
    )
    kube = Kube(_client(args.context))
    try:
        plan = apply_all(
            kube, objects, instance=args.instance, prune=args.prune, dry_run=args.dry_run
        )
    except ApplyError as exc:
        common.stderr.print(f"[red]error:[/] {escape(str(exc))}")
        return common.EXIT_FINDINGS
    for verb, what in plan.lines:
        common.stdout.print(f"{verb:10} {what}")
    mode = " (dry run: nothing written)" if args.dry_run else ""
    common.stdout.print(f"{plan.writes} change(s){mode}")
    return common.EXIT_OK


def _client(context: str | None) -> Any:
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    # $KUBECONFIG is read now, not when the kubernetes package was imported
    path = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        return k8s_config.new_client_from_config(path, context=context, persist_config=False)
    except (ConfigException, OSError) as exc:
        raise common.UsageError(f"no usable kube context: {exc}") from exc


def apply_all(
    kube: Kube,
    objects: Sequence[Mapping[str, Any]],
    *,
    instance: str,
    prune: bool = False,
    dry_run: bool = False,
) -> Plan:
    plan = Plan([])
    _apply_crds(kube, plan, dry_run)
    namespaces = sorted({o["metadata"]["namespace"] for o in objects})
    for ns in namespaces:
        if kube.request("GET", f"/api/v1/namespaces/{ns}") is None:
            plan.add("create", f"Namespace {ns}")
            plan.writes += 1
            if not dry_run:
                body = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": ns, "labels": {MANAGED_BY: FIELD_MANAGER}},
                }
                kube.apply(f"/api/v1/namespaces/{ns}", body)
    live = _live_objects(kube, instance)
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta["namespace"], meta["name"])
        what = f"{obj['kind']} {meta['namespace']}/{meta['name']}"
        current = live.pop(key, None)
        if unchanged(obj, current):
            plan.add("unchanged", what)
            continue
        plan.add("create" if current is None else "apply", what)
        plan.writes += 1
        if not dry_run:
            kube.apply(object_path(*key), obj)
    if prune:
        for kind in reversed(ORDER):
            for (k, ns, name), _obj in sorted(live.items()):
                if k != kind:
                    continue
                plan.add("prune", f"{kind} {ns}/{name}")
                plan.writes += 1
                if not dry_run:
                    kube.request("DELETE", object_path(kind, ns, name))
    return plan


def _apply_crds(kube: Kube, plan: Plan, dry_run: bool) -> None:
    schemas = read_schemas(schemas_dir())
    applied: list[str] = []
    for kind in ORDER:
        crd = stamp(build_crd(kind, schemas[kind]), None)
        name = crd["metadata"]["name"]
        current = kube.request("GET", crd_path(name))
        if unchanged(crd, current):
            continue
        plan.add("create" if current is None else "apply", f"CustomResourceDefinition {name}")
        plan.writes += 1
        if not dry_run:
            kube.apply(crd_path(name), crd)
            applied.append(name)
    deadline = time.monotonic() + 60
    for name in applied:  # a CR sent before its CRD is served would be a 404
        while not _established(kube.request("GET", crd_path(name))):
            if time.monotonic() > deadline:
                raise ApplyError(f"CustomResourceDefinition {name} not established after 60 s")
            time.sleep(0.2)


def _live_objects(kube: Kube, instance: str) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every object this instance manages, one LIST per kind (absent CRD: none)."""
    selector = f"{MANAGED_BY}={FIELD_MANAGER},{INSTANCE}={instance}"
    live: dict[tuple[str, str, str], dict[str, Any]] = {}
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
