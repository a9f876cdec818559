"""Endpoint keys: the Secret built for them, and when it is (not) written - pure."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from amlops.backends.base import EndpointKeys
from amlops.handlers.keys import build_secret, publish, revision
from amlops.handlers.objects import Resource
from amlops.reconcile.actions import Result
from amlops.reconcile.conditions import Outcome, Phase, build_status

KEYS = EndpointKeys("primary-key-0123456789", "secondary-key-0123456789")
URI = "http://127.0.0.1:5001/score"


class Kube:
    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []

    def call_api(self, path: str, method: str, **kwargs: Any) -> None:
        # no Secret yet: the first write creates it (keys.write_secret)
        assert method == "POST" and kwargs["header_params"]["Content-Type"] == "application/json"
        self.applied.append(kwargs["body"])


class Backend:
    def get_endpoint_keys(self, workspace: str, name: str) -> EndpointKeys:
        return KEYS


def endpoint(status: dict[str, Any] | None = None) -> Resource:
    return Resource.of(
        {
            "kind": "Endpoint",
            "metadata": {"name": "online", "namespace": "team", "uid": "uid-1", "generation": 1},
            "spec": {"workspace": "ws"},
            "status": status,
        }
    )


def result(message: str = f"serving at {URI}") -> Result:
    outcome = Outcome(Phase.READY, "Serving", message)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return Result((), build_status(outcome, 1, None, now, scoringUri=URI), outcome)


def test_secret_is_owned_by_the_endpoint_and_holds_keys_and_uri() -> None:
    secret = build_secret(endpoint(), KEYS, URI)
    assert secret["metadata"]["name"] == "online-keys"
    assert secret["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "amlops.io/v1alpha1",
            "kind": "Endpoint",
            "name": "online",
            "uid": "uid-1",
            "controller": True,
        }
    ]
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {
        "primaryKey": KEYS.primary,
        "secondaryKey": KEYS.secondary,
        "scoringUri": URI,
    }


def test_revision_changes_with_keys_or_uri_and_does_not_reveal_them() -> None:
    assert revision(KEYS, URI) != revision(EndpointKeys("a" * 22, KEYS.secondary), URI)
    assert revision(KEYS, URI) != revision(KEYS, URI + "x")
    assert KEYS.primary not in revision(KEYS, URI) and len(revision(KEYS, URI)) == 16


def test_published_once_then_only_when_keys_change() -> None:
    kube = Kube()
    out = publish(kube, Backend(), endpoint(), "ws", "online", "key", result())  # type: ignore[arg-type]
    assert len(kube.applied) == 1
    ref = out.status["keysSecret"]
    assert ref == {"name": "online-keys", "revision": revision(KEYS, URI)}
    assert KEYS.primary not in json.dumps(out.status)

    again = publish(kube, Backend(), endpoint(out.status), "ws", "online", "key", result())  # type: ignore[arg-type]
    assert len(kube.applied) == 1 and again.status["keysSecret"] == ref


def test_keys_quoted_by_a_message_are_scrubbed() -> None:
    leaky = result(f"backend said: bad key {KEYS.primary}")
    out = publish(Kube(), Backend(), endpoint(), "ws", "online", "key", leaky)  # type: ignore[arg-type]
    assert KEYS.primary not in json.dumps(out.status)


def test_no_secret_without_key_auth_or_before_the_endpoint_exists() -> None:
    kube = Kube()
    publish(kube, Backend(), endpoint(), "ws", "online", "aml_token", result())  # type: ignore[arg-type]
    outcome = Outcome(Phase.RECONCILING, "Progressing", "creating")
    early = Result((), {"conditions": []}, outcome)
    publish(kube, Backend(), endpoint(), "ws", "online", "key", early)  # type: ignore[arg-type]
    assert kube.applied == []
