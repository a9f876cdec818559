"""The deploy files: complete, accepted by a real API server, and consistent with the operator
(probes on the liveness endpoint it serves, settings it understands, the identity it needs)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from amlops.handlers.options import Settings
from tests.envtest.apiserver import Cluster
from tests.operator.harness import DEPLOY, ROOT, deploy_documents, dry_run_apply, object_path


def listed(folder: str = "") -> list[str]:
    """The files a kustomization lists, a listed folder by its own kustomization."""
    text = (DEPLOY / folder / "kustomization.yaml").read_text()
    files: list[str] = []
    for entry in yaml.safe_load(text)["resources"]:
        path = f"{folder}/{entry}" if folder else entry
        files.extend(listed(path) if (DEPLOY / path).is_dir() else [path])
    return files


def resources() -> list[dict[str, Any]]:
    return deploy_documents(*listed())


def one(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in resources() if d["kind"] == kind]
    return doc


def test_kustomization_lists_every_manifest() -> None:
    # components/ hold kustomize Components, which a kustomization of one's own adds
    on_disk = {
        p.relative_to(DEPLOY).as_posix()
        for p in DEPLOY.rglob("*.yaml")
        if not p.relative_to(DEPLOY).as_posix().startswith("components/")
    }
    assert set(listed()) == {p for p in on_disk if not p.endswith("kustomization.yaml")}


def test_namespaced_objects_live_in_amlops_system() -> None:
    for doc in resources():
        if (
            doc["kind"]
            not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering")
            and doc["kind"] != "CustomResourceDefinition"
        ):
            assert doc["metadata"]["namespace"] == "amlops-system", doc["kind"]


def test_service_account_is_annotated_for_workload_identity() -> None:
    sa = one("ServiceAccount")
    assert sa["metadata"]["name"] == "amlops-operator"
    assert "azure.workload.identity/client-id" in sa["metadata"]["annotations"]
    pod = one("Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    assert pod["spec"]["serviceAccountName"] == "amlops-operator"
    binding = one("ClusterRoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "amlops-operator", "namespace": "amlops-system"}
    ]
    assert binding["roleRef"]["name"] == one("ClusterRole")["metadata"]["name"]


def test_operator_container_probes_resources_and_settings() -> None:
    pod = one("Deployment")["spec"]["template"]["spec"]
    (operator,) = [c for c in pod["containers"] if c["name"] == "operator"]
    assert operator["args"][0] == "operator"
    env = {e["name"]: e["value"] for e in operator["env"] if "value" in e}
    # from the downward API: the namespace the azureml backend's owner tag names
    assert {e["name"] for e in operator["env"] if "value" not in e} == {"POD_NAMESPACE"}
    Settings.from_env(env)  # every variable is one the operator understands, and valid
    assert set(env) <= {f"AMLOPS_{n}" for n in _setting_names()}
    liveness = re.fullmatch(r"http://0\.0\.0\.0:(\d+)(/\S+)", env["AMLOPS_LIVENESS"])
    assert liveness is not None
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = operator[probe]["httpGet"]
        assert ports[get["port"]] == int(liveness.group(1)) and get["path"] == liveness.group(2)
    assert ports["metrics"] == int(env["AMLOPS_METRICS_PORT"])
    for container in pod["containers"]:
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["requests"]["memory"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True


def _setting_names() -> set[str]:
    from dataclasses import fields

    return {f.name.upper().removesuffix("_S") for f in fields(Settings)}


@pytest.mark.envtest
@pytest.mark.slow
def test_every_deploy_file_is_accepted_by_the_api_server(cluster: Cluster) -> None:
    """Server-side dry-run apply: the API server validates each object (Deployment probes,
    PVC, Service...) without keeping it."""
    with cluster.api_client() as api:
        for doc in resources():
            dry_run_apply(api, object_path(doc), doc)


def test_crds_in_deploy_are_the_generated_ones() -> None:
    from amlops.crds import render

    for name, text in render().items():
        assert (DEPLOY / "crds" / name).read_text() == text


def test_dockerfile_builds_the_cli_and_runs_the_operator_unprivileged() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["amlops"\]$', text, re.M)
    assert re.search(r'^CMD \["operator"\]$', text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and not user[-1].startswith(("0", "root"))
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY {path}: not in the repository"
    # the image points the CLI at the policies it ships (amlops.paths.policies_dir)
    assert "AMLOPS_POLICIES=/opt/amlops/share/policies" in text
