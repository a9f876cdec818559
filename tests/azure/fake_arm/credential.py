"""A credential that hands out unsigned JWTs with the audience the caller asked for.

azure-ai-ml decodes tokens (without verifying them) to read ``aud``, ``oid`` and ``tid``; the
fake ARM server checks that a bearer token is present and has the ARM audience. Nothing here is
a secret: the signature part is a fixed placeholder.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

from azure.core.credentials import AccessToken

TENANT_ID = "00000000-0000-0000-0000-00000000a11d"
OBJECT_ID = "00000000-0000-0000-0000-0000000000b1"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(audience: str, *, lifetime: int = 3600, **claims: Any) -> str:
    """An unsigned-looking JWT (``alg`` RS256, placeholder signature) for ``audience``."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "aud": audience,
        "iss": f"https://sts.localhost/{TENANT_ID}/",
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "oid": OBJECT_ID,
        "tid": TENANT_ID,
        "sub": OBJECT_ID,
        "appid": "amlops-tests",
        "upn": "tester@amlops.localhost",
    }
    payload.update(claims)
    header = {"alg": "RS256", "typ": "JWT", "kid": "amlops-test"}
    parts = [json.dumps(header).encode(), json.dumps(payload).encode(), b"not-a-signature"]
    return ".".join(_b64url(p) for p in parts)


def decode_jwt(token: str) -> dict[str, Any]:
    """The claims of a token made by :func:`make_jwt` (no verification)."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims


def audience_of(scope: str) -> str:
    """``https://x/.default`` -> ``https://x`` (the SDK appends ``/.default`` to a resource)."""
    resource = scope.removesuffix(".default")
    return resource.rstrip("/")


class FakeCredential:
    """``azure.core.credentials.TokenCredential`` for the fake cloud; counts its calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requested_scopes: list[tuple[str, ...]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        with self._lock:
            self.requested_scopes.append(tuple(scopes))
        audience = audience_of(scopes[0]) if scopes else "https://localhost"
        expires_on = int(time.time()) + 3600
        return AccessToken(make_jwt(audience), expires_on)

    def close(self) -> None:
        """Nothing to release (TokenCredential protocol)."""

    def __enter__(self) -> FakeCredential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
