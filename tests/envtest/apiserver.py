"""Real Kubernetes API server for tests, the envtest way.

Runs a real ``etcd`` and ``kube-apiserver`` on loopback (no kubelet, no
controller-manager, no scheduler, no Docker), like controller-runtime's
envtest.  Binaries come from ``$KUBEBUILDER_ASSETS`` or are built from the Go
module proxy by ``tests/envtest/build.sh`` into a cache outside the repository.

If ``$AMLOPS_TEST_KUBECONFIG`` is set, :func:`start_cluster` returns an
:class:`ExternalCluster` that just uses that kubeconfig (no processes).

Typical use::

    with start_cluster() as cluster:
        api = cluster.api_client()
        ...

What is *not* there (no controller-manager): no garbage collection of
ownerReferences, namespaces stay ``Terminating`` after deletion, no
ServiceAccount token controller and no default ServiceAccount per namespace
(the ``ServiceAccount`` admission plugin is disabled so Pods can be created),
no Pod ever runs.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from tests.pki import new_key, self_signed_ca, signed_leaf

__all__ = [
    "BUILD_SCRIPT",
    "SERVICE_ACCOUNT_ISSUER",
    "Cluster",
    "EnvtestAPIServer",
    "EnvtestError",
    "ExternalCluster",
    "apply_object",
    "find_binaries",
    "start_cluster",
    "unique_name",
]

BUILD_SCRIPT = Path(__file__).resolve().parent / "build.sh"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
ENV_EXTERNAL_KUBECONFIG = "AMLOPS_TEST_KUBECONFIG"
ENV_ASSETS = "KUBEBUILDER_ASSETS"
DEFAULT_FIELD_MANAGER = "amlops-envtest"
_KEEP_HINT = "; set AMLOPS_ENVTEST_KEEP=1 to keep it"


class EnvtestError(RuntimeError):
    """The test control plane could not be built, started or used."""


# --------------------------------------------------------------------------- binaries


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / b, os.X_OK) for b in ("kube-apiserver", "etcd"))


def find_binaries(*, build: bool = True) -> Path:
    """Return the directory holding ``kube-apiserver`` and ``etcd``.

    Uses ``$KUBEBUILDER_ASSETS`` when it holds both binaries; otherwise runs
    ``build.sh`` (fast when the cache is warm; progress goes to stderr) and
    returns the directory it prints.
    """
    assets = os.environ.get(ENV_ASSETS)
    if assets and _has_binaries(Path(assets)):
        return Path(assets)
    if not build:
        raise EnvtestError(f"${ENV_ASSETS} is not set to a directory with kube-apiserver and etcd")
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=None,  # progress lines go straight to the terminal / CI log
        text=True,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise EnvtestError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode}")
    directory = Path(lines[-1])
    if not _has_binaries(directory):
        raise EnvtestError(f"{BUILD_SCRIPT} printed {directory}, which lacks kube-apiserver/etcd")
    return directory


# --------------------------------------------------------------------------- PKI


def _free_ports(count: int) -> list[int]:
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class _PKI:
    """A throw-away CA plus the serving, admin and service-account keys."""

    def __init__(self, directory: Path) -> None:
        now = datetime.datetime.now(datetime.UTC)
        not_before = now - datetime.timedelta(hours=1)
        not_after = now + datetime.timedelta(days=7)

        ca_cert, ca_key = self_signed_ca("amlops-envtest-ca", not_before, not_after)

        def leaf(
            subject: x509.Name,
            usage: x509.ObjectIdentifier,
            sans: Sequence[x509.GeneralName] = (),
        ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
            return signed_leaf(ca_cert, ca_key, subject, usage, not_before, not_after, sans)

        serving_cert, serving_key = leaf(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
            [
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                x509.DNSName("localhost"),
                x509.DNSName("kubernetes"),
                x509.DNSName("kubernetes.default"),
                x509.DNSName("kubernetes.default.svc"),
                x509.DNSName("kubernetes.default.svc.cluster.local"),
            ],
        )
        admin_cert, admin_key = leaf(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
                ]
            ),
            x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
        )
        sa_key = new_key()

        directory.mkdir(parents=True, exist_ok=True)
        self.ca_cert_pem = _cert_pem(ca_cert)
        self.admin_cert_pem = _cert_pem(admin_cert)
        self.admin_key_pem = _key_pem(admin_key)
        self.ca_cert = directory / "ca.crt"
        self.serving_cert = directory / "apiserver.crt"
        self.serving_key = directory / "apiserver.key"
        self.admin_cert = directory / "admin.crt"
        self.admin_key = directory / "admin.key"
        self.sa_key = directory / "sa.key"
        self.sa_pub = directory / "sa.pub"
        files: dict[Path, bytes] = {
            self.ca_cert: self.ca_cert_pem,
            self.serving_cert: _cert_pem(serving_cert),
            self.serving_key: _key_pem(serving_key),
            self.admin_cert: self.admin_cert_pem,
            self.admin_key: self.admin_key_pem,
            self.sa_key: _key_pem(sa_key),
            self.sa_pub: sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }
        for path, data in files.items():
            path.write_bytes(data)
            path.chmod(0o600)


# --------------------------------------------------------------------------- kubeconfig helpers


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write_kubeconfig(
    path: Path,
    *,
    cluster: Mapping[str, Any],
    user: Mapping[str, Any],
    name: str,
    namespace: str | None = None,
) -> Path:
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": dict(cluster)}],
        "users": [{"name": name, "user": dict(user)}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def _current_cluster_entry(kubeconfig: Path) -> dict[str, Any]:
    """The ``cluster`` entry of the current context, with file paths made data."""
    doc = yaml.safe_load(kubeconfig.read_text()) or {}
    ctx_name = doc.get("current-context")
    contexts = {c["name"]: c.get("context", {}) for c in doc.get("contexts") or []}
    clusters = {c["name"]: c.get("cluster", {}) for c in doc.get("clusters") or []}
    if ctx_name not in contexts:
        raise EnvtestError(f"{kubeconfig}: no current-context")
    cluster = dict(clusters.get(contexts[ctx_name].get("cluster"), {}))
    if "server" not in cluster:
        raise EnvtestError(f"{kubeconfig}: the current context's cluster has no server")
    ca_file = cluster.pop("certificate-authority", None)
    if ca_file and "certificate-authority-data" not in cluster:
        ca_path = Path(ca_file)
        if not ca_path.is_absolute():
            ca_path = kubeconfig.parent / ca_path
        cluster["certificate-authority-data"] = _b64(ca_path.read_bytes())
    return cluster


# --------------------------------------------------------------------------- generic API helpers


def _resource_path(api_version: str, plural: str, name: str, namespace: str | None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    ns = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{ns}/{plural}/{name}"


def apply_object(
    api: Any,
    path: str,
    body: Mapping[str, Any],
    *,
    field_manager: str = DEFAULT_FIELD_MANAGER,
    force: bool = True,
) -> dict[str, Any]:
    """Server-side apply ``body`` at the object ``path`` (e.g.
    ``/apis/apiextensions.k8s.io/v1/customresourcedefinitions/foo.example.com``)
    with a raw ``ApiClient.call_api`` and return the resulting object."""
    query: list[tuple[str, str]] = [("fieldManager", field_manager)]
    if force:
        query.append(("force", "true"))
    resp = api.call_api(
        path,
        "PATCH",
        query_params=query,
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        body=dict(body),
        auth_settings=["BearerToken"],
        response_types_map={},
        _preload_content=False,
        _return_http_data_only=True,
    )
    return cast(dict[str, Any], json.loads(resp.data))


def _crd_documents(source: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    files = (
        [source]
        if source.is_file()
        else sorted(p for p in source.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    )
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if (
                isinstance(doc, dict)
                and doc.get("kind") == "CustomResourceDefinition"
                and str(doc.get("apiVersion", "")).startswith("apiextensions.k8s.io/")
            ):
                yield path, doc


# --------------------------------------------------------------------------- clusters


class Cluster(ABC):
    """Something with an admin kubeconfig; the envtest server or an external one."""

    @property
    @abstractmethod
    def kubeconfig_path(self) -> Path:
        """Admin kubeconfig (cluster-admin via ``system:masters``)."""

    @property
    def host(self) -> str:
        """The API server URL, e.g. ``https://127.0.0.1:40123``."""
        return str(_current_cluster_entry(self.kubeconfig_path)["server"])

    @property
    @abstractmethod
    def work_dir(self) -> Path:
        """A private directory for generated files (kubeconfigs...)."""

    def start(self) -> Cluster:
        return self

    def stop(self) -> None:
        return None

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- clients -------------------------------------------------------------

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A new ``kubernetes.client.ApiClient`` for ``kubeconfig`` (default:
        admin).  The caller owns it (``close()`` it or use ``with``)."""
        path = kubeconfig or self.kubeconfig_path
        return k8s_config.new_client_from_config(config_file=str(path), persist_config=False)

    # -- service accounts ----------------------------------------------------

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Sequence[str] = (),
    ) -> str:
        """Create namespace/ServiceAccount if missing and return a bound token
        from the TokenRequest API (no RBAC bindings are created)."""
        with self.api_client() as api:
            core = k8s.CoreV1Api(api)
            try:
                core.read_namespace(namespace)
            except ApiException as e:
                if e.status != 404:
                    raise
                try:
                    core.create_namespace(
                        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace))
                    )
                except ApiException as e2:
                    if e2.status != 409:
                        raise
            try:
                core.create_namespaced_service_account(
                    namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
                )
            except ApiException as e:
                if e.status != 409:
                    raise
            request = k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(
                    audiences=list(audiences),
                    expiration_seconds=expiration_seconds,
                )
            )
            resp = core.create_namespaced_service_account_token(name, namespace, request)
            return str(resp.status.token)

    def service_account_kubeconfig(
        self,
        namespace: str,
        name: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Sequence[str] = (),
        path: Path | None = None,
    ) -> Path:
        """Write a kubeconfig that authenticates as ServiceAccount
        ``namespace/name`` with a TokenRequest bearer token and return its path.

        The ServiceAccount (and namespace) is created if missing; it gets no
        RBAC permissions here - bind roles yourself."""
        token = self.service_account_token(
            namespace, name, expiration_seconds=expiration_seconds, audiences=audiences
        )
        target = path or self.work_dir / "kubeconfigs" / f"sa-{namespace}-{name}.yaml"
        return _write_kubeconfig(
            target,
            cluster=_current_cluster_entry(self.kubeconfig_path),
            user={"token": token},
            name=f"{namespace}-{name}",
            namespace=namespace,
        )

    # -- CRDs ----------------------------------------------------------------

    def install_crds(
        self,
        source: str | Path,
        *,
        timeout: float = 30.0,
        field_manager: str = DEFAULT_FIELD_MANAGER,
    ) -> list[str]:
        """Server-side apply every CRD in the YAML files of ``source`` (a
        directory, non-recursive, ``*.yaml``/``*.yml``; or a single file), wait
        until each is Established and served by discovery, and return the CRD
        names.  Non-CRD documents are ignored."""
        src = Path(source)
        docs = list(_crd_documents(src))
        if not docs:
            raise EnvtestError(f"no CustomResourceDefinition found in {src}")
        names: list[str] = []
        with self.api_client() as api:
            for path, doc in docs:
                name = str(doc.get("metadata", {}).get("name", ""))
                if not name:
                    raise EnvtestError(f"{path}: CRD without metadata.name")
                apply_object(
                    api,
                    _resource_path(
                        "apiextensions.k8s.io/v1", "customresourcedefinitions", name, None
                    ),
                    doc,
                    field_manager=field_manager,
                )
                names.append(name)
            ext = k8s.ApiextensionsV1Api(api)
            deadline = time.monotonic() + timeout
            for name in names:
                self._wait_crd(api, ext, name, deadline)
        return names

    @staticmethod
    def _wait_crd(api: Any, ext: Any, name: str, deadline: float) -> None:
        last = "not read yet"
        while True:
            crd = ext.read_custom_resource_definition(name)
            conds = {c.type: c for c in (crd.status.conditions or [])} if crd.status else {}
            established = conds.get("Established")
            if established is not None and established.status == "True":
                group = crd.spec.group
                plural = crd.spec.names.plural
                served = [v.name for v in crd.spec.versions if v.served]
                if all(_discovery_has(api, f"/apis/{group}/{v}", plural) for v in served):
                    return
                last = "established, not yet in discovery"
            else:
                last = (
                    "; ".join(f"{c.type}={c.status} ({c.message})" for c in conds.values())
                    or "no conditions"
                )
            if time.monotonic() > deadline:
                raise EnvtestError(f"CRD {name} not established in time: {last}")
            time.sleep(0.1)


def _discovery_has(api: Any, path: str, plural: str) -> bool:
    try:
        resp = api.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            response_types_map={},
            _preload_content=False,
            _return_http_data_only=True,
        )
    except ApiException:
        return False
    data = json.loads(resp.data)
    return any(r.get("name") == plural for r in data.get("resources", []))


class ExternalCluster(Cluster):
    """An already running cluster reached through a kubeconfig (no processes)."""

    def __init__(self, kubeconfig: str | Path) -> None:
        self._kubeconfig = Path(kubeconfig).expanduser().resolve()
        if not self._kubeconfig.is_file():
            raise EnvtestError(f"kubeconfig {self._kubeconfig} does not exist")
        self._work_dir: Path | None = None

    @property
    def kubeconfig_path(self) -> Path:
        return self._kubeconfig

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="amlops-external-"))
        return self._work_dir

    def stop(self) -> None:
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def __repr__(self) -> str:
        return f"ExternalCluster(kubeconfig={str(self._kubeconfig)!r})"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _pdeathsig_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive SIGKILL when its parent dies
    (Linux ``prctl(PR_SET_PDEATHSIG)``), so a killed test run leaves no
    apiserver behind.  ``None`` where unavailable or outside the main thread
    (the signal fires when the *forking thread* exits)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:  # pragma: no cover - runs in the child
        prctl(pr_set_pdeathsig, sigkill)

    return preexec


class EnvtestAPIServer(Cluster):
    """A real etcd + kube-apiserver on 127.0.0.1 with RBAC and TokenRequest.

    ``start()`` builds/locates the binaries, generates a CA, serving, admin
    (``CN=admin, O=system:masters``) and service-account keys in a temp dir,
    starts etcd and kube-apiserver on free loopback ports, waits for
    ``/readyz`` and writes an admin kubeconfig. ``stop()`` kills both and
    removes the temp dir. ``keep_dir=True`` (or ``$AMLOPS_ENVTEST_KEEP=1``)
    leaves the temp dir (logs, certs, etcd data) behind for debugging.
    """

    def __init__(
        self,
        *,
        binaries_dir: str | Path | None = None,
        start_timeout: float = 60.0,
        extra_apiserver_args: Sequence[str] = (),
        extra_etcd_args: Sequence[str] = (),
        keep_dir: bool | None = None,
    ) -> None:
        self._binaries_dir = Path(binaries_dir) if binaries_dir else None
        self.start_timeout = start_timeout
        self.extra_apiserver_args = list(extra_apiserver_args)
        self.extra_etcd_args = list(extra_etcd_args)
        self.keep_dir = (
            keep_dir if keep_dir is not None else os.environ.get("AMLOPS_ENVTEST_KEEP") == "1"
        )
        self._dir: Path | None = None
        self._etcd: subprocess.Popen[bytes] | None = None
        self._apiserver: subprocess.Popen[bytes] | None = None
        self._logs: list[IO[bytes]] = []
        self._kubeconfig: Path | None = None
        self._host: str | None = None
        self.etcd_url: str | None = None
        self.etcd_command: list[str] = []
        self.apiserver_command: list[str] = []

    # -- properties ------------------------------------------------------------

    def _require_started(self) -> Path:
        if self._dir is None:
            raise EnvtestError("the envtest API server is not running; call start()")
        return self._dir

    @property
    def kubeconfig_path(self) -> Path:
        self._require_started()
        assert self._kubeconfig is not None
        return self._kubeconfig

    @property
    def host(self) -> str:
        self._require_started()
        assert self._host is not None
        return self._host

    @property
    def work_dir(self) -> Path:
        return self._require_started()

    @property
    def ca_cert_path(self) -> Path:
        return self._require_started() / "pki" / "ca.crt"

    @property
    def apiserver_log_path(self) -> Path:
        return self._require_started() / "kube-apiserver.log"

    @property
    def etcd_log_path(self) -> Path:
        return self._require_started() / "etcd.log"

    @property
    def running(self) -> bool:
        return (
            self._apiserver is not None
            and self._apiserver.poll() is None
            and self._etcd is not None
            and self._etcd.poll() is None
        )

    def __repr__(self) -> str:
        return (
            f"EnvtestAPIServer(host={self._host!r}, dir={str(self._dir) if self._dir else None!r})"
        )

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> EnvtestAPIServer:
        if self._dir is not None:
            return self
        binaries = self._binaries_dir or find_binaries()
        if not _has_binaries(binaries):
            raise EnvtestError(f"{binaries} lacks kube-apiserver and/or etcd")
        last_error: EnvtestError | None = None
        for _attempt in range(3):  # retry only on port races
            atexit.register(self.stop)
            try:
                self._start_once(binaries)
                return self
            except _PortInUse as e:
                last_error = e
                self.stop()
            except BaseException:
                self.stop()  # honours keep_dir / $AMLOPS_ENVTEST_KEEP=1 for post-mortems
                raise
        assert last_error is not None
        raise last_error

    def _spawn(self, cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        log = log_path.open("ab")
        self._logs.append(log)
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal is handled by stop()
            preexec_fn=_pdeathsig_preexec(),
        )

    def _start_once(self, binaries: Path) -> None:
        work = Path(tempfile.mkdtemp(prefix="amlops-envtest-"))
        self._dir = work
        pki = _PKI(work / "pki")
        etcd_port, peer_port, api_port = _free_ports(3)
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"

        self.etcd_command = [
            str(binaries / "etcd"),
            "--name=envtest",
            f"--data-dir={work / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=envtest={peer_url}",
            "--initial-cluster-state=new",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
            *self.extra_etcd_args,
        ]
        self._etcd = self._spawn(self.etcd_command, work / "etcd.log")
        deadline = time.monotonic() + self.start_timeout
        self._wait_etcd(deadline)

        self._host = f"https://127.0.0.1:{api_port}"
        self.apiserver_command = [
            str(binaries / "kube-apiserver"),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--cert-dir={work / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            "--disable-admission-plugins=ServiceAccount",
            "--allow-privileged=true",
            "--profiling=false",
            *self.extra_apiserver_args,
        ]
        self._apiserver = self._spawn(self.apiserver_command, work / "kube-apiserver.log")
        self._wait_apiserver(pki, deadline)

        self._kubeconfig = _write_kubeconfig(
            work / "admin.kubeconfig",
            cluster={"server": self._host, "certificate-authority-data": _b64(pki.ca_cert_pem)},
            user={
                "client-certificate-data": _b64(pki.admin_cert_pem),
                "client-key-data": _b64(pki.admin_key_pem),
            },
            name="envtest",
        )

    def _check_alive(self, proc: subprocess.Popen[bytes] | None, what: str, log: Path) -> None:
        if proc is None or proc.poll() is None:
            return
        tail = _tail(log)
        err_cls = _PortInUse if "address already in use" in tail else EnvtestError
        raise err_cls(
            f"{what} exited with code {proc.returncode} during startup; "
            f"log tail ({log}{_KEEP_HINT}):\n{tail}"
        )

    def _wait_etcd(self, deadline: float) -> None:
        work = self._require_started()
        last = ""
        while True:
            self._check_alive(self._etcd, "etcd", work / "etcd.log")
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                    body = json.loads(resp.read())
                    if str(body.get("health")) == "true":
                        return
                    last = str(body)
            except (OSError, ValueError) as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise EnvtestError(
                    f"etcd at {self.etcd_url} not healthy after {self.start_timeout}s ({last}); "
                    f"log tail ({work / 'etcd.log'}{_KEEP_HINT}):\n{_tail(work / 'etcd.log')}"
                )
            time.sleep(0.1)

    def _wait_apiserver(self, pki: _PKI, deadline: float) -> None:
        work = self._require_started()
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        last = ""
        while True:
            self._check_alive(self._apiserver, "kube-apiserver", work / "kube-apiserver.log")
            self._check_alive(self._etcd, "etcd", work / "etcd.log")
            try:
                with urllib.request.urlopen(f"{self._host}/readyz", timeout=5, context=ctx) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except urllib.error.HTTPError as e:
                body = e.read().decode(errors="replace")
                failing = [ln[3:] for ln in body.splitlines() if ln.startswith("[-]")]
                last = f"HTTP {e.code}: " + ("; ".join(failing) or body[-500:])
            except OSError as e:
                last = str(e)
            if time.monotonic() > deadline:
                raise EnvtestError(
                    f"kube-apiserver at {self._host} not ready after {self.start_timeout}s "
                    f"(last /readyz: {last}); "
                    f"log tail ({work / 'kube-apiserver.log'}{_KEEP_HINT}):\n"
                    f"{_tail(work / 'kube-apiserver.log')}"
                )
            time.sleep(0.2)

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes] | None, grace: float = 10.0) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)

    def stop(self) -> None:
        """Stop kube-apiserver then etcd and delete the temp dir (idempotent)."""
        self._terminate(self._apiserver)
        self._terminate(self._etcd)
        self._apiserver = self._etcd = None
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self._dir is not None and not self.keep_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self._kubeconfig = None
        self._host = None
        atexit.unregister(self.stop)

    def __enter__(self) -> EnvtestAPIServer:
        return self.start()

    def __del__(self) -> None:  # last resort; never rely on it
        with contextlib.suppress(Exception):
            self._terminate(self._apiserver, grace=2)
            self._terminate(self._etcd, grace=2)


class _PortInUse(EnvtestError):
    pass


def start_cluster(**kwargs: Any) -> Cluster:
    """``ExternalCluster($AMLOPS_TEST_KUBECONFIG)`` if that is set, otherwise a
    started :class:`EnvtestAPIServer` (``kwargs`` go to its constructor).
    Use as a context manager or call ``stop()``."""
    external = os.environ.get(ENV_EXTERNAL_KUBECONFIG)
    if external:
        return ExternalCluster(external)
    return EnvtestAPIServer(**kwargs).start()


def unique_name(prefix: str = "t") -> str:
    """A DNS-1123 label usable as a namespace/object name in shared clusters."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
