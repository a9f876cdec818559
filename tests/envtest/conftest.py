"""Session-scoped real Kubernetes API server for tests (see apiserver.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.envtest.apiserver import Cluster, start_cluster


@pytest.fixture(scope="session")
def apiserver() -> Iterator[Cluster]:
    """A real kube-apiserver + etcd on loopback (or ``$AMLOPS_TEST_KUBECONFIG``)."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
