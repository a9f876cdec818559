"""Reconcile a whole manifest tree into one backend: what ``amlops up`` does on every pass.

Kinds go in dependency order (Models, then Pipelines, then Endpoints) so that one pass gets as
far as it can. Each object's record (generation, spec hash, status) lives in a status store,
the local stand-in for the Kubernetes API: the generation goes up when the spec changes, and a
record is written only when it changed, so a pass over an unchanged tree writes nothing.
Objects whose manifests are gone are finalized (deleted unless ``deletionPolicy: Retain``).
The tree's Components (which have no reconciler of their own) are what a pipeline step's
``azureml:NAME:VERSION`` runs: each object's ``Source`` looks them up, which the operator's,
with one object at a time, cannot.

Every asset is tagged with the Git commit and the manifest path it came from
(amlops.core.provenance), looked up once per pass so a new commit is seen on the next one. The
tags are no part of an object's identity: model versions stay content-addressed and a pipeline
reruns only when its fingerprint changes, so a new commit that changes nothing writes nothing,
and an asset's tags name the commit that first produced it (with ``-dirty`` when the manifest
had uncommitted changes then).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from amlops.backends.base import Backend
from amlops.core.manifests import Manifest
from amlops.core.provenance import Provenance
from amlops.kinds import ORDER
from amlops.kinds.base import Lifecycle
from amlops.kinds.component import Repository
from amlops.reconcile import driver
from amlops.reconcile.actions import Result
from amlops.reconcile.conditions import Outcome, Phase, build_status
from amlops.reconcile.inputs import Gone, Inputs, Source, SpecError, digest_of
from amlops.reconcile.registry import RECONCILERS


class StatusStore(Protocol):
    def get_object(self, kind: str, workspace: str, name: str) -> dict[str, Any] | None: ...

    def put_object(self, record: Mapping[str, Any]) -> bool: ...

    def list_objects(self) -> list[dict[str, Any]]: ...

    def delete_object(self, kind: str, workspace: str, name: str) -> None: ...

    def get_request(self, kind: str, workspace: str, name: str) -> str | None: ...


@dataclass(frozen=True)
class ObjectReport:
    kind: str
    workspace: str
    name: str
    generation: int
    status: Mapping[str, Any]
    outcome: Outcome
    requeue_after: float | None = None
    file: str = ""

    @property
    def settled(self) -> bool:
        """Ready or Stalled: nothing more will happen without a change."""
        return self.outcome.phase in (Phase.READY, Phase.STALLED, Phase.SUSPENDED)


def _stalled(
    message: str, generation: int, previous: Mapping[str, Any] | None, now: datetime
) -> Result:
    outcome = Outcome(Phase.STALLED, "InvalidSpec", message)
    return Result((), build_status(outcome, generation, previous, now), outcome)


class TreeReconciler:
    def __init__(
        self,
        backend: Backend,
        store: StatusStore,
        seed_computes: Callable[[Sequence[Manifest]], None] | None = None,
    ) -> None:
        self.backend = backend
        self.store = store
        # a backend that stands in for Pulumi learns compute from the manifests themselves
        self._seed_computes = seed_computes

    def reconcile(
        self,
        manifests: Sequence[Manifest],
        now: datetime | None = None,
        kinds: Sequence[str] = ORDER,
    ) -> list[ObjectReport]:
        """One pass over ``manifests``; only objects of ``kinds`` are reconciled or finalized."""
        when = now or datetime.now(UTC)
        if self._seed_computes is not None:
            self._seed_computes(manifests)
        reports: list[ObjectReport] = []
        seen: set[tuple[str, str, str]] = set()
        provenance = Provenance()
        # the Components of the tree: what a pipeline step's ``azureml:NAME:VERSION`` runs
        components = Repository(manifests)
        for kind in (k for k in ORDER if k in kinds):
            for m in manifests:
                if m.kind == kind:
                    seen.add((m.kind, m.workspace or "", m.name))
                    reports.append(self._one(m, when, provenance, components))
        for record in self.store.list_objects():
            key = (record["kind"], record["workspace"], record["name"])
            if key not in seen and record["kind"] in kinds:
                self._finalize(record)
        return reports

    def _one(
        self, m: Manifest, now: datetime, provenance: Provenance, components: Repository
    ) -> ObjectReport:
        workspace = m.workspace or ""
        record = self.store.get_object(m.kind, workspace, m.name)
        spec_hash = digest_of(m.spec)
        generation = 1
        if record is not None:
            generation = int(record["generation"]) + (record["spec_hash"] != spec_hash)
        previous = record["status"] if record is not None else None
        inputs = Inputs(
            workspace,
            m.name,
            m.spec,
            generation,
            Source.of(m, components=components),
            provenance.tags(m.file),
            self.store.get_request(m.kind, workspace, m.name),
        )
        reconciler = RECONCILERS[m.kind]
        result: Result
        try:
            result = reconciler.reconcile(self.backend, reconciler.desired(inputs), previous, now)
        except SpecError as exc:
            result = _stalled(str(exc), generation, previous, now)
        except (KeyError, TypeError, ValueError) as exc:  # a spec the schema let through
            result = _stalled(f"{m.file}: cannot read spec: {exc}", generation, previous, now)
        self.store.put_object(
            {
                "kind": m.kind,
                "workspace": workspace,
                "name": m.name,
                "generation": generation,
                "spec_hash": spec_hash,
                "deletion_policy": Lifecycle.of(m.spec).deletion_policy,
                "status": result.status,
            }
        )
        return ObjectReport(
            m.kind,
            workspace,
            m.name,
            generation,
            result.status,
            result.outcome,
            result.requeue_after,
            m.file,
        )

    def _finalize(self, record: Mapping[str, Any]) -> None:
        kind, workspace, name = record["kind"], record["workspace"], record["name"]
        status, policy = record["status"], record["deletion_policy"]
        gone = Gone(workspace, name, status, policy)
        actions = RECONCILERS[kind].finalize(self.backend, gone)
        if driver.finalize(self.backend, actions) is None:
            self.store.delete_object(kind, workspace, name)
