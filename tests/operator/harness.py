"""Running the real operator (``amlops operator``, a child process) and talking to the API
server as a user would (kubectl-like calls with the admin client)."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from amlops import API_GROUP
from amlops.crds import VERSION, WEBHOOK_CONFIGURATION
from amlops.kinds import KINDS
from tests.envtest.apiserver import Cluster, apply_object, start_cluster, unique_name
from tests.operator.proxy import Proxy, Record

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "operator" / "deploy"
# every amlops kind the API server serves, by the plural its CRD is generated with
PLURALS = {kind: crd.plural for kind, k in KINDS.items() if (crd := k.crd) is not None}
# the shipped RBAC the operator runs with (and the namespace of its ServiceAccount)
RBAC_FILES = (
    "namespace.yaml",
    "serviceaccount.yaml",
    "crds/clusterrole.yaml",
    "clusterrolebinding.yaml",
)
# production intervals: the benches measure the operator as it ships
PRODUCTION_ENV = {
    "AMLOPS_DRIFT_INTERVAL": "300",
    "AMLOPS_DRIFT_IDLE": "60",
    "AMLOPS_RETRY_BASE": "5",
    "AMLOPS_RETRY_MAX": "300",
}
T = TypeVar("T")
SCORE_PY = textwrap.dedent(
    """\
    import json, os

    def init():
        global WEIGHTS
        root = os.environ["AZUREML_MODEL_DIR"]
        for folder, _, files in os.walk(root):
            if "weights.txt" in files:
                WEIGHTS = open(os.path.join(folder, "weights.txt")).read().strip()

    def run(raw):
        return {"echo": json.loads(raw), "weights": WEIGHTS}
    """
)
# `amlops` exactly as the console script runs it: `[*AMLOPS, "operator", ...]`
AMLOPS = (sys.executable, "-c", "import sys; from amlops.cli import main; sys.exit(main())")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None], *, timeout: float = 30.0, every: float = 0.1, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something truthy; fail the test with ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or probe}; last: {last}")


# -- the operator process --------------------------------------------------------------------


@dataclass
class OperatorProcess:
    """``amlops operator`` as its own process, so that it can be SIGKILLed like a pod."""

    env: dict[str, str]
    log_path: Path
    liveness_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    receiver_port: int = field(default_factory=free_port)  # the GitSource push receiver
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self, timeout: float = 60.0, argv: list[str] | None = None) -> None:
        """``amlops operator`` (or ``argv``) with this operator's environment."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {
            **self.env,
            "AMLOPS_LIVENESS": f"http://127.0.0.1:{self.liveness_port}/healthz",
            "AMLOPS_METRICS_PORT": str(self.metrics_port),
            "AMLOPS_RECEIVER_PORT": str(self.receiver_port),
        }
        log = self.log_path.open("ab")
        log.write(f"--- start {self.starts + 1}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            argv or [*AMLOPS, "operator", "--log-format=json"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        wait_for(self._alive, timeout=timeout, every=0.1, what="the operator's liveness endpoint")

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the operator exited with {self.proc.returncode}:\n{self.tail()}")
        try:
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> int | None:
        """SIGTERM, as Kubernetes stops a pod; Kopf exits gracefully."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL the operator and what it started (its process group): an OOM-killed pod."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return str(resp.read().decode())

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            metric, _, rest = key.partition("{")
            got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
            if metric == name and got == want:
                return float(value)
        return 0.0

    def tail(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out


# -- the API, as a user -----------------------------------------------------------------------


def body(kind: str, name: str, spec: Mapping[str, Any], **meta: Any) -> dict[str, Any]:
    """An amlops object as a user writes it."""
    return {
        "apiVersion": f"{API_GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name, **meta},
        "spec": dict(spec),
    }


class Kube:
    """kubectl-like helpers over the admin client (these requests bypass the proxy)."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.custom = k8s.CustomObjectsApi(api)
        self.core = k8s.CoreV1Api(api)

    def create_namespace(self, name: str) -> None:
        self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))

    def new_namespace(self, prefix: str) -> str:
        """A namespace of a name no other test uses; its name."""
        name = unique_name(prefix)
        self.create_namespace(name)
        return name

    def create(
        self,
        namespace: str,
        kind: str,
        name: str,
        spec: Mapping[str, Any],
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = self.custom.create_namespaced_custom_object(
            API_GROUP,
            VERSION,
            namespace,
            PLURALS[kind],
            body(kind, name, spec, annotations=dict(annotations or {})),
        )
        return out

    def get(self, namespace: str, kind: str, name: str) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = self.custom.get_namespaced_custom_object(
                API_GROUP, VERSION, namespace, PLURALS[kind], name
            )
            return out
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch(
        self, namespace: str, kind: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        out: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            API_GROUP, VERSION, namespace, PLURALS[kind], name, dict(body)
        )
        return out

    def delete(self, namespace: str, kind: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            API_GROUP, VERSION, namespace, PLURALS[kind], name
        )

    def events(self, namespace: str, name: str) -> list[Any]:
        listed = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        )
        return sorted(listed.items, key=lambda e: (e.event_time or e.first_timestamp, e.reason))

    def wait(
        self,
        namespace: str,
        kind: str,
        name: str,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 30.0,
        what: str = "",
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            obj = self.get(namespace, kind, name)
            return obj if obj is not None and predicate(obj) else None

        return wait_for(probe, timeout=timeout, what=f"{kind} {namespace}/{name} {what}")

    def wait_gone(self, namespace: str, kind: str, name: str, timeout: float = 30.0) -> None:
        wait_for(
            lambda: self.get(namespace, kind, name) is None,
            timeout=timeout,
            what=f"{kind} {namespace}/{name} to be deleted",
        )


def condition(obj: Mapping[str, Any], kind: str = "Ready") -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def phase(obj: Mapping[str, Any]) -> tuple[str, str]:
    """(Ready status, reason), e.g. ("True", "Registered")."""
    ready = condition(obj)
    return str(ready.get("status", "")), str(ready.get("reason", ""))


def is_ready(obj: Mapping[str, Any]) -> bool:
    return phase(obj)[0] == "True" and (obj.get("status") or {}).get("observedGeneration") == obj[
        "metadata"
    ].get("generation")


def reason_is(*reasons: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda obj: phase(obj)[1] in reasons


# -- deploy files ------------------------------------------------------------------------------

_PATHS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims", True),
    "Service": ("/api/v1", "services", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    "ClusterKopfPeering": ("/apis/kopf.dev/v1", "clusterkopfpeerings", False),
}


def install(cluster: Cluster) -> None:
    """The CRDs and the shipped RBAC, as ``kubectl apply`` would."""
    cluster.install_crds(DEPLOY / "crds")
    with cluster.api_client() as api:
        for doc in deploy_documents(*RBAC_FILES):
            apply_object(api, object_path(doc), doc)


@contextmanager
def installed_cluster() -> Iterator[Cluster]:
    """A fresh API server with the CRDs and the shipped RBAC; stopped afterwards."""
    cluster = start_cluster()
    try:
        install(cluster)
        yield cluster
    finally:
        cluster.stop()


def dry_run_apply(api: Any, path: str, doc: Mapping[str, Any], manager: str = "amlops-test") -> Any:
    """Server-side apply with ``dryRun=All`` as ``manager``: the API server validates (and
    admits) ``doc`` and keeps nothing; the raw response, ``ApiException`` on a refusal."""
    return api.call_api(
        path,
        "PATCH",
        query_params=[("fieldManager", manager), ("dryRun", "All"), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml"},
        body=dict(doc),
        auth_settings=["BearerToken"],
        response_types_map={},
        _preload_content=False,
    )


def write_checkout(root: Path) -> Path:
    """The files of a "Git checkout" the operator's objects name: a tiny model and a scoring
    script."""
    (root / "models" / "tiny").mkdir(parents=True)
    (root / "models" / "tiny" / "weights.txt").write_text("tiny-1\n")
    (root / "src" / "score").mkdir(parents=True)
    (root / "src" / "score" / "score.py").write_text(SCORE_PY)
    return root


def deploy_documents(*files: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in files:
        docs.extend(d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d)
    return docs


def object_path(doc: Mapping[str, Any]) -> str:
    prefix, plural, namespaced = _PATHS[doc["kind"]]
    meta = doc["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{prefix}{ns}/{plural}/{meta['name']}"


def model_spec(
    path: str = "models/tiny", version: str | None = "1", name: str = "tiny", **extra: Any
) -> dict[str, Any]:
    model: dict[str, Any] = {"name": name, "path": path}
    if version is not None:
        model["version"] = version
    return {"workspace": "ws", "model": model, **extra}


class BackendView:
    """The operator's local backend, opened read-mostly from the test process (SQLite in WAL
    mode takes a second process), to see what the operator did - or to cause drift."""

    def __init__(self, op: OperatorProcess) -> None:
        from amlops.backends.local.backend import LocalBackend

        self.backend = LocalBackend(op.env["AMLOPS_STATE_DIR"])

    def versions(self, name: str, workspace: str = "ws") -> list[str]:
        return [v.version for v in self.backend.list_model_versions(workspace, name)]

    def close(self) -> None:
        self.backend.close()


# -- identities and proxies ----------------------------------------------------------------


def ca_of(cluster: Cluster) -> bytes:
    """The API server's CA from the admin kubeconfig (inline data or a file next to it)."""
    doc = yaml.safe_load(cluster.kubeconfig_path.read_text())
    clusters = {c["name"]: c["cluster"] for c in doc["clusters"]}
    ctx = {c["name"]: c["context"] for c in doc["contexts"]}[doc["current-context"]]
    entry = clusters[ctx["cluster"]]
    if "certificate-authority-data" in entry:
        return base64.b64decode(entry["certificate-authority-data"])
    ca = Path(entry["certificate-authority"])
    return (ca if ca.is_absolute() else cluster.kubeconfig_path.parent / ca).read_bytes()


def token_of(kubeconfig: Path) -> str:
    doc = yaml.safe_load(kubeconfig.read_text())
    return str(doc["users"][0]["user"]["token"])


def proxied_kubeconfig(path: Path, proxy: Proxy, token: str, namespace: str) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "proxy", "cluster": {"server": proxy.url}}],
        "users": [{"name": "proxy", "user": {"token": token}}],
        "contexts": [
            {
                "name": "proxy",
                "context": {"cluster": "proxy", "user": "proxy", "namespace": namespace},
            }
        ],
        "current-context": "proxy",
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


def new_proxy(cluster: Cluster) -> Proxy:
    return Proxy(cluster.host, ca_of(cluster)).start()


def operator_env(
    kubeconfig: Path, state_dir: Path, source_root: Path, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AMLOPS_", "KUBECONFIG"))}
    env.update(
        {
            "KUBECONFIG": str(kubeconfig),
            "AMLOPS_STATE_DIR": str(state_dir),
            "AMLOPS_SOURCE_ROOT": str(source_root),
            # Short intervals, so that drift and retries show within a test.
            "AMLOPS_DRIFT_INTERVAL": "2",
            "AMLOPS_DRIFT_IDLE": "1",
            "AMLOPS_RETRY_BASE": "0.5",
            "AMLOPS_RETRY_MAX": "2",
            "AMLOPS_WORKERS": "4",
            "AMLOPS_SOURCE_TICK": "1",  # a GitSource's interval is looked at every second
            "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        }
    )
    env.update(extra)
    return env


def operator_kubeconfig(
    cluster: Cluster, proxy: Proxy, path: Path, namespace: str = "amlops-system"
) -> Path:
    """A kubeconfig at ``path`` for the operator's ServiceAccount, through ``proxy``."""
    sa = cluster.service_account_kubeconfig("amlops-system", "amlops-operator")
    return proxied_kubeconfig(path, proxy, token_of(sa), namespace)


def operator_process(
    cluster: Cluster, proxy: Proxy, work: Path, source_root: Path, **env: str
) -> OperatorProcess:
    """An operator, not started yet, as the shipped ServiceAccount behind ``proxy`` at the
    suite's intervals (``env`` added); its kubeconfig, state directory and log are in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    kubeconfig = operator_kubeconfig(cluster, proxy, work / "kubeconfig")
    return OperatorProcess(
        operator_env(kubeconfig, work / "state", source_root, **env), work / "log"
    )


def webhook_env() -> dict[str, str]:
    """Webhooks on, served on a free loopback port."""
    return {
        "AMLOPS_WEBHOOKS": "true",
        "AMLOPS_WEBHOOK_ADDR": "127.0.0.1",
        "AMLOPS_WEBHOOK_PORT": str(free_port()),
    }


def webhook_configurations(kube: Kube) -> tuple[Any, Any]:
    """The validating and the mutating webhook configuration Kopf registered."""
    admission = k8s.AdmissionregistrationV1Api(kube.api)
    return (
        admission.read_validating_webhook_configuration(WEBHOOK_CONFIGURATION),
        admission.read_mutating_webhook_configuration(WEBHOOK_CONFIGURATION),
    )


def delete_webhook_configurations(kube: Kube) -> None:
    """What Kopf registered (it keeps them when it stops), if anything."""
    admission = k8s.AdmissionregistrationV1Api(kube.api)
    for delete in (
        admission.delete_validating_webhook_configuration,
        admission.delete_mutating_webhook_configuration,
    ):
        try:
            delete(WEBHOOK_CONFIGURATION)
        except ApiException as exc:
            if exc.status != 404:
                raise


def refuses(kube: Kube, namespace: str = "default", path: str = "models/tiny") -> bool:
    """The API server calls the validating webhook: a dry-run create breaking a policy is
    refused with the rule's id."""
    probe = body("Model", "probe", model_spec(path, version=None))
    try:
        kube.custom.create_namespaced_custom_object(
            API_GROUP, VERSION, namespace, "models", probe, dry_run="All"
        )
    except ApiException as exc:
        return exc.status != 404 and "model.version-pinned" in str(exc.body)
    return False


def wait_for_webhooks(kube: Kube) -> None:
    """Until the API server calls a running operator's validating webhook."""
    wait_for(lambda: refuses(kube), timeout=60, every=0.5, what="the validating webhook")


@contextmanager
def webhook_operator(
    cluster: Cluster, kube: Kube, operator: OperatorProcess, source_root: Path, work: Path
) -> Iterator[tuple[OperatorProcess, Proxy]]:
    """An operator of its own serving the webhooks behind its own counting proxy, once the API
    server calls them; the suite's ``operator`` is stopped meanwhile (it would handle the
    objects too), and the webhook configurations are deleted afterwards."""
    operator.stop()
    proxy = new_proxy(cluster)
    op = operator_process(cluster, proxy, work, source_root, **webhook_env())
    try:
        op.start()
        wait_for_webhooks(kube)
        yield op, proxy
    finally:
        op.stop()
        delete_webhook_configurations(kube)
        proxy.stop()
        operator.start()


@contextmanager
def production_operator(work: Path, **env: str) -> Iterator[tuple[Cluster, Proxy, OperatorProcess]]:
    """For the benches: a fresh API server with the CRDs and the shipped RBAC, and the operator
    at its production intervals (``env`` added) as its ServiceAccount behind a counting proxy;
    its checkout is ``work/src``, its state ``work/state``, its log ``work/operator.log``."""
    with installed_cluster() as cluster:
        proxy = new_proxy(cluster)
        kubeconfig = operator_kubeconfig(cluster, proxy, work / "kubeconfig", "default")
        options = operator_env(kubeconfig, work / "state", work / "src", **PRODUCTION_ENV, **env)
        op = OperatorProcess(options, work / "operator.log")
        try:
            op.start()
            yield cluster, proxy, op
        finally:
            op.stop()
            proxy.stop()


def settled_records(proxy: Proxy, since: float, seconds: float = 3.0) -> list[Record]:
    """Every record since ``since`` once nothing but watches has come for ``seconds``."""

    def settled() -> tuple[list[Record]] | None:
        got = proxy.records(since)
        last = max((r.at for r in got if r.verb != "watch"), default=since)
        return (got,) if time.monotonic() - last >= seconds else None

    return wait_for(settled, timeout=600, every=0.5, what="the operator to go quiet")[0]
