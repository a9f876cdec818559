"""The GitSource handlers: fetch -> artifact -> validate -> apply -> prune, one sync at a time.

A sync (on resume, create, update - a spec change or the receiver's ``amlops.io/requestedAt``
annotation - and from a timer once ``spec.interval`` has passed) does, in order:

1. fetch ``spec.url`` at ``spec.ref`` with the credentials of ``spec.secretRef``
   (``amlops.gitops.fetch``); a failure is ``FetchFailed``;
2. materialise the commit's ``spec.path`` read-only (``amlops.gitops.artifacts``);
3. validate it with the core of ``amlops validate`` (schemas, references, policies, the
   ``amlops.yaml`` at ``path``); an error is ``ValidationFailed`` with the first findings
   (file:line rule) in status;
4. server-side apply the operator kinds' manifests into the source's namespace (field manager
   ``amlops-gitsource``, which admission recognises), stamped with ``amlops.io/source`` (ns/name),
   ``amlops.io/revision`` (the commit) and ``amlops.io/source-file`` (the manifest's path in
   the repository) and labelled with the source, skipping unchanged ones
   (``amlops.gitops.apply``); an object another GitSource or an ``amlops apply`` instance holds
   is refused, and that or any other failure is ``ApplyFailed``;
5. with ``spec.prune``, delete what the previous inventory holds and this revision does not;
6. teach the local backend the ComputeClusters the revision declares (once applied; nothing
   else: Workspaces come from the operator's own source root and Pulumi).

No ``ownerReferences``: deleting a GitSource, its namespace or the CRD must never have the
garbage collector delete Azure assets; the inventory and the labels say what is the source's.
A Secret the source reads (``secretRef``, ``receiver.secretRef``) must carry the label
``amlops.io/git-credentials: "true"``, so a GitSource cannot send any other Secret of its
namespace to a URL of its choosing.

A revision that fails to fetch or validate changes nothing in the cluster: the last applied
revision stays in force and its inventory is kept; one that fails to apply keeps the old
inventory plus what it did write, so a later prune still finds those. Status says what happened
(conditions Ready / Reconciling / Stalled, ``artifact.revision``, ``lastAttemptedRevision``,
``lastAppliedRevision``, ``inventory.entries``, ``findings``) and an Event marks a failure or a
newly applied revision. Secret values never reach status, Events or logs: messages are redacted
with the credentials' values before they leave this module.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Self

import kopf
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from amlops import API_GROUP
from amlops.core.config import load_config
from amlops.core.digest import file_sha256, tree_digest
from amlops.core.findings import Finding
from amlops.core.limits import LimitsError
from amlops.core.locator import ObjectLocator
from amlops.core.manifests import Manifest, kubernetes_name
from amlops.core.provenance import Origin
from amlops.core.refs import read_paths
from amlops.core.validate import validate_paths
from amlops.crds import VERSION
from amlops.gitops import apply as gitops_apply
from amlops.gitops import artifacts, fetch
from amlops.gitops.apply import INSTANCE as LABEL_INSTANCE
from amlops.gitops.apply import REVISION as ANNOTATION_REVISION
from amlops.gitops.apply import SOURCE as ANNOTATION_SOURCE
from amlops.gitops.inventory import Entry, Inventory, InventoryError, PruneAllRefused
from amlops.handlers import runtime
from amlops.handlers.objects import Applied, CustomResource
from amlops.handlers.options import KOPF_STATUS_KEY, SETTINGS
from amlops.handlers.receiver import ANNOTATION_REQUESTED_AT
from amlops.handlers.runtime import Runtime
from amlops.handlers.status import merge_patch, redact, redact_status
from amlops.kinds.git_source import CREDENTIALS_LABEL, KIND_NAME, GitSource, parse
from amlops.reconcile.conditions import (
    READY,
    Outcome,
    Phase,
    build_status,
    find,
    suspended,
    timestamp,
)

log = logging.getLogger(__name__)

PLURAL = "gitsources"
# One manager for every source (handlers.admission recognises it): which source holds an object
# is in its labels, and a source refuses an object another one holds (``claimant``).
FIELD_MANAGER = "amlops-gitsource"
# Labels (not annotations) so that `kubectl get models -l amlops.io/source-name=platform` works
LABEL_SOURCE_NAME = gitops_apply.SOURCE_NAME
LABEL_SOURCE_NAMESPACE = gitops_apply.SOURCE_NAMESPACE
# The digest of the files a manifest names: a commit that only changes a model's weights
# re-applies the Model (with the new revision) although its manifest did not change.
ANNOTATION_FILES_DIGEST = f"{API_GROUP}/files-digest"
MAX_FINDINGS = 10
RULE_NAMESPACE = "source.namespace"
RULE_DUPLICATE = "source.duplicate"
# what a GitSource teaches the backend: compute its Pipelines wait for. Never Workspaces (their
# resource groups come from the operator's own source root and Pulumi), nor Endpoints: one
# namespace's revision must not redirect another namespace's objects.
LEARNT_KINDS = ("ComputeCluster",)
LEARNS_COMPUTE = "local"  # the backend that runs steps on the compute it is taught
MIB = 1024 * 1024
SYNC_FAILED = "SyncFailed"  # an error no step expected (a bug, a full disk): retried

FETCH_FAILED = fetch.FETCH_FAILED  # also a credentials Secret the fetch cannot use
VALIDATION_FAILED = "ValidationFailed"
APPLY_FAILED = "ApplyFailed"
SUCCEEDED = "Succeeded"


@dataclass(frozen=True)
class Source(CustomResource):
    """One GitSource custom resource, as the sync reads it."""

    status: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Self:
        return replace(super().of(body), status=dict(body.get("status") or {}))

    @property
    def inventory(self) -> Inventory:
        """The status' inventory, limited to the source's namespace (a hand-edited status
        must not have it prune another namespace's objects)."""
        try:
            listed = Inventory.from_dict(self.status.get("inventory"))
        except InventoryError:  # a hand-edited status: nothing is pruned on its word
            return Inventory()
        return Inventory.from_entries(e for e in listed.entries if e.namespace == self.namespace)


@dataclass
class Sync:
    """What one sync produced: the status fields, the outcome, and an Event if one is due."""

    outcome: Outcome
    fields: dict[str, Any] = field(default_factory=dict)
    event: tuple[str, str, str] | None = None  # (type, reason, message)
    secrets: list[str] = field(default_factory=list)  # values to redact from every message


class SyncFailed(Exception):
    """A step that failed before anything was applied; ``reason`` is the condition's."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- the pieces ---------------------------------------------------------------------------------


def read_secret(api: Any, namespace: str, name: str) -> dict[str, bytes]:
    """A Secret's decoded data (the operator may ``get`` Secrets, never list or watch them),
    only when it carries ``CREDENTIALS_LABEL: "true"``: made to be a GitSource's."""
    try:
        secret = k8s.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        what = "not found" if exc.status == 404 else f"unreadable (HTTP {exc.status})"
        raise SyncFailed(FETCH_FAILED, f"spec.secretRef: Secret {name!r} {what}") from None
    labels = (secret.metadata.labels if secret.metadata else None) or {}
    if labels.get(CREDENTIALS_LABEL) != "true":
        raise SyncFailed(
            FETCH_FAILED,
            f"spec.secretRef: Secret {name!r} lacks the label {CREDENTIALS_LABEL}=true; label "
            "it to let a GitSource use it",
        )
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


def credentials_of(rt: Runtime, src: Source, spec: GitSource) -> fetch.Credentials | None:
    if spec.secret is None:
        return None
    data = read_secret(rt.kube, src.namespace, spec.secret)
    try:
        return fetch.Credentials.from_secret(data)
    except UnicodeDecodeError:
        raise SyncFailed(
            FETCH_FAILED,
            f"spec.secretRef: Secret {spec.secret!r}: username, password and bearerToken must "
            "be UTF-8 text",
        ) from None


def _relative(file: str, root: Path) -> str:
    """A finding's or manifest's file as a path inside the artifact ("/"-separated)."""
    path = Path(file)
    absolute = path if path.is_absolute() else Path(os.path.abspath(path))
    try:
        return absolute.relative_to(root).as_posix()
    except ValueError:
        return PurePosixPath(file).as_posix()


def in_repository(spec: GitSource, relative: str) -> str:
    """A path inside the artifact as a path inside the repository."""
    return relative if spec.path in ("", ".") else f"{spec.path}/{relative}"


def findings_status(
    findings: Sequence[Finding], root: Path, spec: GitSource
) -> list[dict[str, Any]]:
    return [
        {
            "file": in_repository(spec, _relative(f.file, root)),
            "line": f.line,
            "rule": f.rule,
            "message": f.message,
        }
        for f in findings[:MAX_FINDINGS]
    ]


@functools.lru_cache(maxsize=4096)
def _content_digest(target: Path) -> str:
    """Cached by resolved path: an artifact's files never change (one read-only folder per
    commit), so an interval's sync of an unchanged commit hashes no model weights again."""
    return file_sha256(target) if target.is_file() else tree_digest(target)


def files_digest(m: Manifest, root: Path) -> str:
    """One digest over every local file or folder ``m`` names (missing ones count as missing)."""
    folder = Path(os.path.abspath(m.file)).parent
    top = root.resolve()
    parts = []
    for _path, _name, value, _relative_to in read_paths(("spec",), m.spec):
        target = folder / value
        try:
            resolved = target.resolve()
            if resolved.is_relative_to(top):
                parts.append(f"{value}={_content_digest(resolved)}")
        except (FileNotFoundError, NotADirectoryError):
            parts.append(f"{value}=missing")
    return hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]


def desired_objects(
    src: Source, spec: GitSource, manifests: Sequence[Manifest], root: Path, sha: str
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """The bodies to apply (in ``ORDER``), or findings (file:line) saying why they cannot be:
    an object for another namespace, two objects of one kind and name."""
    bodies: list[dict[str, Any]] = []
    problems: list[Finding] = []
    seen: dict[tuple[str, str], str] = {}

    def origin_of(file: str) -> Origin:
        return Origin(in_repository(spec, _relative(file, root)))  # the commit: ``volatile``

    for m in gitops_apply.in_order(manifests):
        declared_ns = m.metadata.get("namespace")
        if declared_ns and declared_ns != src.namespace:
            problems.append(
                m.finding(
                    ("metadata", "namespace"),
                    RULE_NAMESPACE,
                    f"a GitSource applies into its own namespace {src.namespace!r}: "
                    "remove metadata.namespace or put a GitSource in that namespace",
                )
            )
            continue
        key = (m.kind, kubernetes_name(m.name))
        if key in seen:
            problems.append(
                m.finding(
                    ("metadata", "name"),
                    RULE_DUPLICATE,
                    f"{m.kind} {key[1]} is also defined in {seen[key]}; names are unique per "
                    "kind in one namespace",
                )
            )
            continue
        seen[key] = origin_of(m.file).manifest
        bodies.append(
            gitops_apply.build_object(
                m,
                src.namespace,
                origin_of,
                labels=labels_of(src),
                annotations={
                    ANNOTATION_SOURCE: src.id,
                    ANNOTATION_FILES_DIGEST: files_digest(m, root),
                },
                volatile={ANNOTATION_REVISION: sha},
            )
        )
    return bodies, problems


def labels_of(src: Source) -> dict[str, str]:
    """What marks an object as this source's: prune deletes only objects still carrying them."""
    return {
        gitops_apply.MANAGED_BY: gitops_apply.FIELD_MANAGER,
        LABEL_SOURCE_NAME: src.name,
        LABEL_SOURCE_NAMESPACE: src.namespace,
    }


def options_of(src: Source, spec: GitSource, *, prune: bool) -> gitops_apply.SyncOptions:
    # the operator's ServiceAccount may not touch CRDs or namespaces: objects go into the
    # source's own namespace, which exists
    return gitops_apply.SyncOptions(
        labels=labels_of(src),
        volatile=(ANNOTATION_REVISION,),
        crds=False,
        namespaces=False,
        prune=prune,
        claimed_by=lambda live: claimant(src, live),
    )


def claimant(src: Source, live: Mapping[str, Any]) -> str | None:
    """Who other than ``src`` holds a live object: another GitSource (its labels), or an
    ``amlops apply`` instance (whose ``--prune`` would delete it). None: free to apply."""
    labels = (live.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(LABEL_SOURCE_NAME), labels.get(LABEL_SOURCE_NAMESPACE)
    if (name or namespace) and (name, namespace) != (src.name, src.namespace):
        return f"GitSource {namespace}/{name}"
    if labels.get(LABEL_INSTANCE):
        return f"amlops apply instance {labels[LABEL_INSTANCE]!r}"
    return None


# -- one sync -----------------------------------------------------------------------------------


def _kept(src: Source) -> dict[str, Any]:
    """What a failed sync leaves as it was: the last applied revision and its inventory."""
    keep = ("artifact", "lastAppliedRevision", "inventory", "lastAttemptedRevision")
    return {k: src.status[k] for k in keep if k in src.status}


def sync(rt: Runtime, src: Source) -> Sync:
    """One sync of ``src`` (see the module docstring). Never raises: every failure is an
    outcome (one no step expected is ``SyncFailed``, retried), and a failure before the apply
    leaves the cluster as it was."""
    fields: dict[str, Any] = _kept(src)
    secrets: list[str] = []  # filled by _sync once the credentials are read
    try:
        return _sync(rt, src, fields, secrets)
    except Exception as exc:
        trace = "".join(traceback.format_exception(exc))
        log.error("GitSource %s: sync failed: %s", src.id, redact(trace, secrets))
        message = f"{type(exc).__name__} during the sync (the operator's log has more)"
        return _failed(src, fields, SYNC_FAILED, message, secrets)


def _sync(rt: Runtime, src: Source, fields: dict[str, Any], secrets: list[str]) -> Sync:
    requested = src.annotations.get(ANNOTATION_REQUESTED_AT)
    if requested:
        fields["lastHandledReconcileAt"] = requested
    spec, problems = parse(src.spec, ObjectLocator(f"{KIND_NAME} {src.id}"))
    if spec is None:
        message = "; ".join(f"{p.field}: {p.message}" for p in problems)
        return Sync(Outcome(Phase.STALLED, "InvalidSpec", message), fields)
    if spec.suspend:
        return Sync(suspended(), fields)
    try:
        creds = credentials_of(rt, src, spec)
        secrets.extend(creds.secrets() if creds is not None else [])
        fetched = fetch.fetch(
            fetch.Source(
                src.id,
                spec.url,
                spec.ref,
                creds,
                spec.timeout_s,
                rt.settings.source_max_mib * MIB,
            ),
            rt.settings.state_dir,
        )
    except SyncFailed as exc:
        return _failed(src, fields, exc.reason, str(exc), secrets)
    except fetch.FetchError as exc:
        phase = Phase.STALLED if exc.reason == fetch.INVALID_SOURCE else Phase.RECONCILING
        return _failed(src, fields, FETCH_FAILED, str(exc), secrets, phase)
    revision = fetched.revision
    fields["lastAttemptedRevision"] = revision
    try:
        root = artifacts.materialise(
            fetched.mirror,
            fetched.commit,
            rt.settings.state_dir,
            src.id,
            path="" if spec.path == "." else spec.path,
            ignore=spec.ignore.splitlines(),
            limits=rt.settings.limits,
        ).root
    except artifacts.ArtifactError as exc:
        return _failed(src, fields, VALIDATION_FAILED, str(exc), secrets, Phase.STALLED)
    fields["artifact"] = {"revision": revision}
    try:
        config = load_config(root, rt.settings.limits)
        report = validate_paths([root], root=root, limits=rt.settings.limits, config=config)
    except LimitsError as exc:  # a manifest over the size or alias limits
        return _failed(src, fields, VALIDATION_FAILED, str(exc), secrets, Phase.STALLED)
    bodies, problems = desired_objects(src, spec, report.manifests, root, fetched.commit)
    errors = [*report.errors, *problems]
    if errors:
        fields["findings"] = findings_status(errors, root, spec)
        first = fields["findings"][0]
        message = (
            f"revision {revision}: {len(errors)} error(s), nothing applied; first: "
            f"{first['file']}:{first['line']} {first['rule']} {first['message']}"
        )
        return _failed(src, fields, VALIDATION_FAILED, message, secrets, Phase.STALLED)
    previous = src.inventory
    try:
        applied = gitops_apply.sync(
            gitops_apply.Kube(rt.kube, FIELD_MANAGER),
            bodies,
            options_of(src, spec, prune=spec.prune),
            previous=previous,
        )
    except PruneAllRefused as exc:
        return _failed(src, fields, VALIDATION_FAILED, str(exc), secrets, Phase.STALLED)
    except gitops_apply.ApplyError as exc:
        # what this sync wrote is in the cluster: remembered, so a later prune finds it
        fields["inventory"] = with_applied(previous, exc.applied).to_dict()
        return _failed(src, fields, APPLY_FAILED, str(exc), secrets)
    # the computes this revision declares, now that it is applied: only the local backend runs
    # on them (Azure ML's are Pulumi's), and Backends.learn replaces what the checkout taught
    if rt.sources is not None and rt.settings.backend == LEARNS_COMPUTE:
        rt.sources.learn([m for m in report.manifests if m.kind in LEARNT_KINDS])
    # the objects' handlers resolve paths against this artifact (handlers.objects)
    Applied(fetched.commit, spec.path).write(rt.settings.state_dir, src.id)
    artifacts.collect(rt.settings.state_dir, src.id, pinned=in_use(fetched.commit, applied))
    fields.pop("findings", None)
    fields["lastAppliedRevision"] = revision
    fields["inventory"] = applied.inventory.to_dict()
    message = (
        f"applied revision {revision}: {applied.applied} written, {applied.unchanged} "
        f"unchanged, {applied.pruned} pruned"
    )
    event = None
    if src.status.get("lastAppliedRevision") != revision or applied.applied or applied.pruned:
        event = ("Normal", SUCCEEDED, message)
    return Sync(Outcome(Phase.READY, SUCCEEDED, message), fields, event, secrets)


def with_applied(previous: Inventory, applied: Sequence[Entry]) -> Inventory:
    return Inventory.from_entries([*previous.entries, *applied])


def in_use(commit: str, result: gitops_apply.SyncResult) -> tuple[str, ...]:
    """The commits live objects name: the one just applied, and the revisions of objects the
    sync left as they were (unchanged ones keep the commit that last changed them)."""
    named = {
        str(((o.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_REVISION, ""))
        for o in result.untouched
    }
    return tuple(sorted({commit} | {c for c in named if c}))


def _failed(
    src: Source,
    fields: dict[str, Any],
    reason: str,
    message: str,
    secrets: list[str],
    phase: Phase = Phase.RECONCILING,
) -> Sync:
    kept = src.status.get("lastAppliedRevision")
    text = f"{message}; {'revision ' + kept if kept else 'nothing'} stays applied"
    return Sync(Outcome(phase, reason, text), fields, ("Warning", reason, text), secrets)


# -- Kopf ----------------------------------------------------------------------------------------


def settle(src: Source, result: Sync, body: kopf.Body, patch: kopf.Patch, logger: Any) -> None:
    """Status difference into Kopf's patch; the Event only when the status says something new
    (a failure repeated every interval is one Event, not one per interval)."""
    now = datetime.now(UTC)
    status = build_status(result.outcome, src.generation, src.status, now, **result.fields)
    previous_ready = _ready(src.status)
    if "artifact" in status and status["artifact"].get("revision") != (
        src.status.get("artifact") or {}
    ).get("revision"):
        status["artifact"]["lastUpdateTime"] = timestamp(now)
    elif "artifact" in status:
        status["artifact"] = {**(src.status.get("artifact") or {}), **status["artifact"]}
    status = redact_status(status, result.secrets)
    if "findings" in status:
        status["findings"] = [
            {**f, "message": redact(str(f.get("message", "")), result.secrets)}
            for f in status["findings"]
        ]
    changes = merge_patch(src.status, status)
    if changes:
        patch.status.update(changes)
    if result.event is None:
        return
    kind, reason, message = result.event
    message = redact(message, result.secrets)
    now_ready = _ready(status)
    if kind == "Warning" and previous_ready == now_ready and _same_attempt(src.status, status):
        return
    kopf.event(body, type=kind, reason=reason, message=message)
    (logger.warning if kind == "Warning" else logger.info)(f"{reason}: {message}")


def _ready(status: Mapping[str, Any]) -> tuple[Any, ...]:
    cond = find(status.get("conditions") or [], READY)
    return () if cond is None else (cond.get("status"), cond.get("reason"), cond.get("message"))


def _same_attempt(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    return before.get("lastAttemptedRevision") == after.get("lastAttemptedRevision")


def _last_synced(memo: kopf.Memo) -> dict[str, float]:
    synced = memo.get("source_synced")
    if not isinstance(synced, dict):
        raise RuntimeError("the GitSource startup hook did not run")
    return synced


def _run(kwargs: Mapping[str, Any], *, due_only: bool) -> None:
    body, memo, logger = kwargs["body"], kwargs["memo"], kwargs["logger"]
    patch = kwargs.get("patch")
    patch = kopf.Patch() if patch is None else patch  # an empty Patch is falsy: keep Kopf's
    src = Source.of(body)
    rt = runtime.of(memo)
    spec, _ = parse(src.spec, ObjectLocator(src.id))
    synced = _last_synced(memo)
    if due_only:
        progress = (src.status.get(KOPF_STATUS_KEY) or {}).get("progress")
        interval = spec.interval_s if spec is not None else SETTINGS.drift_interval_s
        if progress or time.monotonic() - synced.get(src.uid, float("-inf")) < interval:
            return
    # a timer's sync gives way to one under way; a change waits for it
    with rt.try_exclusive(src.uid, blocking=not due_only) as mine:
        if not mine:
            return
        result = sync(rt, src)
        synced[src.uid] = time.monotonic()
    settle(src, result, body, patch, logger)


def finalize(kwargs: Mapping[str, Any]) -> None:
    """On delete: with ``spec.prune: true``, delete every object of the inventory; else (or
    while suspended) leave them (they carry no owner reference, so nothing else deletes them)."""
    body, memo, logger = kwargs["body"], kwargs["memo"], kwargs["logger"]
    src = Source.of(body)
    rt = runtime.of(memo)
    _last_synced(memo).pop(src.uid, None)
    spec, _ = parse(src.spec, ObjectLocator(src.id))
    kube = gitops_apply.Kube(rt.kube, FIELD_MANAGER)
    revision = src.status.get("lastAppliedRevision")
    try:
        with rt.exclusive(src.uid):
            if spec is not None and spec.prune and not spec.suspend:
                options = replace(options_of(src, spec, prune=True), allow_empty=True)
                pruned = gitops_apply.sync(kube, [], options, previous=src.inventory).pruned
                message = f"pruned {pruned} object(s) of revision {revision}"
            else:
                kept = len(src.inventory)
                message = f"{kept} object(s) of revision {revision} stay (spec.prune is not true)"
    except gitops_apply.ApplyError as exc:
        raise kopf.TemporaryError(f"delete: {exc}", delay=SETTINGS.retry_base_s) from exc
    kopf.event(body, type="Normal", reason="Deleted", message=message)
    logger.info(f"Deleted: {message}")
    rt.forget(src.uid)


def register() -> None:
    resource = (API_GROUP, VERSION, PLURAL)

    def on_change(**kwargs: Any) -> None:
        _run(kwargs, due_only=False)

    def on_timer(**kwargs: Any) -> None:
        _run(kwargs, due_only=True)

    def on_delete(**kwargs: Any) -> None:
        finalize(kwargs)

    def on_startup(memo: kopf.Memo, **_: Any) -> None:
        memo.source_synced = {}

    kopf.on.startup()(on_startup)
    for event in (kopf.on.resume, kopf.on.create, kopf.on.update):
        event(*resource, id="sync_gitsource")(on_change)
    kopf.timer(*resource, id="sync_gitsource_interval", interval=SETTINGS.source_tick_s)(on_timer)
    kopf.on.delete(*resource, id="delete_gitsource")(on_delete)
