"""The GitSource push receiver: a Git host's webhook triggers a sync at once (Flux's Receiver).

``POST /hook/NAMESPACE/NAME`` with the body signed by HMAC-SHA256 under the ``token`` of the
Secret the GitSource names in ``spec.receiver.secretRef``, in GitHub's header
(``X-Hub-Signature-256: sha256=HEX``) or the generic one (``X-Signature: sha256=HEX``, as
Flux's generic-hmac Receiver and GitLab/Gitea relays can send). A good signature patches the
GitSource's ``amlops.io/requestedAt`` annotation (Flux's ``reconcile.fluxcd.io/requestedAt``),
which the GitSource's update handler turns into a sync; the answer is 202.

What a caller without the key learns is nothing: an unknown GitSource, one without a receiver,
a missing Secret, a Secret without the label ``amlops.io/git-credentials: "true"`` (a
GitSource may name only Secrets made for it) and a wrong signature are all the same 401; the
signature is compared in constant time; a body over ``MAX_BODY`` is refused with 413 before it
is read. The key is read from the Secret per request (so a rotated key works at once) and never
logged.

Every replica serves the receiver (a Service spreads the pushes over them) while only the
peering leader runs the GitSource handlers, so the receiver learns which Secret a GitSource
names from the API, per request, cached for ``CACHE_S`` (``Lookup``), not from the handlers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kopf
from aiohttp import web
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from amlops import API_GROUP
from amlops.crds import VERSION
from amlops.handlers import runtime
from amlops.handlers.options import SETTINGS
from amlops.kinds import base, git_source
from amlops.kinds.git_source import CREDENTIALS_LABEL

log = logging.getLogger(__name__)

ANNOTATION_REQUESTED_AT = f"{API_GROUP}/requestedAt"
SECRET_KEY = "token"  # the Secret's key holding the HMAC key (Flux's Receiver uses it too)
MAX_BODY = 1024 * 1024  # GitHub caps webhook payloads at 25 MiB; a push event is far smaller
SIGNATURE_HEADERS = ("X-Hub-Signature-256", "X-Signature")
_PREFIX = "sha256="
CACHE_S = 10.0  # a burst of pushes costs one GET of the GitSource; a new receiver works soon
_CACHE_MAX = 1024  # names asked for; a flood of made-up ones empties it instead of growing it


class Lookup:
    """The Secret named by a GitSource's ``spec.receiver.secretRef``, read from the API (so a
    standby replica answers as the leader would), remembered for ``ttl`` seconds."""

    def __init__(self, ttl: float = CACHE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, str | None]] = {}

    def secret_of(self, api: Any, namespace: str, name: str) -> str | None:
        key = (namespace, name)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        secret = receiver_secret(api, namespace, name)
        with self._lock:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, secret)
        return secret


def receiver_secret(api: Any, namespace: str, name: str) -> str | None:
    """The Secret name in the GitSource's ``spec.receiver.secretRef``; None when there is no
    such GitSource or receiver (or the API cannot say: the push is refused, Git retries)."""
    try:
        body = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            API_GROUP, VERSION, namespace, "gitsources", name
        )
    except (ApiException, ValueError) as exc:  # ValueError: a name the client refuses
        status = getattr(exc, "status", None)
        if status != 404:
            log.warning("receiver: GitSource %s/%s unreadable (%s)", namespace, name, status)
        return None
    return git_source.receiver_secret(base.mapping(base.mapping(body).get("spec")))


def signature(key: bytes, body: bytes) -> str:
    return _PREFIX + hmac.new(key, body, hashlib.sha256).hexdigest()


def verified(key: bytes, body: bytes, headers: Any) -> bool:
    """Does one of the signature headers hold the body's HMAC-SHA256 under ``key``?"""
    expected = signature(key, body).encode()
    for header in SIGNATURE_HEADERS:
        given = headers.get(header)
        if given and hmac.compare_digest(expected, given.strip().lower().encode()):
            return True
    return False


def read_key(api: Any, namespace: str, secret: str) -> bytes | None:
    """The HMAC key, or None when the Secret or its key is missing (said in the log by name)."""
    try:
        obj = k8s.CoreV1Api(api).read_namespaced_secret(secret, namespace)
    except ApiException as exc:
        log.warning("receiver: Secret %s/%s unreadable (%s)", namespace, secret, exc.status)
        return None
    labels = (obj.metadata.labels if obj.metadata else None) or {}
    if labels.get(CREDENTIALS_LABEL) != "true":
        log.warning(
            "receiver: Secret %s/%s lacks the label %s=true", namespace, secret, CREDENTIALS_LABEL
        )
        return None
    raw = (obj.data or {}).get(SECRET_KEY)
    if not raw:
        log.warning("receiver: Secret %s/%s has no %r key", namespace, secret, SECRET_KEY)
        return None
    return base64.b64decode(raw)


def request_sync(api: Any, namespace: str, name: str, when: datetime) -> None:
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {"metadata": {"annotations": {ANNOTATION_REQUESTED_AT: stamp}}}
    k8s.CustomObjectsApi(api).patch_namespaced_custom_object(
        API_GROUP, VERSION, namespace, "gitsources", name, body
    )


def app(memo: kopf.Memo, lookup: Lookup | None = None) -> web.Application:
    """The receiver's aiohttp application; the Kubernetes calls run in threads."""
    hooks = lookup or Lookup()

    async def hook(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="body too large\n")
        body = await request.read()  # client_max_size bounds a body without a length too
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        api = runtime.of(memo).kube
        loop = asyncio.get_running_loop()
        secret = await loop.run_in_executor(None, hooks.secret_of, api, namespace, name)
        key = await loop.run_in_executor(None, read_key, api, namespace, secret) if secret else None
        if key is None or not verified(key, body, request.headers):
            log.info("receiver: refused a push for %s/%s", namespace, name)
            return web.Response(status=401, text="unauthorized\n")
        if request.headers.get("X-GitHub-Event") == "ping":
            return web.Response(status=200, text="pong\n")
        now = datetime.now(UTC)
        try:
            await loop.run_in_executor(None, request_sync, api, namespace, name, now)
        except ApiException as exc:
            log.warning("receiver: could not request a sync of %s/%s (%s)", namespace, name, exc)
            return web.Response(status=503, text="try again\n")
        log.info("receiver: sync of GitSource %s/%s requested", namespace, name)
        return web.Response(status=202, text="accepted\n")

    application = web.Application(client_max_size=MAX_BODY)
    application.router.add_post("/hook/{namespace}/{name}", hook)
    return application


@kopf.on.startup()
async def start_receiver(memo: kopf.Memo, **_: Any) -> None:
    if not SETTINGS.receiver_port:
        return
    runner = web.AppRunner(app(memo), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", SETTINGS.receiver_port).start()
    memo.receiver = runner
    log.info("receiver: listening on port %d", SETTINGS.receiver_port)


@kopf.on.cleanup()
async def stop_receiver(memo: kopf.Memo, **_: Any) -> None:
    runner = memo.get("receiver")
    if isinstance(runner, web.AppRunner):
        await runner.cleanup()
