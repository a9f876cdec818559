"""Generate the CustomResourceDefinitions for the operator kinds from policies/schemas/.

One source of truth: the JSON Schemas ``amlops validate`` uses. Kubernetes wants a *structural*
OpenAPI v3 schema, so the JSON-Schema-only parts are translated or left to the operator:
``const`` becomes a one-value ``enum``; type unions become ``x-kubernetes-int-or-string``;
``additionalProperties: false`` is dropped (the API server prunes unknown fields anyway);
``oneOf``/``not`` are dropped (the operator re-validates and marks the object Stalled); the
embedded Azure ML CLI v2 parts keep their unknown fields, since the SDK owns that format.

Run ``python -m amlops.crds DIR`` (``make crds``); a test regenerates and fails on drift.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from amlops import API_GROUP
from amlops.core.schemas import read_schemas
from amlops.kinds import CRD_KINDS, KINDS, ORDER
from amlops.kinds.base import Column, Crd
from amlops.paths import schemas_dir

VERSION = "v1alpha1"
_READY = '.status.conditions[?(@.type=="Ready")]'
_WORKSPACE_COLUMN = Column("Workspace", ".spec.workspace")
# after every kind's own columns
_STATUS_COLUMNS = (
    Column("Ready", f"{_READY}.status"),
    Column("Reason", f"{_READY}.reason"),
    Column("Age", ".metadata.creationTimestamp", type="date"),
)

_DROP = {"$schema", "$id", "title", "oneOf", "anyOf", "allOf", "not", "examples"}


def structural(schema: Any) -> Any:
    """Translate one JSON Schema (draft 2020-12) node into a structural OpenAPI v3 node."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    if "x-amlops-azureml" in schema:
        # The embedded CLI v2 YAML: the SDK is the schema, keep every field the user wrote.
        out["type"] = schema.get("type", "object")
        if "description" in schema:
            out["description"] = schema["description"]
        if out["type"] == "array":
            out["items"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        else:
            out["x-kubernetes-preserve-unknown-fields"] = True
        return out
    for key, value in schema.items():
        if key in _DROP or key.startswith("x-amlops"):
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "type" and isinstance(value, list):
            out["x-kubernetes-int-or-string"] = True
        elif key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = structural(value)
        elif key == "properties":
            out[key] = {name: structural(sub) for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value)
        else:
            out[key] = value
    if "enum" in out and "type" not in out and all(isinstance(v, str) for v in out["enum"]):
        out["type"] = "string"
    return out


def crd_of(kind: str) -> Crd:
    """The custom resource of one of the operator's kinds (``CRD_KINDS``)."""
    crd = KINDS[kind].crd
    if crd is None:
        raise KeyError(f"{kind} has no custom resource")
    return crd


def build_crd(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    crd = crd_of(kind)
    props = schema["properties"]
    openapi = {
        "type": "object",
        "description": schema.get("description", ""),
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": structural(props["spec"]),
            # Status is the operator's to write; what it adds in a later version must survive
            # pruning by an API server that still has this CRD.
            "status": {**structural(props["status"]), "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    # a source (GitSource) belongs to no workspace
    in_workspace = "workspace" in props["spec"].get("properties", {})
    columns = (*((_WORKSPACE_COLUMN,) if in_workspace else ()), *crd.columns, *_STATUS_COLUMNS)
    printer = [column.printer() for column in columns]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{crd.plural}.{API_GROUP}",
            "labels": {"app.kubernetes.io/part-of": "amlops"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": crd.plural,
                "singular": kind.lower(),
                "shortNames": list(crd.short_names),
                "categories": ["amlops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": printer,
                    "schema": {"openAPIV3Schema": openapi},
                }
            ],
        },
    }


HEADER = "# Generated by `make crds` from policies/schemas/{name}. Do not edit.\n"
GENERATED = "# Generated by `make crds` from the kinds (amlops.kinds). Do not edit.\n"

# The operator's ClusterRole: its custom resources are the operator kinds', so a new kind is
# granted by regenerating, never by hand.
CLUSTER_ROLE = (
    GENERATED
    + """\
# Least privilege: exactly the requests the operator makes (tests/operator/test_rbac.py runs the
# whole operator suite as this ServiceAccount and fails on any 403).
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: amlops-operator
  labels:
    app.kubernetes.io/name: amlops-operator
    app.kubernetes.io/part-of: amlops
rules:
  # Kopf lists and watches the custom resources in all namespaces, and patches them: the
  # finalizer on the object, everything else (conditions, Kopf's progress) in status.
  - apiGroups: [{group}]
    resources: [{resources}]
    verbs: [list, watch, patch]
  - apiGroups: [{group}]
    resources: [{statuses}]
    verbs: [patch]
  # WorkspaceBindings (amlops.handlers.tenancy): read into an index, never written.
  - apiGroups: [{group}]
    resources: [{indexed}]
    verbs: [list, watch]
  # A GitSource server-side applies the operator kinds it holds (an apply that creates is
  # authorized as create and patch), reads one back when its digest says it may have changed,
  # and prunes the ones that left Git.
  - apiGroups: [{group}]
    resources: [{applied}]
    verbs: [get, create, delete]
  # The push receiver (on every replica, the standby too) reads the GitSource a push names.
  - apiGroups: [{group}]
    resources: [gitsources]
    verbs: [get]
  # Kopf watches the CRDs so that resources installed after the operator are served too.
  - apiGroups: [apiextensions.k8s.io]
    resources: [customresourcedefinitions]
    verbs: [list, watch]
  # An Event on every condition transition.
  - apiGroups: [""]
    resources: [events]
    verbs: [create]
  # Endpoint keys: server-side applied into a Secret the Endpoint owns (an apply that creates
  # is authorized as create and patch). A GitSource's credentials and receiver key: read by
  # name (get) when it syncs. Never list/watch: the operator only reads a Secret a GitSource
  # in the same namespace names.
  - apiGroups: [""]
    resources: [secrets]
    verbs: [get, create, patch]
  # With AMLOPS_WEBHOOKS (amlops.handlers.admission): Kopf creates the webhook configurations
  # {webhooks} and keeps their webhooks and CA bundle up to date.
  - apiGroups: [admissionregistration.k8s.io]
    resources: [validatingwebhookconfigurations, mutatingwebhookconfigurations]
    verbs: [create]
  - apiGroups: [admissionregistration.k8s.io]
    resources: [validatingwebhookconfigurations, mutatingwebhookconfigurations]
    resourceNames: [{webhooks}]
    verbs: [patch]
  # With AMLOPS_PEERING (more than one replica): Kopf's leader election watches the
  # ClusterKopfPeering and writes its keep-alive into it.
  - apiGroups: [kopf.dev]
    resources: [clusterkopfpeerings]
    verbs: [list, watch, patch]
"""
)
WEBHOOK_CONFIGURATION = f"amlops-operator.{API_GROUP}"  # amlops.handlers.admission's name

# Kopf's peering resource (the CRD of its documentation, cluster-wide): the replicas'
# keep-alives, from which the alive one with the highest priority serves.
PEERING_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {
        "name": "clusterkopfpeerings.kopf.dev",
        "labels": {"app.kubernetes.io/part-of": "amlops"},
    },
    "spec": {
        "scope": "Cluster",
        "group": "kopf.dev",
        "names": {
            "kind": "ClusterKopfPeering",
            "plural": "clusterkopfpeerings",
            "singular": "clusterkopfpeering",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                },
            }
        ],
    },
}


def render(schemas_directory: Path | None = None) -> dict[str, str]:
    """File name -> content of what `make crds` writes: every operator kind's CRD, the
    operator's ClusterRole (which grants exactly those resources) and the kustomization that
    lists them (``operator/deploy/kustomization.yaml`` includes the folder)."""
    schemas = read_schemas(schemas_directory or schemas_dir())
    files: dict[str, str] = {}
    for kind in CRD_KINDS:
        crd = build_crd(kind, schemas[kind])
        text = yaml.safe_dump(crd, sort_keys=False, width=100)
        header = HEADER.format(name=KINDS[kind].schema_file)
        files[f"{API_GROUP}_{crd_of(kind).plural}.yaml"] = header + text
    # the kinds the operator only reads (WorkspaceBinding) are listed and watched, not patched
    indexed = [crd_of(kind).plural for kind in CRD_KINDS if KINDS[kind].engine == "tenancy"]
    plurals = [crd_of(kind).plural for kind in CRD_KINDS if crd_of(kind).plural not in indexed]
    files["clusterrole.yaml"] = CLUSTER_ROLE.format(
        group=API_GROUP,
        resources=", ".join(plurals),
        statuses=", ".join(f"{p}/status" for p in plurals),
        applied=", ".join(crd_of(kind).plural for kind in ORDER),
        indexed=", ".join(indexed),
        webhooks=WEBHOOK_CONFIGURATION,
    )
    peering = yaml.safe_dump(PEERING_CRD, sort_keys=False, width=100)
    files["kopf.dev_clusterkopfpeerings.yaml"] = GENERATED + peering
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = GENERATED + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write(Path(sys.argv[1] if len(sys.argv) > 1 else "operator/deploy/crds")):
        print(path)
