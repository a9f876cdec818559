"""Endpoint keys go to a Secret owned by the Endpoint (or ServerlessEndpoint), never to status,
logs or Events.

The Secret is server-side applied (field manager ``amlops-operator``) only when the keys or the
scoring URI changed; status records a short digest of them (``keysSecret.revision``) to know,
so a reconcile with nothing new makes no request for it. The operator needs only ``create`` and
``patch`` on Secrets: it never reads one, so it cannot read the cluster's other Secrets.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from kubernetes.client.rest import ApiException

from amlops import API_GROUP, API_VERSION
from amlops.backends.base import Backend, EndpointKeys
from amlops.handlers.objects import Resource
from amlops.handlers.status import redact_status
from amlops.reconcile.actions import Result

FIELD_MANAGER = "amlops-operator"
LABEL_ENDPOINT = f"{API_GROUP}/endpoint"


def secret_name(endpoint: str) -> str:
    return f"{endpoint}-keys"


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
            "name": secret_name(obj.name),
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


def apply_secret(kube: Any, secret: Mapping[str, Any]) -> None:
    meta = secret["metadata"]
    where = f"Secret {meta['namespace']}/{meta['name']}"
    try:
        kube.call_api(
            f"/api/v1/namespaces/{meta['namespace']}/secrets/{meta['name']}",
            "PATCH",
            query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            header_params={
                "Content-Type": "application/apply-patch+yaml",
                "Accept": "application/json",
            },
            body=dict(secret),
            auth_settings=["BearerToken"],
            response_types_map={},
            _preload_content=False,  # the answer holds the keys: never parse, keep or log it
            _return_http_data_only=True,
        )
    except ApiException as exc:
        raise SecretApplyError(f"applying {where}: {exc.status} {_message(exc)}") from None
    except OSError as exc:
        raise SecretApplyError(f"applying {where}: {exc}") from None


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
    ref = {"name": secret_name(obj.name), "revision": revision(keys, uri)}
    if (obj.status or {}).get("keysSecret") != ref:
        apply_secret(kube, build_secret(obj, keys, uri))
    status = redact_status({**result.status, "keysSecret": ref}, [keys.primary, keys.secondary])
    return replace(result, status=status)
