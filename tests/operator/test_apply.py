"""``amlops apply``: server-side apply of the manifests to a real API server, in order, with
managed-by labels and Git annotations; no-op applies write nothing; prune and dry run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from amlops.cli import main
from amlops.cli.apply import INVENTORY_NAMESPACE
from amlops.core.manifests import kubernetes_name
from amlops.core.provenance import Origin
from amlops.core.validate import validate_paths
from amlops.gitops import apply as gitops_apply
from amlops.gitops.inventory import Inventory, PruneAllRefused
from tests.envtest.apiserver import Cluster, unique_name
from tests.operator.harness import SCORE_PY, Kube, new_proxy, proxied_kubeconfig, token_of
from tests.operator.proxy import Proxy, Record, writes

pytestmark = [pytest.mark.envtest, pytest.mark.slow]

MODEL = """\
apiVersion: amlops.io/v1alpha1
kind: Model
metadata:
  name: tiny
spec:
  workspace: {ws}
  model:
    name: tiny
    version: "1"
    path: ../../assets/tiny
    description: {description}
"""
ENDPOINT = """\
apiVersion: amlops.io/v1alpha1
kind: Endpoint
metadata:
  name: online
spec:
  workspace: {ws}
  endpoint:
    name: {ws}-online
    auth_mode: key
    traffic:
      blue: 100
  deployments:
    - name: blue
      model: azureml:tiny:1
      code_configuration:
        code: ../../src/score
        scoring_script: score.py
      instance_type: Standard_DS3_v2
      instance_count: 1
"""
WORKSPACE = """\
apiVersion: amlops.io/v1alpha1
kind: Workspace
metadata:
  name: {ws}
spec:
  environment: dev
  location: westeurope
  resourceGroup: rg-{ws}
  sku: Basic
  publicNetworkAccess: Enabled
  storage:
    allowSharedKeyAccess: false
  tags:
    owner: ml-platform@contoso.com
    cost-center: "4711"
"""


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def deployer(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """A CI identity (cluster-admin) behind its own counting proxy."""
    with cluster.api_client() as api:
        binding = k8s.V1ClusterRoleBinding(
            metadata=k8s.V1ObjectMeta(name="amlops-deployer"),
            role_ref=k8s.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
            ),
            subjects=[
                k8s.RbacV1Subject(
                    kind="ServiceAccount", name="amlops-deployer", namespace="default"
                )
            ],
        )
        k8s.RbacAuthorizationV1Api(api).create_cluster_role_binding(binding)
    proxy = new_proxy(cluster)
    sa = cluster.service_account_kubeconfig("default", "amlops-deployer")
    path = tmp_path_factory.mktemp("deployer") / "kubeconfig"
    proxied_kubeconfig(path, proxy, token_of(sa), "default")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(path))
        yield proxy
    proxy.stop()


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A Git repository with a workspace, a model and an endpoint; the workspace (and so the
    namespace) is unique per test."""
    ws = unique_name("apply")
    root = tmp_path / "platform"
    (root / "manifests" / "models").mkdir(parents=True)
    (root / "manifests" / "endpoints").mkdir(parents=True)
    (root / "assets" / "tiny").mkdir(parents=True)
    (root / "src" / "score").mkdir(parents=True)
    (root / "assets" / "tiny" / "weights.txt").write_text("tiny-1\n")
    (root / "src" / "score" / "score.py").write_text(SCORE_PY)
    (root / "manifests" / "workspace.yaml").write_text(WORKSPACE.format(ws=ws))
    (root / "manifests" / "models" / "tiny.yaml").write_text(
        MODEL.format(ws=ws, description="first")
    )
    (root / "manifests" / "endpoints" / "online.yaml").write_text(ENDPOINT.format(ws=ws))
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "platform")
    return root, ws


def apply(repo: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``amlops apply`` in this process; each test repo is its own instance (the tests share
    one cluster, and prune only touches its own instance's objects)."""
    code = main(["apply", str(repo / "manifests"), "--instance", repo.parent.name, *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def kinds_written(records: list[Record]) -> list[str]:
    out: list[str] = []
    for r in writes(records):
        resource = r.path.split("/")[-2]
        if not out or out[-1] != resource:
            out.append(resource)
    return out


def test_apply_orders_crds_namespace_models_endpoints_and_stamps_git(
    deployer: Proxy, kube: Kube, repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ws = repo
    since = deployer.mark()
    code, out = apply(root, capsys=capsys)
    assert code == 0, out
    order = kinds_written(deployer.records(since))
    # CRDs (if they changed), then the namespaces, then Models before Endpoints, then the
    # instance's inventory (written after what it lists)
    assert order[-4:] == ["namespaces", "models", "endpoints", "configmaps"], order
    assert set(order[:-4]) <= {"customresourcedefinitions"}

    model = kube.get(ws, "Model", "tiny")
    assert model is not None
    meta = model["metadata"]
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "amlops"
    assert meta["labels"]["amlops.io/instance"] == root.parent.name
    assert meta["annotations"]["amlops.io/source-file"] == "manifests/models/tiny.yaml"
    assert meta["annotations"]["amlops.io/git-commit"] == git(root, "rev-parse", "HEAD")
    managers = {(f["manager"], f["operation"]) for f in meta["managedFields"]}
    assert ("amlops", "Apply") in managers
    assert model["spec"]["model"]["path"] == "../../assets/tiny"


def test_a_second_apply_writes_nothing_even_on_a_new_commit(
    deployer: Proxy, kube: Kube, repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ws = repo
    assert apply(root, capsys=capsys)[0] == 0
    (root / "README.md").write_text("docs only\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "docs")

    since = deployer.mark()
    code, out = apply(root, capsys=capsys)
    assert code == 0
    assert writes(deployer.records(since)) == []
    assert "0 change(s)" in out
    # the objects keep naming the commit that last changed them
    model = kube.get(ws, "Model", "tiny")
    assert model is not None
    assert model["metadata"]["annotations"]["amlops.io/git-commit"] == git(
        root, "rev-parse", "HEAD~1"
    )


def test_a_changed_manifest_is_applied_alone_with_its_new_commit(
    deployer: Proxy, kube: Kube, repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ws = repo
    assert apply(root, capsys=capsys)[0] == 0
    (root / "manifests" / "models" / "tiny.yaml").write_text(
        MODEL.format(ws=ws, description="second")
    )
    git(root, "commit", "-q", "-am", "describe")

    since = deployer.mark()
    code, _ = apply(root, capsys=capsys)
    assert code == 0
    assert [(r.verb, r.path.rsplit("/", 2)[-2]) for r in writes(deployer.records(since))] == [
        ("patch", "models")
    ]
    model = kube.get(ws, "Model", "tiny")
    assert model is not None
    assert model["spec"]["model"]["description"] == "second"
    assert model["metadata"]["generation"] == 2
    assert model["metadata"]["annotations"]["amlops.io/git-commit"] == git(
        root, "rev-parse", "HEAD"
    )


def test_prune_deletes_only_managed_objects_that_left_git(
    deployer: Proxy, kube: Kube, repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ws = repo
    assert apply(root, capsys=capsys)[0] == 0
    other: dict[str, Any] = {"workspace": ws, "model": {"name": "x", "version": "1", "path": "x"}}
    kube.create(ws, "Model", "hand-made", other)  # not managed by apply: never pruned
    (root / "manifests" / "endpoints" / "online.yaml").unlink()
    git(root, "commit", "-q", "-am", "retire the endpoint")

    code, out = apply(root, capsys=capsys)
    assert code == 0 and "prune" not in out
    assert kube.get(ws, "Endpoint", "online") is not None  # without --prune it stays

    since = deployer.mark()
    code, out = apply(root, "--prune", capsys=capsys)
    assert code == 0
    assert "prune      Endpoint" in out
    deletes = [r for r in writes(deployer.records(since)) if r.verb == "delete"]
    assert [r.path.rsplit("/", 2)[-2:] for r in deletes] == [["endpoints", "online"]]
    kube.wait_gone(ws, "Endpoint", "online")
    assert kube.get(ws, "Model", "hand-made") is not None
    assert kube.get(ws, "Model", "tiny") is not None


def test_dry_run_reports_changes_and_writes_nothing(
    deployer: Proxy, kube: Kube, repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ws = repo
    since = deployer.mark()
    code, out = apply(root, "--dry-run", capsys=capsys)
    assert code == 0
    assert "create     Model" in out and "create     Endpoint" in out
    assert writes(deployer.records(since)) == []
    assert kube.get(ws, "Model", "tiny") is None


def test_invalid_manifests_are_not_applied(
    deployer: Proxy, repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    root, ws = repo
    bad = textwrap.dedent(MODEL.format(ws=ws, description="x")).replace('version: "1"\n', "")
    (root / "manifests" / "models" / "tiny.yaml").write_text(bad)
    since = deployer.mark()
    code = main(["apply", str(root / "manifests")])
    assert code == 1
    assert "error(s): nothing applied" in capsys.readouterr().err
    assert deployer.records(since) == []
    shutil.rmtree(root)


def inventory_of(kube: Kube, instance: str) -> list[str]:
    """The entry ids of an instance's inventory ConfigMap ([] when there is none)."""
    name = f"amlops-inventory-{kubernetes_name(instance)}"
    try:
        cm = k8s.CoreV1Api(kube.api).read_namespaced_config_map(name, INVENTORY_NAMESPACE)
    except k8s.ApiException as exc:
        assert exc.status == 404
        return []
    return [e["id"] for e in json.loads(cm.data["inventory"])["entries"]]


def test_an_empty_path_does_not_prune_everything_without_allow_empty(
    deployer: Proxy, kube: Kube, repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """D11: `amlops apply EMPTY_DIR --prune` planned to delete every managed object."""
    root, ws = repo
    assert apply(root, capsys=capsys)[0] == 0
    assert sorted(inventory_of(kube, root.parent.name)) == [
        f"{ws}_online_amlops.io_Endpoint",
        f"{ws}_tiny_amlops.io_Model",
    ]
    shutil.rmtree(root / "manifests")
    (root / "manifests").mkdir()

    since = deployer.mark()
    for args in (("--prune", "--dry-run"), ("--prune",)):
        code, out = apply(root, *args, capsys=capsys)
        assert code == 1, out
        assert "would prune all 2" in out and "--allow-empty" in out
        assert "prune      " not in out
    assert writes(deployer.records(since)) == []

    code, out = apply(root, "--prune", "--dry-run", "--allow-empty", capsys=capsys)
    assert code == 0 and out.count("prune      ") == 2, out
    assert writes(deployer.records(since)) == []
    assert kube.get(ws, "Endpoint", "online") is not None

    code, out = apply(root, "--prune", "--allow-empty", capsys=capsys)
    assert code == 0, out
    kube.wait_gone(ws, "Endpoint", "online")
    kube.wait_gone(ws, "Model", "tiny")
    assert inventory_of(kube, root.parent.name) == []


def test_prune_deletes_only_what_the_inventory_lists(
    deployer: Proxy, kube: Kube, repo: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An object that merely carries the instance's labels (applied by hand, or by an amlops
    before inventories) is not the instance's to delete."""
    root, ws = repo
    assert apply(root, capsys=capsys)[0] == 0
    labels = {"app.kubernetes.io/managed-by": "amlops", "amlops.io/instance": root.parent.name}
    spec: dict[str, Any] = {"workspace": ws, "model": {"name": "x", "version": "1", "path": "x"}}
    kube.create(ws, "Model", "look-alike", spec)
    kube.patch(ws, "Model", "look-alike", {"metadata": {"labels": labels}})
    (root / "manifests" / "endpoints" / "online.yaml").unlink()
    git(root, "commit", "-q", "-am", "retire the endpoint")

    since = deployer.mark()
    code, out = apply(root, "--prune", capsys=capsys)
    assert code == 0, out
    deletes = [r.path.rsplit("/", 2)[-2:] for r in writes(deployer.records(since))
               if r.verb == "delete"]  # fmt: skip
    assert deletes == [["endpoints", "online"]]
    assert kube.get(ws, "Model", "look-alike") is not None
    assert inventory_of(kube, root.parent.name) == [f"{ws}_tiny_amlops.io_Model"]

    since = deployer.mark()  # the inventory already says so: a repeat writes nothing
    code, out = apply(root, "--prune", capsys=capsys)
    assert code == 0 and "0 change(s)" in out
    assert writes(deployer.records(since)) == []


def test_gitsource_style_sync_of_a_new_revision_writes_nothing_then_prunes(
    deployer: Proxy, kube: Kube, repo: tuple[Path, str]
) -> None:
    """The package the GitSource handler uses, on the real API server: bodies stamped with a
    revision apply once; the next revision of the same content makes 0 writes; an emptied
    revision is refused, then pruned when allowed."""
    root, ws = repo
    report = validate_paths([root / "manifests"], sdk=False)
    labels = {"app.kubernetes.io/managed-by": "amlops", "amlops.io/source": f"{ws}.platform"}
    bodies = gitops_apply.build_objects(
        report.manifests,
        namespace=ws,
        origin_of=lambda f: Origin(Path(f).relative_to(root).as_posix(), None),
        labels=labels,
        volatile={gitops_apply.REVISION: "a" * 40},
    )
    api = k8s_config.new_client_from_config(os.environ["KUBECONFIG"], persist_config=False)
    k = gitops_apply.Kube(api, field_manager="amlops-gitsource")
    options = gitops_apply.SyncOptions(labels=labels, volatile=(gitops_apply.REVISION,), prune=True)
    first = gitops_apply.sync(k, bodies, options, Inventory())
    assert first.applied == 2, first.plan.lines
    model = kube.get(ws, "Model", "tiny")
    assert model is not None
    assert model["metadata"]["annotations"][gitops_apply.REVISION] == "a" * 40
    managers = {f["manager"] for f in model["metadata"]["managedFields"]}
    assert "amlops-gitsource" in managers

    for body in bodies:  # the next revision, same content
        body["metadata"]["annotations"][gitops_apply.REVISION] = "b" * 40
    since = deployer.mark()
    second = gitops_apply.sync(k, bodies, options, first.inventory)
    assert (second.written, second.unchanged) == (0, 2)
    assert writes(deployer.records(since)) == []
    lists = [r for r in deployer.records(since) if r.verb == "list"]
    assert lists == []  # without a selector the objects are read by name

    with pytest.raises(PruneAllRefused):
        gitops_apply.sync(k, [], options, second.inventory)
    allowed = gitops_apply.SyncOptions(labels=labels, prune=True, allow_empty=True)
    third = gitops_apply.sync(k, [], allowed, second.inventory)
    assert third.pruned == 2 and third.inventory == Inventory()
    kube.wait_gone(ws, "Endpoint", "online")
