"""One real kube-apiserver + etcd for the whole operator suite, the shipped RBAC applied, and
the real operator (``amlops operator``) running as the ``amlops-operator`` ServiceAccount
behind a counting proxy. Every test that uses ``op`` fails if the operator got a 403: the
suite is the proof that the shipped ClusterRole is enough."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.envtest.apiserver import Cluster
from tests.operator.harness import (
    BackendView,
    Kube,
    OperatorProcess,
    installed_cluster,
    new_proxy,
    operator_process,
    webhook_operator,
    write_checkout,
)
from tests.operator.proxy import Proxy


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    with installed_cluster() as c:
        yield c


@pytest.fixture(scope="session")
def kube(cluster: Cluster) -> Iterator[Kube]:
    with cluster.api_client() as api:
        yield Kube(api)


@pytest.fixture(scope="session")
def proxy(cluster: Cluster) -> Iterator[Proxy]:
    p = new_proxy(cluster)
    yield p
    p.stop()


@pytest.fixture(scope="session")
def source_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The "Git checkout" the operator resolves relative paths against."""
    root = write_checkout(tmp_path_factory.mktemp("source"))
    (root / "manifests" / "models").mkdir(parents=True)
    return root


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster,
    proxy: Proxy,
    source_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    proc = operator_process(cluster, proxy, tmp_path_factory.mktemp("operator"), source_root)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def op(operator: OperatorProcess, proxy: Proxy) -> Iterator[OperatorProcess]:
    """The running operator; the test fails if any of its requests was forbidden."""
    if not operator.running:
        operator.start()
    since = proxy.mark()
    yield operator
    forbidden = [r for r in proxy.records(since) if r.status == 403]
    assert not forbidden, "the shipped ClusterRole lacks: " + ", ".join(
        f"{r.verb} {r.path}" for r in forbidden
    )
    if not operator.running:
        operator.start()


@pytest.fixture(scope="module")
def webhook_checkout(source_root: Path) -> Path:
    """The checkout of the ``webhooks`` operator; a module may override it."""
    return source_root


@pytest.fixture(scope="module")
def webhooks(
    cluster: Cluster,
    kube: Kube,
    operator: OperatorProcess,
    webhook_checkout: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[OperatorProcess, Proxy]]:
    """The module's own operator serving the webhooks, once the API server calls them (the
    suite's is stopped meanwhile: see ``webhook_operator``)."""
    work = tmp_path_factory.mktemp("webhook-operator")
    with webhook_operator(cluster, kube, operator, webhook_checkout, work) as running:
        yield running


@pytest.fixture
def namespace(kube: Kube) -> str:
    return kube.new_namespace("op")


@pytest.fixture
def view(op: OperatorProcess) -> Iterator[BackendView]:
    """The running operator's local backend, as the test process sees it."""
    v = BackendView(op)
    yield v
    v.close()


@pytest.fixture
def backend(view: BackendView) -> BackendView:
    """``view``, under the name most modules use (a module's own ``backend`` wins)."""
    return view
