"""High availability, on the real API server: two operators (the shipped ClusterKopfPeering
and RBAC, peering on, a short peering lifetime) - one reconciles, the other stands by; after
the active one is SIGKILLed, the other takes over and reconciles a new object.

Each replica has its own state directory (the local backend has one writer per directory; the
azureml backend keeps its state in Azure ML). The suite's operator is stopped meanwhile."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import kopf
import pytest

from amlops.handlers.admission import self_signed
from amlops.handlers.options import Settings, SettingsError
from amlops.handlers.settings import configure_kopf
from tests.envtest.apiserver import Cluster, apply_object
from tests.operator.harness import (
    Kube,
    OperatorProcess,
    delete_webhook_configurations,
    deploy_documents,
    is_ready,
    model_spec,
    new_proxy,
    object_path,
    operator_process,
    refuses,
    wait_for,
    wait_for_webhooks,
    webhook_configurations,
    webhook_env,
)
from tests.operator.proxy import Proxy, rbac_rules
from tests.operator.test_rbac import granted

pytestmark = [pytest.mark.envtest, pytest.mark.slow]
LIFETIME_S = 4


def peering_status(kube: Kube, name: str) -> dict[str, Any]:
    obj: Any = kube.custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
    return dict(obj.get("status") or {})


def handled(op: OperatorProcess, namespace: str, name: str) -> bool:
    """Whether ``op`` logged handling the object (Kopf's JSON lines name it under "object")."""
    for record in op.log_records():
        obj = record.get("object")
        if isinstance(obj, dict) and (obj.get("namespace"), obj.get("name")) == (namespace, name):
            return True
    return False


@contextmanager
def peered(
    cluster: Cluster,
    kube: Kube,
    operator: OperatorProcess,
    source_root: Path,
    tmp_path: Path,
    **env: str,
) -> Iterator[tuple[list[OperatorProcess], Proxy, str]]:
    """Two operators peering in the shipped ClusterKopfPeering, with ``env`` added."""
    operator.stop()  # the suite's operator is standalone: it would reconcile alongside
    (peering,) = deploy_documents("peering.yaml")
    with cluster.api_client() as api:
        apply_object(api, object_path(peering), peering)
    name = peering["metadata"]["name"]
    proxy = new_proxy(cluster)
    peering_env = {"AMLOPS_PEERING": name, "AMLOPS_PEERING_LIFETIME": str(LIFETIME_S), **env}
    ops = [
        operator_process(cluster, proxy, tmp_path / f"replica-{i}", source_root, **peering_env)
        for i in range(2)
    ]
    try:
        for op in ops:
            op.start()
        # both keep-alives are in, so each knows whether it is the one with the top priority
        wait_for(lambda: len(peering_status(kube, name)) >= 2, what="two peers")
        time.sleep(2)  # the one that started first has seen the other's keep-alive
        yield ops, proxy, name
    finally:
        for op in ops:
            op.stop()
        proxy.stop()
        operator.start()


Peered = Callable[..., AbstractContextManager[tuple[list[OperatorProcess], Proxy, str]]]


@pytest.fixture
def peer(
    cluster: Cluster, kube: Kube, operator: OperatorProcess, source_root: Path, tmp_path: Path
) -> Peered:
    """``peered`` on the suite's cluster and operator: ``with peer(**env) as (ops, ...)``."""
    return functools.partial(peered, cluster, kube, operator, source_root, tmp_path)


@pytest.fixture
def replicas(peer: Peered) -> Iterator[tuple[list[OperatorProcess], Proxy, str]]:
    with peer() as running:
        yield running


def test_the_standby_takes_over_when_the_active_operator_is_killed(
    replicas: tuple[list[OperatorProcess], Proxy, str], kube: Kube, namespace: str
) -> None:
    ops, proxy, name = replicas
    kube.create(namespace, "Model", "first", model_spec(name=f"{namespace}-first"))
    kube.wait(namespace, "Model", "first", is_ready, what="Ready")
    time.sleep(1)  # a standby that handled it too would have done so by now
    which = [handled(op, namespace, "first") for op in ops]
    assert sorted(which) == [False, True], f"one active operator: {which}"
    active, standby = (ops[0], ops[1]) if which[0] else (ops[1], ops[0])

    active.kill()  # SIGKILL: no goodbye in the peering object; its record must expire
    killed_at = time.monotonic()
    kube.create(namespace, "Model", "second", model_spec(name=f"{namespace}-second"))
    kube.wait(namespace, "Model", "second", is_ready, timeout=LIFETIME_S + 30, what="Ready")
    assert handled(standby, namespace, "second")
    assert not handled(active, namespace, "second")
    # not before the active one's record expired (its lifetime), but soon after
    assert time.monotonic() - killed_at < LIFETIME_S + 30
    # the dead peer was cleaned out of the peering object by the survivor
    wait_for(lambda: len(peering_status(kube, name)) == 1, timeout=LIFETIME_S + 30)

    records = proxy.records()
    assert not [r for r in records if r.status == 403]
    used = {rule for r in records for rule in rbac_rules(r) if rule[0] == "kopf.dev"}
    assert used == {rule for rule in granted(optional=True) if rule[0] == "kopf.dev"}


def test_the_peering_lifetime_setting_reaches_kopf() -> None:
    k = kopf.OperatorSettings()
    configure_kopf(
        k, Settings.from_env({"AMLOPS_PEERING": "amlops", "AMLOPS_PEERING_LIFETIME": "7"})
    )
    assert (k.peering.name, k.peering.lifetime, k.peering.standalone) == ("amlops", 7, False)
    with pytest.raises(SettingsError):
        Settings.from_env({"AMLOPS_PEERING_LIFETIME": "0"})


def test_the_shipped_deployment_runs_two_peered_replicas() -> None:
    (deployment,) = deploy_documents("deployment.yaml")
    (peering,) = deploy_documents("peering.yaml")
    assert deployment["spec"]["replicas"] == 2
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"
    ]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = Settings.from_env(env)
    assert settings.peering == peering["metadata"]["name"]
    assert settings.backend != "local"  # one writer per local state directory


def webhook_names(kube: Kube) -> set[str]:
    return {h.name for c in webhook_configurations(kube) for h in c.webhooks or []}


def test_a_replica_that_stops_leaves_the_webhooks_to_the_other(
    peer: Peered, kube: Kube, tmp_path: Any
) -> None:
    """Both replicas serve the webhooks with one certificate (a mounted Secret in a cluster)
    behind one address (the Service; here one loopback port both bind, as Kopf's server
    reuses the port). When one stops gracefully (evicted, rolled), Kopf's clean-up keeps the
    persistent webhooks, and the other replica goes on answering them."""
    shared = self_signed(tmp_path / "cert", ["127.0.0.1"])
    try:
        with peer(
            **webhook_env(),
            AMLOPS_WEBHOOK_CERT_DIR=str(shared.cert.parent),
        ) as (ops, _, _):
            wait_for_webhooks(kube)
            before = webhook_names(kube)
            assert any(n.startswith("validate-model") for n in before)
            assert any(n.startswith("protect-model") for n in before)
            assert ops[0].stop() is not None  # exited by itself: Kopf cleaned up
            assert webhook_names(kube) == before
            for _ in range(5):  # every call now reaches the survivor
                assert refuses(kube)
    finally:
        delete_webhook_configurations(kube)


def test_peered_webhooks_need_a_shared_certificate() -> None:
    """Self-made, each replica would have its own CA and the API server would trust only the
    last one written: with peering the operator refuses to start without a mounted one."""
    env = {"AMLOPS_PEERING": "amlops", "AMLOPS_WEBHOOKS": "true"}
    with pytest.raises(SettingsError, match="AMLOPS_WEBHOOK_CERT_DIR"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "AMLOPS_WEBHOOK_CERT_DIR": "/etc/amlops/webhook"}).webhooks
    assert Settings.from_env({"AMLOPS_WEBHOOKS": "true"}).webhook_fail_closed  # one replica
    assert not Settings.from_env({"AMLOPS_WEBHOOK_FAIL_CLOSED": "false"}).webhook_fail_closed
