"""Reconcile a whole manifest tree into one backend: what ``amlops up`` does on every pass.

Kinds go in dependency order (Models, then Pipelines, then Endpoints) so that one pass gets as
far as it can. Each object's record (generation, spec hash, status) lives in a status store,
the local stand-in for the Kubernetes API: the generation goes up when the spec changes, and a
record is written only when it changed, so a pass over an unchanged tree writes nothing.
Objects whose manifests are gone are finalized (deleted unless ``deletionPolicy: Retain``).

Every asset is tagged with the Git commit and the manifest path it came from
(amlops.core.provenance), looked up once per pass so a new commit is seen on the next one. The
tags are no part of an object's identity: model versions stay content-addressed and a pipeline
reruns only when its fingerprint changes, so a new commit that changes nothing writes nothing,
and an asset's tags name the commit that first produced it (with ``-dirty`` when the manifest
had uncommitted changes then).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from amlops.backends.base import Backend
from amlops.core.manifests import Manifest
from amlops.core.provenance import Provenance
from amlops.kinds import ORDER
from amlops.reconcile import driver
from amlops.reconcile import endpoint as endpoint_kind
from amlops.reconcile import model as model_kind
from amlops.reconcile import pipeline as pipeline_kind
from amlops.reconcile.actions import Action, Result
from amlops.reconcile.conditions import Outcome, Phase, build_status
from amlops.reconcile.inputs import Source, digest_of


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
        for kind in (k for k in ORDER if k in kinds):
            for m in manifests:
                if m.kind == kind:
                    seen.add((m.kind, m.workspace or "", m.name))
                    reports.append(self._one(m, when, provenance))
        for record in self.store.list_objects():
            key = (record["kind"], record["workspace"], record["name"])
            if key not in seen and record["kind"] in kinds:
                self._finalize(record)
        return reports

    def _one(self, m: Manifest, now: datetime, provenance: Provenance) -> ObjectReport:
        workspace = m.workspace or ""
        record = self.store.get_object(m.kind, workspace, m.name)
        spec_hash = digest_of(m.spec)
        generation = 1
        if record is not None:
            generation = int(record["generation"]) + (record["spec_hash"] != spec_hash)
        previous = record["status"] if record is not None else None
        source = Source.of(m)
        tags = provenance.tags(m.file)
        result: Result
        try:
            if m.kind == "Model":
                desired_m = model_kind.desired_model(workspace, m.name, m.spec, generation, source)
                model_tags = {**desired_m.spec.tags, **tags}
                desired_m = replace(desired_m, spec=replace(desired_m.spec, tags=model_tags))
                result = driver.reconcile_model(self.backend, desired_m, previous, now)
            elif m.kind == "Pipeline":
                requested = self.store.get_request("Pipeline", workspace, m.name)
                desired_p = pipeline_kind.desired_pipeline(
                    workspace, m.name, m.spec, generation, source, requested
                )
                desired_p = replace(desired_p, tags=tags)
                result = driver.reconcile_pipeline(self.backend, desired_p, previous, now)
            else:
                desired_e = endpoint_kind.desired_endpoint(
                    workspace, m.name, m.spec, generation, source
                )
                desired_e = replace(desired_e, tags=tags)
                result = driver.reconcile_endpoint(self.backend, desired_e, previous, now)
        except (KeyError, TypeError, ValueError) as exc:  # a spec the schema let through
            outcome = Outcome(Phase.STALLED, "InvalidSpec", f"{m.file}: cannot read spec: {exc}")
            result = Result((), build_status(outcome, generation, previous, now), outcome)
        self.store.put_object(
            {
                "kind": m.kind,
                "workspace": workspace,
                "name": m.name,
                "generation": generation,
                "spec_hash": spec_hash,
                "deletion_policy": str(m.spec.get("deletionPolicy", "Delete")),
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
        actions: tuple[Action, ...] = ()
        if kind == "Model":
            actions = model_kind.finalize_model(workspace, status, policy)
        elif kind == "Pipeline":
            run = self.backend.latest_pipeline_run(workspace, name)
            actions = pipeline_kind.finalize_pipeline(workspace, run)
        elif kind == "Endpoint":
            actions = endpoint_kind.finalize_endpoint(workspace, status, policy)
        if driver.finalize(self.backend, actions) is None:
            self.store.delete_object(kind, workspace, name)
