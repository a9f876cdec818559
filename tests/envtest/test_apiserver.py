"""Tests of the envtest infrastructure itself against a real kube-apiserver."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import dynamic
from kubernetes.client.rest import ApiException

from tests.envtest.apiserver import Cluster, EnvtestAPIServer, unique_name

pytestmark = [pytest.mark.envtest, pytest.mark.slow]

GROUP = "envtest.amlops.io"
PLURAL = "widgets"

WIDGET_CRD = textwrap.dedent(
    f"""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: {PLURAL}.{GROUP}
    spec:
      group: {GROUP}
      scope: Namespaced
      names:
        plural: {PLURAL}
        singular: widget
        kind: Widget
      versions:
        - name: v1
          served: true
          storage: true
          subresources:
            status: {{}}
          schema:
            openAPIV3Schema:
              type: object
              properties:
                spec:
                  type: object
                  properties:
                    size:
                      type: integer
                status:
                  type: object
                  properties:
                    phase:
                      type: string
    ---
    # non-CRD documents are ignored by install_crds
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: ignored
    """
)


@pytest.fixture(scope="module")
def admin(apiserver: Cluster) -> Iterator[Any]:
    with apiserver.api_client() as api:
        yield api


@pytest.fixture
def namespace(admin: Any) -> Iterator[str]:
    name = unique_name("envtest")
    k8s.CoreV1Api(admin).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    # No namespace controller runs: the namespace just stays Terminating.
    k8s.CoreV1Api(admin).delete_namespace(name)


def test_cluster_basics(apiserver: Cluster, admin: Any) -> None:
    assert apiserver.host.startswith("https://")
    assert apiserver.kubeconfig_path.is_file()
    if isinstance(apiserver, EnvtestAPIServer):
        assert apiserver.running
        assert apiserver.host.startswith("https://127.0.0.1:")
        version = k8s.VersionApi(admin).get_code()
        assert version.git_version.startswith("v1.")
    review = k8s.AuthenticationV1Api(admin).create_self_subject_review(k8s.V1SelfSubjectReview())
    assert review.status.user_info.username
    if isinstance(apiserver, EnvtestAPIServer):
        assert review.status.user_info.username == "admin"
        assert "system:masters" in review.status.user_info.groups


def test_namespace_and_configmap(admin: Any, namespace: str) -> None:
    core = k8s.CoreV1Api(admin)
    assert core.read_namespace(namespace).status.phase == "Active"
    core.create_namespaced_config_map(
        namespace,
        k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cm"), data={"k": "v"}),
    )
    got = core.read_namespaced_config_map("cm", namespace)
    assert got.data == {"k": "v"}
    names = [cm.metadata.name for cm in core.list_namespaced_config_map(namespace).items]
    assert "cm" in names


def test_stale_resource_version_conflicts(admin: Any, namespace: str) -> None:
    core = k8s.CoreV1Api(admin)
    core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cm"), data={"n": "0"})
    )
    stale = core.read_namespaced_config_map("cm", namespace)
    fresh = core.read_namespaced_config_map("cm", namespace)
    fresh.data = {"n": "1"}
    updated = core.replace_namespaced_config_map("cm", namespace, fresh)
    assert updated.metadata.resource_version != stale.metadata.resource_version

    stale.data = {"n": "2"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cm", namespace, stale)
    assert err.value.status == 409
    assert core.read_namespaced_config_map("cm", namespace).data == {"n": "1"}


def test_service_account_without_rbac_is_forbidden(
    apiserver: Cluster, admin: Any, namespace: str
) -> None:
    kubeconfig = apiserver.service_account_kubeconfig(namespace, "robot")
    assert kubeconfig.is_file()
    with apiserver.api_client(kubeconfig) as sa_api:
        # The TokenRequest token authenticates (not 401) ...
        review = k8s.AuthenticationV1Api(sa_api).create_self_subject_review(
            k8s.V1SelfSubjectReview()
        )
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:robot"
        # ... but RBAC grants it nothing.
        with pytest.raises(ApiException) as err:
            k8s.CoreV1Api(sa_api).list_namespaced_config_map(namespace)
        assert err.value.status == 403

        # Bind a Role and the same token is allowed: the 403 came from RBAC.
        rbac = k8s.RbacAuthorizationV1Api(admin)
        rbac.create_namespaced_role(
            namespace,
            k8s.V1Role(
                metadata=k8s.V1ObjectMeta(name="cm-reader"),
                rules=[k8s.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["list"])],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            k8s.V1RoleBinding(
                metadata=k8s.V1ObjectMeta(name="cm-reader"),
                role_ref=k8s.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="cm-reader"
                ),
                subjects=[
                    k8s.RbacV1Subject(kind="ServiceAccount", name="robot", namespace=namespace)
                ],
            ),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                k8s.CoreV1Api(sa_api).list_namespaced_config_map(namespace)
                break
            except ApiException as e:
                if e.status != 403 or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        # Still nothing beyond the Role.
        with pytest.raises(ApiException) as err:
            k8s.CoreV1Api(sa_api).list_namespaced_secret(namespace)
        assert err.value.status == 403


@pytest.fixture(scope="module")
def widget_crd(apiserver: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    directory: Path = tmp_path_factory.mktemp("crds")
    (directory / "widgets.yaml").write_text(WIDGET_CRD)
    (directory / "README.txt").write_text("not yaml, ignored")
    names = apiserver.install_crds(directory)
    assert names == [f"{PLURAL}.{GROUP}"]
    # Idempotent: applying again is fine.
    assert apiserver.install_crds(directory) == names
    return names[0]


def test_generation_increments_on_spec_change(admin: Any, namespace: str, widget_crd: str) -> None:
    custom = k8s.CustomObjectsApi(admin)
    body = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
    }
    created = custom.create_namespaced_custom_object(GROUP, "v1", namespace, PLURAL, body)
    assert created["metadata"]["generation"] == 1

    patched = custom.patch_namespaced_custom_object(
        GROUP, "v1", namespace, PLURAL, "w", {"spec": {"size": 2}}
    )
    assert patched["metadata"]["generation"] == 2

    # Metadata and status changes do not bump the generation.
    patched = custom.patch_namespaced_custom_object(
        GROUP, "v1", namespace, PLURAL, "w", {"metadata": {"labels": {"a": "b"}}}
    )
    assert patched["metadata"]["generation"] == 2
    patched = custom.patch_namespaced_custom_object_status(
        GROUP, "v1", namespace, PLURAL, "w", {"status": {"phase": "Ready"}}
    )
    assert patched["metadata"]["generation"] == 2
    assert patched["status"] == {"phase": "Ready"}

    # Schema validation is real: a wrong type is rejected.
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            GROUP, "v1", namespace, PLURAL, "w", {"spec": {"size": "big"}}
        )
    assert err.value.status == 422


def test_server_side_apply_field_managers(admin: Any, namespace: str) -> None:
    dyn = dynamic.DynamicClient(admin)
    configmaps = dyn.resources.get(api_version="v1", kind="ConfigMap")

    def manifest(value: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "applied", "namespace": namespace},
            "data": {"owned": value},
        }

    first = configmaps.server_side_apply(
        body=manifest("a"), namespace=namespace, field_manager="amlops-a"
    )
    assert first.data.owned == "a"
    managers = {(m.manager, m.operation) for m in first.metadata.managedFields}
    assert ("amlops-a", "Apply") in managers

    # Another manager touching the same field conflicts unless it forces.
    with pytest.raises(ApiException) as err:
        configmaps.server_side_apply(
            body=manifest("b"), namespace=namespace, field_manager="amlops-b"
        )
    assert err.value.status == 409

    forced = configmaps.server_side_apply(
        body=manifest("b"), namespace=namespace, field_manager="amlops-b", force_conflicts=True
    )
    assert forced.data.owned == "b"
    owners = {m.manager for m in forced.metadata.managedFields if m.operation == "Apply"}
    assert owners == {"amlops-b"}

    # Re-applying the same intent is a no-op (resourceVersion unchanged).
    again = configmaps.server_side_apply(
        body=manifest("b"), namespace=namespace, field_manager="amlops-b"
    )
    assert again.metadata.resourceVersion == forced.metadata.resourceVersion
