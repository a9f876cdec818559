"""Each namespace acts as its WorkspaceBinding's Azure identity: the operator's ``Backends``
opens one azureml backend per (workspace, identity), and the fake ARM sees every request of
a namespace carry that namespace's token (its ``oid``/``appid`` claims are the binding's
client id). The local backend has no identities: one backend serves every namespace."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.core.credentials import AccessToken

from amlops.backends import BackendOptions, Backends, open_backend
from amlops.backends.azureml.settings import ENV_WORKSPACES
from amlops.kinds.workspace_binding import Identity, parse
from tests.azure.backend_support import OWNER, WS
from tests.azure.conftest import AzureEnv
from tests.azure.fake_arm.credential import FakeCredential, audience_of, decode_jwt, make_jwt

pytestmark = pytest.mark.slow

CLIENT_A = "aaaaaaaa-0000-0000-0000-00000000000a"
CLIENT_B = "bbbbbbbb-0000-0000-0000-00000000000b"


class IdentityCredential(FakeCredential):
    """The token a binding's identity gets: its client id as ``oid`` and ``appid``."""

    def __init__(self, client_id: str) -> None:
        super().__init__()
        self.client_id = client_id

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        super().get_token(*scopes, **kwargs)
        audience = audience_of(scopes[0]) if scopes else "https://localhost"
        token = make_jwt(audience, oid=self.client_id, appid=self.client_id, sub=self.client_id)
        return AccessToken(token, int(time.time()) + 3600)


def identity(namespace: str, client: str) -> Identity:
    found = parse(namespace, "bind", {"workspace": WS, "identity": {"clientId": client}})
    assert found is not None
    return found.identity


@pytest.fixture
def seen(azure_env: AzureEnv, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """(path, oid) of every request the fake ARM authorised."""
    fake = azure_env.fake
    recorded: list[tuple[str, str]] = []
    lock = threading.Lock()
    authorized = fake._authorized

    def recording(request: web.Request) -> bool:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        with lock:
            recorded.append((request.path, str(decode_jwt(token).get("oid", ""))))
        return authorized(request)

    monkeypatch.setattr(fake, "_authorized", recording)
    yield recorded


@pytest.fixture
def backends(azure_env: AzureEnv) -> Iterator[tuple[Backends, list[IdentityCredential]]]:
    env = {
        ENV_WORKSPACES: json.dumps(
            {
                WS: {
                    "subscription": azure_env.subscription_id,
                    "resourceGroup": azure_env.resource_group,
                    "name": azure_env.workspace,
                }
            }
        )
    }
    options = BackendOptions(
        owner=OWNER,
        env=env,
        client_kwargs={"cloud": azure_env.cloud_name, "cloud_metadata": azure_env.cloud_metadata},
    )
    own = open_backend(
        "azureml", BackendOptions(**{**vars(options), "credential": azure_env.credential})
    )
    made: list[IdentityCredential] = []

    def credential(who: Identity) -> IdentityCredential:
        made.append(IdentityCredential(who.client_id))
        return made[-1]

    opened = Backends("azureml", options, own, credential)
    yield opened, made
    opened.close()


def test_two_namespaces_requests_carry_their_own_identity(
    backends: tuple[Backends, list[IdentityCredential]], seen: list[tuple[str, str]]
) -> None:
    cache, made = backends
    team_a = cache.get(WS, identity("team-a", CLIENT_A))
    team_b = cache.get(WS, identity("team-b", CLIENT_B))
    assert team_a is not team_b
    assert cache.get(WS, identity("team-a", CLIENT_A)) is team_a  # cached, not opened again
    assert cache.get(WS, Identity()) is cache.default.backend  # the operator's own
    assert [c.client_id for c in made] == [CLIENT_A, CLIENT_B]  # one credential per identity

    assert team_a.latest_model_version(WS, "model-of-a") is None
    assert team_b.latest_model_version(WS, "model-of-b") is None
    of_a = {oid for path, oid in seen if "model-of-a" in path}
    of_b = {oid for path, oid in seen if "model-of-b" in path}
    assert of_a == {CLIENT_A}
    assert of_b == {CLIENT_B}


def test_a_client_secret_identity_is_the_secret_of_its_namespace() -> None:
    spec = {"workspace": WS, "identity": {"clientId": CLIENT_A, "secretRef": {"name": "sp"}}}
    a, b = parse("team-a", "bind", spec), parse("team-b", "bind", spec)
    assert a is not None and b is not None
    # one client id, two Secrets: two backends (each namespace's Secret is its own)
    assert a.identity.key != b.identity.key
    # workload identity is the client id's wherever it is bound
    assert identity("team-a", CLIENT_A).key == identity("team-b", CLIENT_A).key


def test_the_local_backend_ignores_identities(tmp_path: Path) -> None:
    options = BackendOptions(state_dir=tmp_path / "state")
    opened = open_backend("local", options)

    def never(who: Identity) -> Any:
        raise AssertionError(f"the local backend asked for a credential for {who.client_id}")

    cache = Backends("local", options, opened, never)
    try:
        assert cache.get(WS, identity("team-a", CLIENT_A)) is opened.backend
        assert cache.get(WS, identity("team-b", CLIENT_B)) is opened.backend
    finally:
        cache.close()
