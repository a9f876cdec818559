"""One real kube-apiserver + etcd for the whole operator suite, the shipped RBAC applied, and
the real operator (``amlops operator``) running as the ``amlops-operator`` ServiceAccount
behind a counting proxy. Every test that uses ``op`` fails if the operator got a 403: the
suite is the proof that the shipped ClusterRole is enough."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.envtest.apiserver import Cluster, apply_object, start_cluster, unique_name
from tests.operator.harness import (
    DEPLOY,
    SCORE_PY,
    Kube,
    OperatorProcess,
    deploy_documents,
    new_proxy,
    object_path,
    operator_env,
    proxied_kubeconfig,
    token_of,
)
from tests.operator.proxy import Proxy

RBAC_FILES = (
    "namespace.yaml",
    "serviceaccount.yaml",
    "crds/clusterrole.yaml",
    "clusterrolebinding.yaml",
)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    c = start_cluster()
    try:
        c.install_crds(DEPLOY / "crds")
        with c.api_client() as api:
            for doc in deploy_documents(*RBAC_FILES):
                apply_object(api, object_path(doc), doc)
        yield c
    finally:
        c.stop()


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
    root = tmp_path_factory.mktemp("source")
    (root / "models" / "tiny").mkdir(parents=True)
    (root / "models" / "tiny" / "weights.txt").write_text("tiny-1\n")
    (root / "src" / "score").mkdir(parents=True)
    (root / "src" / "score" / "score.py").write_text(SCORE_PY)
    (root / "manifests" / "models").mkdir(parents=True)
    return root


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster,
    proxy: Proxy,
    source_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    work = tmp_path_factory.mktemp("operator")
    sa = cluster.service_account_kubeconfig("amlops-system", "amlops-operator")
    kubeconfig = proxied_kubeconfig(work / "kubeconfig", proxy, token_of(sa), "amlops-system")
    proc = OperatorProcess(operator_env(kubeconfig, work / "state", source_root), work / "log")
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


@pytest.fixture
def namespace(kube: Kube) -> str:
    name = unique_name("op")
    kube.create_namespace(name)
    return name
