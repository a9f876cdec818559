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
from amlops.kinds import KINDS, ORDER
from amlops.kinds.base import Crd
from amlops.paths import schemas_dir

VERSION = "v1alpha1"
_READY = '.status.conditions[?(@.type=="Ready")]'

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
    """The custom resource of one of the operator's kinds (``ORDER``)."""
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
    printer = [
        {"name": "Workspace", "type": "string", "jsonPath": ".spec.workspace"},
        *(dict(column) for column in crd.columns),
        {"name": "Ready", "type": "string", "jsonPath": f"{_READY}.status"},
        {"name": "Reason", "type": "string", "jsonPath": f"{_READY}.reason"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
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
  # Kopf watches the CRDs so that resources installed after the operator are served too.
  - apiGroups: [apiextensions.k8s.io]
    resources: [customresourcedefinitions]
    verbs: [list, watch]
  # An Event on every condition transition.
  - apiGroups: [""]
    resources: [events]
    verbs: [create]
  # Endpoint keys: server-side applied into a Secret the Endpoint owns (an apply that creates
  # is authorized as create and patch). Never get/list/watch: the operator cannot read any
  # Secret of the cluster, its own included.
  - apiGroups: [""]
    resources: [secrets]
    verbs: [create, patch]
"""
)


def render(schemas_directory: Path | None = None) -> dict[str, str]:
    """File name -> content of what `make crds` writes: every operator kind's CRD, the
    operator's ClusterRole (which grants exactly those resources) and the kustomization that
    lists them (``operator/deploy/kustomization.yaml`` includes the folder)."""
    schemas = read_schemas(schemas_directory or schemas_dir())
    files: dict[str, str] = {}
    for kind in ORDER:
        crd = build_crd(kind, schemas[kind])
        text = yaml.safe_dump(crd, sort_keys=False, width=100)
        header = HEADER.format(name=KINDS[kind].schema_file)
        files[f"{API_GROUP}_{crd_of(kind).plural}.yaml"] = header + text
    plurals = [crd_of(kind).plural for kind in ORDER]
    files["clusterrole.yaml"] = CLUSTER_ROLE.format(
        group=API_GROUP,
        resources=", ".join(plurals),
        statuses=", ".join(f"{p}/status" for p in plurals),
    )
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
