"""Policy at admission: Kopf's validating and mutating webhooks for every operator kind.

* **validate** (CREATE, UPDATE of the spec): the same core as ``amlops validate`` on the one
  object - its kind's JSON Schema, the references one object can be checked for (a pipeline's
  bindings, a registry component that cannot be checked offline), and the policies, with the
  checkout's ``amlops.yaml`` (disabled and re-graded rules, exceptions) and its Workspaces
  (their ``environment`` decides which rules apply). An error denies the request with the
  finding (``rule-id at field: message``); warnings come back as admission warnings
  (``kubectl`` prints them). An update that leaves the spec alone (metadata, the operator's
  own finalizer release) and an object being deleted are never refused. An object a GitSource
  applies (``amlops.io/source``, by the operator's own identity as the ``amlops-gitsource``
  field manager) gets its schema checked only: the GitSource validated its revision with that
  revision's ``amlops.yaml``, which may differ from the checkout's.
* **protect** (DELETE of a Model): refused while a Ready Endpoint in the namespace serves the
  model, unless the Model carries ``amlops.io/force-delete: "true"``.
* **mutate** (CREATE): adds the operator's finalizer, so Kopf need not PATCH it in before the
  first reconcile (a create then costs one status write and one Event). Its failure policy is
  Ignore: without the webhook, Kopf adds the finalizer itself, as before.

Failure policies: only a CREATE is refused while no replica answers (``failurePolicy: Fail``,
``AMLOPS_WEBHOOK_FAIL_CLOSED=false`` lets it in); UPDATE, the Model DELETE check and the mutation
are ``Ignore``, so a configuration left behind by a crashed or uninstalled operator never blocks
releasing a finalizer or deleting a namespace. Every webhook is persistent: Kopf leaves it in the
configuration when one replica stops, as the other replica still serves it.

Off unless ``AMLOPS_WEBHOOKS=true`` (``amlops.handlers.options``). The server is Kopf's
``WebhookServer``; its certificate is either mounted (``AMLOPS_WEBHOOK_CERT_DIR``: cert-manager's
``tls.crt``/``tls.key``/``ca.crt``, re-read when renewed) or generated here with
``cryptography`` into ``STATE_DIR/webhook/`` (a CA and a serving certificate for the host
names, kept and reused, renewed a month before expiry). Kopf writes the webhooks, with the CA
bundle, into the configurations named ``WEBHOOK_CONFIGURATION`` (``settings.admission.managed``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from amlops import API_GROUP
from amlops.core.assets import parse_model_ref
from amlops.core.config import RepoConfig, load_config
from amlops.core.credentials import secret_literals
from amlops.core.findings import Finding, redact
from amlops.core.manifests import Manifest, load_tree
from amlops.core.pki import common_name, self_signed_ca, signed_leaf
from amlops.core.policy import PolicySet, configured_policies
from amlops.core.refs import declared
from amlops.core.schemas import SchemaSet, load_schemas
from amlops.crds import VERSION, WEBHOOK_CONFIGURATION
from amlops.gitops.apply import SOURCE as ANNOTATION_SOURCE
from amlops.handlers import runtime, tenancy
from amlops.handlers.git_source import FIELD_MANAGER as GITSOURCE_MANAGER
from amlops.handlers.objects import Resource
from amlops.handlers.options import FINALIZER, SETTINGS, Settings
from amlops.kinds import KINDS
from amlops.kinds.base import Outside
from amlops.reconcile.registry import RECONCILERS

ANNOTATION_FORCE_DELETE = f"{API_GROUP}/force-delete"
# What one object can be checked for: the other ``ref.*`` rules need the objects it names
# (its workspace, models, compute), which the API server does not hand a webhook.
SINGLE_OBJECT_REFS = frozenset({"ref.binding", "ref.component-unchecked", "ref.scope"})
CONTEXT_TTL_S = 30.0  # re-read the checkout's amlops.yaml and Workspaces at most this often
CERT_DAYS = 365
CA_DAYS = 3650
RENEW_BEFORE = datetime.timedelta(days=30)


# -- what the checkout adds to one object -------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    """The repository around an object, as ``amlops validate FILE`` sees it: the config, the
    rules it configures, and its Workspaces (they decide a rule's environments)."""

    config: RepoConfig
    policies: PolicySet
    workspaces: tuple[Manifest, ...]
    schemas: SchemaSet

    @classmethod
    def read(cls, root: Path) -> Checkout:
        if root.is_dir():
            config = load_config(root)
            loaded = load_tree([root], root=root, exclude=config.excludes)
            workspaces = tuple(m for m in loaded.manifests if m.kind == "Workspace")
        else:
            config, workspaces = RepoConfig(root), ()
        policies, _ = configured_policies(config)  # config problems are `amlops validate`'s
        return cls(config, policies, workspaces, load_schemas())


_cache: tuple[float, Path, Checkout] | None = None
_cache_lock = threading.Lock()


def checkout(root: Path) -> Checkout:
    global _cache
    with _cache_lock:
        now = time.monotonic()
        if _cache is None or _cache[1] != root or now - _cache[0] > CONTEXT_TTL_S:
            _cache = (now, root, Checkout.read(root))
        return _cache[2]


def review(obj: Resource, repo: Checkout, schema_only: bool = False) -> list[Finding]:
    """The findings of ``amlops validate`` about ``obj`` alone (``schema_only``: its schema's);
    a message quoting a secret value of the spec masks it, as ``amlops validate`` does."""
    m = obj.manifest
    found = list(repo.schemas.check(m)) if schema_only else _findings(m, repo)
    return redact(list(dict.fromkeys(found)), secret_literals(m.body))


def _findings(m: Manifest, repo: Checkout) -> list[Finding]:
    findings = list(repo.schemas.check(m))
    if any(f.is_error for f in findings):
        return findings  # the policies assume the schema's shape
    everything = [*repo.workspaces, m]
    known = declared(everything, Outside(None, repo.config.external))
    findings.extend(
        f
        for f in KINDS[m.kind].references(m, known)
        if not f.rule.startswith("ref.") or f.rule in SINGLE_OBJECT_REFS
    )
    ids = {p.id for p in repo.policies.policies}
    findings.extend(
        f
        for f in repo.policies.evaluate([m], everything)
        if not (
            f.rule in ids and any(e.matches(f, repo.config.root) for e in repo.config.exceptions)
        )
    )
    return findings


def describe(f: Finding) -> str:
    """One finding as the denial message or warning: ``rule at field: message``."""
    where = f" at {f.field}" if f.field else ""
    return f"{f.rule}{where}: {f.message}"


def spec_changed(
    operation: str | None, old: Mapping[str, Any] | None, new: Mapping[str, Any]
) -> bool:
    if operation != "UPDATE" or old is None:
        return True
    return (old.get("spec") or {}) != (new.get("spec") or {})


def from_source(
    body: Mapping[str, Any],
    userinfo: Mapping[str, Any] | None,
    operator: Callable[[], str | None],
) -> bool:
    """Whether a GitSource of this operator applies ``body``: stamped with its source, applied
    as the GitSource's field manager, and sent by the operator's own identity (``operator()``,
    asked only then). Anyone else's object with the annotation is checked in full."""
    meta = body.get("metadata") or {}
    if not (meta.get("annotations") or {}).get(ANNOTATION_SOURCE):
        return False
    managers = meta.get("managedFields") or []
    if not any(isinstance(e, Mapping) and e.get("manager") == GITSOURCE_MANAGER for e in managers):
        return False
    username = (userinfo or {}).get("username")
    return bool(username) and username == operator()


_identity: str | None = None


def identity(kube: Any) -> str | None:
    """The user name the API server knows the operator by (a SelfSubjectReview, which every
    authenticated user may make), asked once; None while it cannot say: nothing is skipped."""
    global _identity
    if _identity is None:
        try:
            answer: Any = k8s.AuthenticationV1Api(kube).create_self_subject_review(
                k8s.V1SelfSubjectReview()
            )
            _identity = str(answer.status.user_info.username or "") or None
        except ApiException:
            return None
    return _identity


def validate(
    body: Mapping[str, Any],
    operation: str | None,
    old: Mapping[str, Any] | None,
    warnings: list[str],
    root: Path,
    bindings: tenancy.Bindings | None = None,
    tenancy_on: bool = False,
    applied_by_source: bool = False,
) -> None:
    """Deny (``kopf.AdmissionError``) on the first error finding; warnings to ``warnings``.
    An object whose namespace may not manage its workspace is denied first (tenancy). An
    object a GitSource applies (``applied_by_source``) is checked against its schema only:
    the policies depend on the repository's ``amlops.yaml``, and the GitSource checked them
    with its revision's own."""
    if (body.get("metadata") or {}).get("deletionTimestamp") or not spec_changed(
        operation, old, body
    ):
        return  # never block the operator's own metadata patches, nor a finalizer's release
    obj = Resource.of(body)
    refused = tenancy.refusal(bindings or {}, obj.namespace, obj.workspace, tenancy_on)
    if refused is not None:
        raise kopf.AdmissionError(tenancy.denial(refused), code=403)
    findings = review(obj, checkout(root), schema_only=applied_by_source)
    errors = [f for f in findings if f.is_error]
    warnings.extend(describe(f) for f in findings if not f.is_error)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise kopf.AdmissionError(describe(errors[0]) + more, code=422)


# -- deleting a served Model --------------------------------------------------------------------


def serves(endpoint: Mapping[str, Any], model: Resource) -> bool:
    """Whether ``endpoint`` (a raw Endpoint object) is Ready and one of its deployments names
    the model (name, and the version unless it asks for the latest) in the same workspace."""
    if (endpoint.get("metadata") or {}).get("deletionTimestamp"):
        return False  # going too (a namespace being deleted): it no longer holds the model
    status = endpoint.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
        if isinstance(c, Mapping)
    )
    asset = model.spec.get("model") or {}
    if not ready or not isinstance(asset, Mapping):
        return False
    ep = Resource.of(endpoint)
    if ep.workspace != model.workspace:
        return False
    version = str(asset.get("version", "")) or None
    for _, value in KINDS["Endpoint"].models(ep.spec):
        ref = parse_model_ref(value) if isinstance(value, str) else None
        if ref is None or ref.registry is not None or ref.name != asset.get("name"):
            continue
        if ref.version is None or version is None or ref.version == version:
            return True
    return False


def serving_endpoints(model: Resource, endpoints: Iterable[Mapping[str, Any]]) -> list[str]:
    return sorted(
        str((e.get("metadata") or {}).get("name", "")) for e in endpoints if serves(e, model)
    )


def protect(old: Mapping[str, Any], kube: Any, warnings: list[str] | None = None) -> None:
    model = Resource.of(old)
    if model.annotations.get(ANNOTATION_FORCE_DELETE, "").lower() == "true":
        return
    crd = KINDS["Endpoint"].crd
    assert crd is not None
    try:
        listed: Any = k8s.CustomObjectsApi(kube).list_namespaced_custom_object(
            API_GROUP, VERSION, model.namespace, crd.plural
        )
    except ApiException as exc:
        # fail open, as the webhook does: a delete (a namespace's) must never get stuck
        if warnings is not None:
            warnings.append(f"admission.model-in-use not checked: Endpoints: HTTP {exc.status}")
        return
    serving = serving_endpoints(model, listed.get("items") or [])
    if serving:
        raise kopf.AdmissionError(
            f"admission.model-in-use: Model {model.name!r} is served by the Ready Endpoint(s) "
            f"{', '.join(serving)}; change them first, or annotate the Model "
            f'{ANNOTATION_FORCE_DELETE}="true" to delete it anyway',
            code=409,
        )


# -- the finalizer at admission -----------------------------------------------------------------


def add_finalizer(body: Mapping[str, Any], patch: kopf.Patch) -> None:
    present = list((body.get("metadata") or {}).get("finalizers") or [])
    if FINALIZER not in present:
        patch.metadata["finalizers"] = [*present, FINALIZER]


# -- the webhook server and its certificate -------------------------------------------------------


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    port: int = 443

    @classmethod
    def parse(cls, text: str) -> Service:
        where, _, port = text.partition(":")
        namespace, _, name = where.partition("/")
        if not namespace or not name:
            raise ValueError(f"AMLOPS_WEBHOOK_SERVICE={text!r}: write NAMESPACE/NAME[:PORT]")
        return cls(namespace, name, int(port) if port else 443)

    @property
    def hostnames(self) -> list[str]:
        base = f"{self.name}.{self.namespace}.svc"
        return [base, f"{base}.cluster.local"]


class ServiceWebhookServer(kopf.WebhookServer):
    """Kopf's server, announced to the API server as a Service (``service:`` client config)
    instead of a URL: the way a webhook in the cluster is reached."""

    def __init__(self, service: Service, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for config in super().__call__(fn):
            out = kopf.WebhookClientConfig(
                service={
                    "namespace": self.service.namespace,
                    "name": self.service.name,
                    "port": self.service.port,
                    "path": (self.path or "").rstrip("/"),
                }
            )
            if config.get("caBundle"):
                out["caBundle"] = config["caBundle"]
            yield out


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path
    ca: Path


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _san(name: str) -> x509.GeneralName:
    return x509.IPAddress(ipaddress.ip_address(name)) if _is_ip(name) else x509.DNSName(name)


def _still_good(files: CertFiles, hostnames: list[str], now: datetime.datetime) -> bool:
    if not all(p.is_file() for p in (files.cert, files.key, files.ca)):
        return False
    try:
        cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in sans.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hostnames}
    fresh = min(cert.not_valid_after_utc, ca.not_valid_after_utc) - now > RENEW_BEFORE
    return fresh and wanted <= have and cert.issuer == ca.subject


def self_signed(directory: Path, hostnames: list[str]) -> CertFiles:
    """A CA and a serving certificate for ``hostnames`` in ``directory`` (private keys 0600),
    reused while they cover the names and are a month or more from expiry."""
    files = CertFiles(directory / "tls.crt", directory / "tls.key", directory / "ca.crt")
    now = datetime.datetime.now(datetime.UTC)
    if _still_good(files, hostnames, now):
        return files
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = now - datetime.timedelta(minutes=5)
    ca, ca_key = self_signed_ca(
        "amlops-operator webhook CA", start, now + datetime.timedelta(days=CA_DAYS), path_length=0
    )
    cert, key = signed_leaf(
        ca,
        ca_key,
        common_name(next((h for h in hostnames if not _is_ip(h)), hostnames[0])),
        ExtendedKeyUsageOID.SERVER_AUTH,
        start,
        now + datetime.timedelta(days=CERT_DAYS),
        [_san(h) for h in hostnames],
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # the CA's key is not kept: a renewal makes a new CA, and Kopf puts its bundle in place
    for path, data, mode in (
        (files.key, key_pem, 0o600),
        (files.cert, cert.public_bytes(pem), 0o644),
        (files.ca, ca.public_bytes(pem), 0o644),
    ):
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        tmp.replace(path)
    return files


def _reachable(addr: str) -> str:
    """The address to call a server listening on ``addr`` at: loopback for "every interface"."""
    if not addr or addr == "0.0.0.0":
        return "127.0.0.1"
    return "::1" if addr == "::" else addr


def webhook_server(settings: Settings) -> kopf.WebhookServer:
    """Kopf's webhook server as the settings say: mounted or generated certificate, reached
    by URL (``AMLOPS_WEBHOOK_HOST``, default the listening address) or through a Service."""
    service = Service.parse(settings.webhook_service) if settings.webhook_service else None
    addr = settings.webhook_addr
    host = settings.webhook_host or _reachable(addr)
    if settings.webhook_cert_dir:
        cert_dir = Path(settings.webhook_cert_dir)
        files = CertFiles(cert_dir / "tls.crt", cert_dir / "tls.key", cert_dir / "ca.crt")
    else:
        names = service.hostnames if service else [host]
        files = self_signed(settings.state_dir / "webhook", list(dict.fromkeys(names)))
    options: dict[str, Any] = {
        "addr": addr,
        "port": settings.webhook_port,
        "host": host,
        "certfile": files.cert,
        "pkeyfile": files.key,
        "cafile": files.ca if files.ca.is_file() else None,
    }
    if service is not None:
        return ServiceWebhookServer(service, **options)
    return kopf.WebhookServer(**options)


def configure_admission(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    kopf_settings.admission.server = webhook_server(settings)
    kopf_settings.admission.managed = WEBHOOK_CONFIGURATION


# -- registration ---------------------------------------------------------------------------------


def register(settings: Settings = SETTINGS) -> bool:
    """The webhooks for every operator kind (``amlops.reconcile.registry``), when enabled.
    Kopf refuses to start with admission handlers and no server, hence nothing when off."""
    if not settings.webhooks:
        return False

    @kopf.on.startup()
    def start_webhooks(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure_admission(settings, SETTINGS)

    def on_validate(**kwargs: Any) -> None:
        validate(
            kwargs["body"],
            kwargs.get("operation"),
            kwargs.get("old"),
            kwargs["warnings"],
            SETTINGS.source_root,
            tenancy.bindings_of(kwargs),
            SETTINGS.tenancy,
            applied_by_source=from_source(
                kwargs["body"],
                kwargs.get("userinfo"),
                lambda: identity(runtime.of(kwargs["memo"]).kube),
            ),
        )

    def on_mutate(**kwargs: Any) -> None:
        add_finalizer(kwargs["body"], kwargs["patch"])

    def on_delete(**kwargs: Any) -> None:
        protect(kwargs["old"], runtime.of(kwargs["memo"]).kube, kwargs["warnings"])

    for name in RECONCILERS:
        crd = KINDS[name].crd
        assert crd is not None, f"{name} has no custom resource"
        resource = (API_GROUP, VERSION, crd.plural)
        kind = name.lower()
        # persistent: a replica that stops leaves them to the other; only a CREATE may fail
        # closed, so a left-behind configuration never blocks a finalizer's release or a delete
        create_open = not settings.webhook_fail_closed
        hooks: list[tuple[Callable[..., Any], str, str, bool, Callable[..., None]]] = [
            (kopf.on.validate, f"validate-{kind}", "CREATE", create_open, on_validate),
            (kopf.on.validate, f"validate-update-{kind}", "UPDATE", True, on_validate),
            (kopf.on.mutate, f"finalizer-{kind}", "CREATE", True, on_mutate),
        ]
        if name == "Model":
            hooks.append((kopf.on.validate, "protect-model", "DELETE", True, on_delete))
        for decorator, hook_id, operation, ignore_failures, handler in hooks:
            decorator(
                *resource,
                id=hook_id,
                operations=[operation],
                persistent=True,
                ignore_failures=ignore_failures,
            )(handler)
    return True
