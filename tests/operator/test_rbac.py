"""Least privilege, proven: the operator runs as the ``amlops-operator`` ServiceAccount bound
to the shipped ClusterRole by the shipped ClusterRoleBinding. Every test using ``op`` fails on
a 403 (conftest), and here: what the operator does covers the ClusterRole exactly - no grant
goes unused - and the role grants nothing sensitive beyond it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.envtest.apiserver import Cluster
from tests.operator.harness import (
    DEPLOY,
    Kube,
    OperatorProcess,
    is_ready,
    model_spec,
    new_proxy,
    operator_kubeconfig,
    reason_is,
)
from tests.operator.proxy import Proxy, rbac_rules
from tests.operator.test_endpoint import endpoint_spec
from tests.operator.test_gitsource import GITSOURCE_ONLY
from tests.operator.test_pipeline import pipeline_spec

pytestmark = [pytest.mark.envtest, pytest.mark.slow]
SA = "system:serviceaccount:amlops-system:amlops-operator"
SERVERLESS_MODEL = "azureml://registries/azureml-meta/models/Meta-Llama-3-8B-Instruct"


# Grants of the opt-in features (AMLOPS_WEBHOOKS, AMLOPS_PEERING), which the suite's operator
# runs without: tests/operator/test_admission.py and test_ha.py prove those exactly.
OPTIONAL_GROUPS = ("admissionregistration.k8s.io", "kopf.dev")
# An Endpoint's keys Secret is created once and patched only when it exists already and is the
# Endpoint's (keys rotated, a status record lost): tests/operator/test_defects_assets.py proves
# that path, with the patch it makes.
KEYS_REWRITE_ONLY = {("", "secrets", "patch")}


def granted(optional: bool = False) -> set[tuple[str, str, str]]:
    role = yaml.safe_load((DEPLOY / "crds" / "clusterrole.yaml").read_text())
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
        if optional or group not in OPTIONAL_GROUPS
    }


def test_the_operator_uses_exactly_what_the_cluster_role_grants(
    op: OperatorProcess, kube: Kube, proxy: Proxy, namespace: str
) -> None:
    since = proxy.mark()
    op.restart()  # the start-up lists and watches count too
    kube.create(namespace, "Model", "m", model_spec(name=f"{namespace}-rbac"))
    kube.create(namespace, "Pipeline", "p-rbac", pipeline_spec(f"cpu-{namespace}"))
    kube.wait(namespace, "Model", "m", is_ready)
    kube.create(namespace, "Endpoint", "e", endpoint_spec(f"{namespace}-e", f"{namespace}-rbac"))
    kube.wait(namespace, "Endpoint", "e", is_ready, timeout=90)
    kube.wait(namespace, "Pipeline", "p-rbac", reason_is("DependencyNotReady"))
    # a catalog model the operator's local backend cannot have offline: refused, which still
    # patches its finalizer and status (keys are published only once it serves)
    serverless = {"name": f"{namespace}-s", "model_id": SERVERLESS_MODEL}
    kube.create(namespace, "ServerlessEndpoint", "s", {"workspace": "ws", "endpoint": serverless})
    kube.wait(namespace, "ServerlessEndpoint", "s", reason_is("UnsupportedByBackend"))
    for kind, name in (
        ("ServerlessEndpoint", "s"),
        ("Endpoint", "e"),
        ("Pipeline", "p-rbac"),
        ("Model", "m"),
    ):
        kube.delete(namespace, kind, name)
        kube.wait_gone(namespace, kind, name)

    # a GitSource's grants are proven used by tests/operator/test_gitsource.py
    elsewhere = GITSOURCE_ONLY | KEYS_REWRITE_ONLY
    used = set().union(*(rbac_rules(r) for r in proxy.records(since))) - elsewhere
    want = granted() - elsewhere
    assert used == want, (
        f"used but not granted: {sorted(used - want)}; "
        f"granted but never used: {sorted(want - used)}"
    )


def _can(kube: Kube, verb: str, resource: str, group: str = "", sub: str = "") -> bool:
    review = k8s.V1SubjectAccessReview(
        spec=k8s.V1SubjectAccessReviewSpec(
            user=SA,
            groups=["system:serviceaccounts", "system:serviceaccounts:amlops-system"],
            resource_attributes=k8s.V1ResourceAttributes(
                verb=verb, resource=resource, group=group, subresource=sub, namespace="team-a"
            ),
        )
    )
    answer: Any = k8s.AuthorizationV1Api(kube.api).create_subject_access_review(review)
    return bool(answer.status.allowed)


@pytest.mark.parametrize(
    ("verb", "resource", "group"),
    [
        ("list", "secrets", ""),
        ("watch", "secrets", ""),
        ("delete", "secrets", ""),
        ("update", "models", "amlops.io"),
        ("deletecollection", "endpoints", "amlops.io"),
        ("create", "gitsources", "amlops.io"),
        ("delete", "gitsources", "amlops.io"),
        ("list", "pods", ""),
        ("create", "pods", ""),
        ("get", "configmaps", ""),
        ("update", "customresourcedefinitions", "apiextensions.k8s.io"),
        ("bind", "clusterroles", "rbac.authorization.k8s.io"),
        ("impersonate", "serviceaccounts", ""),
    ],
)
def test_the_role_grants_nothing_beyond_what_the_handlers_use(
    cluster: Cluster, kube: Kube, verb: str, resource: str, group: str
) -> None:
    assert not _can(kube, verb, resource, group)


def test_a_forbidden_request_is_caught_by_the_proxy(cluster: Cluster, tmp_path: Any) -> None:
    """The detector the suite relies on: the operator's identity listing Secrets is a 403,
    recorded by the proxy (a separate one, so the suite's own check stays clean)."""
    proxy = new_proxy(cluster)
    try:
        path = operator_kubeconfig(cluster, proxy, tmp_path / "kc")
        with cluster.api_client(path) as api:
            with pytest.raises(ApiException) as err:
                k8s.CoreV1Api(api).list_namespaced_secret("amlops-system")
            review = k8s.AuthenticationV1Api(api).create_self_subject_review(
                k8s.V1SelfSubjectReview()
            )
        assert err.value.status == 403
        assert [r.status for r in proxy.records() if r.path.endswith("/secrets")] == [403]
        assert review.status.user_info.username == SA
    finally:
        proxy.stop()
