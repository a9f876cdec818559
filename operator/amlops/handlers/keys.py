"""Endpoint keys go to a Secret owned by the Endpoint (or ServerlessEndpoint), never to status,
logs or Events.

The Secret is server-side applied (field manager ``amlops-operator``) only when the keys or the
scoring URI changed; status records a short digest of them (``keysSecret.revision``) to know,
so a reconcile with nothing new makes no request for it. The operator needs only ``create`` and
``patch`` on Secrets: it never reads one, so it cannot read the cluster's other Secrets.

A Secret of that name the object did not create is never taken over (an ownerReference would
have Kubernetes delete it, unrelated keys included, with the object): the Secret is created
(``create``, which fails when one exists), and one that exists is written only when its
controller ownerReference is the object's uid, which a JSON patch whose only operation tests
it finds out without reading the Secret. Otherwise the object stalls with
``KeysSecretConflict`` and the Secret is left as it is. An Endpoint may name its Secret
(``spec.keysSecretName``) when ``NAME-keys`` is taken.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException

from amlops import API_GROUP, API_VERSION
from amlops.backends.base import Backend, EndpointKeys
from amlops.handlers.objects import Resource
from amlops.handlers.status import redact_status
from amlops.reconcile.actions import Result
from amlops.reconcile.conditions import Outcome, Phase, build_status

FIELD_MANAGER = "amlops-operator"
LABEL_ENDPOINT = f"{API_GROUP}/endpoint"


def secret_name(obj: Resource) -> str:
    """``spec.keysSecretName`` (an Endpoint may name its Secret), else ``NAME-keys``."""
    named = obj.spec.get("keysSecretName")
    return named if isinstance(named, str) and named else f"{obj.name}-keys"


def revision(keys: EndpointKeys, scoring_uri: str) -> str:
    digest = hashlib.sha256(f"{keys.primary}\n{keys.secondary}\n{scoring_uri}".encode())
    return digest.hexdigest()[:16]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def build_secret(obj: Resource, keys: EndpointKeys, scoring_uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(obj),
            "namespace": obj.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": FIELD_MANAGER,
                LABEL_ENDPOINT: obj.name,
            },
            # Owned by the Endpoint: Kubernetes deletes it with the Endpoint.
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": obj.kind,
                    "name": obj.name,
                    "uid": obj.uid,
                    "controller": True,
                }
            ],
        },
        "type": "Opaque",
        "data": {
            "primaryKey": _b64(keys.primary),
            "secondaryKey": _b64(keys.secondary),
            "scoringUri": _b64(scoring_uri),
        },
    }


class SecretApplyError(Exception):
    """The API server refused the Secret; the message is short and carries no key."""


class KeysSecretConflictError(SecretApplyError):
    """A Secret of that name exists and is not the object's: it is left alone."""


def _call(kube: Any, path: str, method: str, content_type: str, body: Any, **query: str) -> None:
    kube.call_api(
        path,
        method,
        query_params=[("fieldManager", FIELD_MANAGER), *query.items()],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
        response_types_map={},
        _preload_content=False,  # the answer holds the keys: never parse, keep or log it
        _return_http_data_only=True,
    )


def _where(secret: Mapping[str, Any]) -> str:
    meta = secret["metadata"]
    return f"Secret {meta['namespace']}/{meta['name']}"


# (method, content type) of the requests about a Secret
_APPLY = ("PATCH", "application/apply-patch+yaml")
_CREATE = ("POST", "application/json")
_TEST = ("PATCH", "application/json-patch+json")


def _send(
    kube: Any,
    secret: Mapping[str, Any],
    doing: str,
    request: tuple[str, str],
    body: Any,
    *,
    tolerated: frozenset[int] = frozenset(),
    **query: str,
) -> int | None:
    """One ``request`` about the Secret (a POST: to its collection): None when it is done, the
    status of a refusal in ``tolerated``; any other refusal raises SecretApplyError, which says
    what it was ``doing`` (never the answer: it may hold the keys)."""
    method, content_type = request
    meta = secret["metadata"]
    path = f"/api/v1/namespaces/{meta['namespace']}/secrets"
    if method != "POST":
        path = f"{path}/{meta['name']}"
    try:
        _call(kube, path, method, content_type, body, **query)
    except ApiException as exc:
        if exc.status in tolerated:
            return int(exc.status)
        raise SecretApplyError(f"{doing} {_where(secret)}: {exc.status} {_message(exc)}") from None
    except OSError as exc:
        raise SecretApplyError(f"{doing} {_where(secret)}: {exc}") from None
    return None


def apply_secret(kube: Any, secret: Mapping[str, Any]) -> None:
    """Server-side apply of a Secret known to be the object's (``write_secret`` checks)."""
    _send(kube, secret, "applying", _APPLY, dict(secret), force="true")


def _create(kube: Any, secret: Mapping[str, Any]) -> bool:
    """Create the Secret; False when one of that name exists already."""
    refused = _send(kube, secret, "creating", _CREATE, dict(secret), tolerated=frozenset({409}))
    return refused is None


def _owned(kube: Any, secret: Mapping[str, Any]) -> bool | None:
    """Whether the existing Secret's controller is the object (its ownerReference's uid, which
    no other object has); None when there is no such Secret. A JSON patch whose only operation
    is a ``test`` changes nothing and needs no ``get``: the API server answers 422 when the
    test fails (or the Secret has no ownerReference)."""
    (reference,) = secret["metadata"]["ownerReferences"]
    test = [{"op": "test", "path": "/metadata/ownerReferences/0/uid", "value": reference["uid"]}]
    refused = _send(kube, secret, "checking", _TEST, test, tolerated=frozenset({404, 422}))
    return None if refused == 404 else refused is None


def write_secret(kube: Any, secret: Mapping[str, Any], known: bool) -> None:
    """Create the object's Secret, or update it when it is the object's; raise
    KeysSecretConflictError for one that is not. ``known``: the object wrote it before (its
    status says so), so it most likely exists: checked first rather than created."""
    owned = _owned(kube, secret) if known else None
    if owned is None:
        if _create(kube, secret):
            return
        owned = _owned(kube, secret)
    if not owned:
        raise KeysSecretConflictError(
            f"{_where(secret)} exists and is not this object's (its controller ownerReference is "
            "not this object): it is left as it is. Delete or rename that Secret, or name another "
            "(an Endpoint's spec.keysSecretName)"
        )
    apply_secret(kube, secret)


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body)["message"])
    except (TypeError, ValueError, KeyError):
        return str(exc.reason)


# How a kind's keys are read: (backend, workspace, endpoint name) -> keys
KeysOf = Callable[[Backend, str, str], EndpointKeys]


def online_keys(backend: Backend, workspace: str, name: str) -> EndpointKeys:
    return backend.get_endpoint_keys(workspace, name)


def serverless_keys(backend: Backend, workspace: str, name: str) -> EndpointKeys:
    return backend.get_serverless_endpoint_keys(workspace, name)


def publish(
    kube: Any,
    backend: Backend,
    obj: Resource,
    workspace: str,
    endpoint: str,
    auth_mode: str,
    result: Result,
    keys_of: KeysOf = online_keys,
) -> Result:
    """Put the endpoint's keys (read by ``keys_of``, as the kind reads them) into its Secret
    when they changed; returns the result with ``status.keysSecret`` and every message
    scrubbed of the keys."""
    uri = result.status.get("scoringUri")
    if auth_mode != "key" or not isinstance(uri, str) or not uri:
        return result
    keys = keys_of(backend, workspace, endpoint)
    ref = {"name": secret_name(obj), "revision": revision(keys, uri)}
    written = (obj.status or {}).get("keysSecret")
    secrets = [keys.primary, keys.secondary]
    if written != ref:
        try:
            write_secret(kube, build_secret(obj, keys, uri), known=written is not None)
        except KeysSecretConflictError as exc:
            return _conflict(obj, result, str(exc), secrets)
    status = redact_status({**result.status, "keysSecret": ref}, secrets)
    return replace(result, status=status)


def _conflict(obj: Resource, result: Result, message: str, secrets: list[str]) -> Result:
    """The endpoint serves, but its keys have nowhere to go: Stalled until the Secret's name is
    free (the drift timer tries again)."""
    outcome = Outcome(Phase.STALLED, "KeysSecretConflict", message)
    kept = {
        k: v
        for k, v in result.status.items()
        if k not in ("conditions", "observedGeneration", "keysSecret")
    }
    status = build_status(outcome, obj.generation, obj.status, datetime.now(UTC), **kept)
    return replace(result, status=redact_status(status, secrets), outcome=outcome)
