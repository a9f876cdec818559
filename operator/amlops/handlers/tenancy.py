"""Tenancy: which namespaces may manage which workspace (``WorkspaceBinding``), and as whom.

The operator keeps every WorkspaceBinding of the cluster in a Kopf index (workspace -> the
bindings naming it), which Kopf fills before it runs any other handler, so a restart never
stalls a bound object for want of its binding. The rule (``refusal``): once a workspace has a
binding, or with ``AMLOPS_TENANCY=true`` for every workspace, an object may name it only from a
namespace holding a binding to it. The admission webhook denies anything else
(``tenancy.namespace-not-bound`` at ``spec.workspace``); the flow stalls an object that got in
before (a binding removed later, webhooks off) with ``NamespaceNotBound`` and writes nothing to
the backend; a removed binding stalls its namespace's objects at their next drift check.

A binding's identity holds a client id and a Secret's name, never a secret: the Secret is read
by name (``get``) when the backend for it is opened (``credential``), and its value goes only
to the Azure credential.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import kopf
from kubernetes import client as k8s

from amlops import API_GROUP
from amlops.crds import VERSION
from amlops.kinds import KINDS
from amlops.kinds.workspace_binding import (
    KIND_NAME,
    RULE_NOT_BOUND,
    SECRET_KEY,
    Binding,
    Identity,
    parse,
)

if TYPE_CHECKING:
    from amlops.handlers.runtime import Runtime

# Kopf passes the index to every handler as the keyword argument of this name.
INDEX = "workspace_bindings"
IDENTITY_REASON = "IdentityNotReady"  # a binding's Secret cannot be read (retried)
Bindings = Mapping[str, Collection[Binding]]  # kopf.Index[str, Binding]


def bindings_of(kwargs: Mapping[str, Any]) -> Bindings:
    """The index from a handler's keyword arguments; empty where Kopf passes none (a test
    calling the flow directly)."""
    index = kwargs.get(INDEX)
    return index if isinstance(index, Mapping) else {}


def binding_for(bindings: Bindings, namespace: str, workspace: str) -> Binding | None:
    """The binding of ``namespace`` to ``workspace`` (the first by name when there are two)."""
    mine = [b for b in bindings.get(workspace, ()) if b.namespace == namespace]
    return min(mine, key=lambda b: b.name) if mine else None


def refusal(bindings: Bindings, namespace: str, workspace: str, enforced: bool) -> str | None:
    """Why an object in ``namespace`` may not manage ``workspace``; None when it may. The
    message names neither other tenants nor identities."""
    if binding_for(bindings, namespace, workspace) is not None:
        return None
    if not enforced and not bindings.get(workspace):
        return None  # nobody claimed the workspace and tenancy is not switched on
    return (
        f"namespace {namespace!r} has no WorkspaceBinding to workspace {workspace!r}: a "
        "platform administrator binds a namespace to a workspace (and its Azure identity) "
        "with a WorkspaceBinding in that namespace"
    )


def denial(message: str) -> str:
    """The admission answer, in the webhook's ``rule at field: message`` shape."""
    return f"{RULE_NOT_BOUND} at spec.workspace: {message}"


def acting(rt: Runtime, bindings: Bindings, namespace: str, workspace: str) -> Runtime:
    """``rt`` with the backend that acts as the identity of ``namespace``'s binding to
    ``workspace`` (opened on first use); ``rt`` itself without a binding, or with the local
    backend."""
    found = binding_for(bindings, namespace, workspace)
    if found is None or rt.backends is None:
        return rt
    backend = rt.backends.get(workspace, found.identity)
    return rt if backend is rt.backend else replace(rt, backend=backend)


def credential(identity: Identity, kube: Any) -> Any:
    """The Azure credential a binding names: its client secret (read from its Secret in the
    binding's namespace) or workload identity (the operator's federated token exchanged for
    the binding's client id). The secret goes to the credential only."""
    from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

    tenant = identity.tenant_id or os.environ.get("AZURE_TENANT_ID", "")
    if identity.secret:
        where = identity.namespace
        secret = k8s.CoreV1Api(kube).read_namespaced_secret(identity.secret, where)
        raw = (secret.data or {}).get(SECRET_KEY)
        if not raw:
            raise ValueError(f"Secret {where}/{identity.secret} has no key {SECRET_KEY!r}")
        value = base64.b64decode(raw).decode("utf-8")
        return ClientSecretCredential(tenant, identity.client_id, value)
    return WorkloadIdentityCredential(tenant_id=tenant or None, client_id=identity.client_id)


def register() -> None:
    """The index of every WorkspaceBinding (list and watch only: the operator never writes
    a binding)."""
    crd = KINDS[KIND_NAME].crd
    assert crd is not None

    # Kopf calls it with keyword arguments only (all of them, every time).
    def index(**kwargs: Any) -> dict[str, Binding]:
        binding = parse(str(kwargs["namespace"]), str(kwargs["name"]), kwargs["spec"])
        return {} if binding is None else {binding.workspace: binding}

    kopf.index(API_GROUP, VERSION, crd.plural, id=INDEX)(index)
