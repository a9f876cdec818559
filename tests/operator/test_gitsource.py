"""GitSource: the real operator fetches a loopback Git server over smart HTTP with a token,
validates each revision with the core of ``amlops validate`` and applies what it holds; a bad
revision is held back with the last good one in force; the push receiver triggers a sync."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from amlops.core.locator import ObjectLocator
from amlops.gitops.artifacts import artifacts_dir
from amlops.handlers import receiver
from amlops.handlers.objects import (
    Applied,
    ArtifactsNotFound,
    Resource,
    SpecError,
    source_of,
)
from amlops.kinds import ORDER
from amlops.kinds.git_source import CREDENTIALS_LABEL, parse
from tests.envtest.apiserver import Cluster
from tests.gitserver import GitServer, Repository, model_manifest
from tests.operator.harness import (
    ROOT,
    BackendView,
    Kube,
    OperatorProcess,
    condition,
    deploy_documents,
    is_ready,
    model_spec,
    phase,
    reason_is,
    wait_for,
)
from tests.operator.proxy import Proxy, rbac_rules
from tests.platform_text import manifest

pytestmark = [pytest.mark.envtest, pytest.mark.slow]

APPLIED_KINDS = ("models", "pipelines", "endpoints", "serverlessendpoints")
# What only a GitSource makes the operator do (test_rbac.py leaves these to this module): read
# its Secret, read / create (server-side apply) / prune the objects, patch the GitSource.
GITSOURCE_ONLY = {
    ("amlops.io", plural, verb) for plural in APPLIED_KINDS for verb in ("get", "create", "delete")
} | {
    ("", "secrets", "get"),
    ("amlops.io", "gitsources", "patch"),
    ("amlops.io", "gitsources/status", "patch"),
}
# the receiver, on every replica, reads the GitSource a push names
RECEIVER_ONLY = {("amlops.io", "gitsources", "get")}
GITSOURCE_ONLY |= RECEIVER_ONLY
SERVERLESS = manifest(
    "ServerlessEndpoint",
    "llama",
    """\
    workspace: mlw-platform-dev
    endpoint:
      name: llama-chat
      model_id: azureml://registries/azureml-meta/models/Meta-Llama-3-8B-Instruct
    """,
)

TOKEN = "gs-token-5b1f0c7e9a2d4c86"  # the HTTPS token: must never show up anywhere
HOOK_KEY = "gs-hook-key-e3a94f7b0c12"
WORKSPACES = (ROOT / "manifests" / "platform" / "workspaces.yaml").read_text()


def model(name: str, owner: str, description: str = "first", *, pinned: bool = True) -> str:
    """A Model manifest; its Azure ML name is the test's (``owner``): the suite's operator has
    one backend, where a model name belongs to one object."""
    return model_manifest(name, description, model=f"{owner}-{name}", pinned=pinned)


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("git"), token=TOKEN) as server:
        yield server


def create_secret(
    kube: Kube, namespace: str, name: str, data: Mapping[str, str], *, labelled: bool = True
) -> None:
    """A Secret a GitSource may read (``labelled``: the opt-in label) or any other Secret."""
    labels = {CREDENTIALS_LABEL: "true"} if labelled else None
    body = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=name, labels=labels), string_data=dict(data))
    kube.core.create_namespaced_secret(namespace, body)


def source_spec(git: GitServer, repo: str, **spec: Any) -> dict[str, Any]:
    return {
        "url": git.http_url(repo),
        "ref": {"branch": "main"},
        "interval": "1h",  # syncs in these tests come from changes, requests and the receiver
        "secretRef": {"name": "git-auth"},
        "receiver": {"secretRef": {"name": "hook"}},
        "prune": True,
        **spec,
    }


def create_source(
    kube: Kube, namespace: str, git: GitServer, repo: str, **spec: Any
) -> dict[str, Any]:
    create_secret(kube, namespace, "git-auth", {"username": git.user, "password": TOKEN})
    create_secret(kube, namespace, "hook", {"token": HOOK_KEY})
    return kube.create(namespace, "GitSource", "platform", source_spec(git, repo, **spec))


def request_sync(kube: Kube, namespace: str) -> None:
    """What the receiver does: Flux's requestedAt, as an annotation."""
    stamp = f"{time.time():.6f}"
    kube.patch(
        namespace,
        "GitSource",
        "platform",
        {"metadata": {"annotations": {"amlops.io/requestedAt": stamp}}},
    )


def applied(sha: str) -> Any:
    def check(obj: Mapping[str, Any]) -> bool:
        status = obj.get("status") or {}
        return bool(
            status.get("lastAppliedRevision") == f"main@sha1:{sha}"
            and phase(obj) == ("True", "Succeeded")
        )

    return check


def attempted(sha: str, reason: str) -> Any:
    def check(obj: Mapping[str, Any]) -> bool:
        status = obj.get("status") or {}
        return bool(
            status.get("lastAttemptedRevision") == f"main@sha1:{sha}" and phase(obj)[1] == reason
        )

    return check


def wait_source(
    kube: Kube, op: OperatorProcess, namespace: str, predicate: Any, timeout: float = 60
) -> dict[str, Any]:
    """``kube.wait`` on the GitSource; a timeout shows its status and the operator's log."""
    try:
        return kube.wait(namespace, "GitSource", "platform", predicate, timeout=timeout)
    except AssertionError as exc:
        obj = kube.get(namespace, "GitSource", "platform") or {}
        raise AssertionError(f"{exc}\nstatus: {obj.get('status')}\n{op.tail(30)}") from None


def tiny_repo(git: GitServer, name: str, owner: str) -> tuple[Repository, str]:
    repo = git.create(name)
    sha = repo.commit(
        {
            "platform/workspaces.yaml": WORKSPACES,
            "models/tiny.yaml": model("tiny", owner),
            "models/other.yaml": model("other", owner),
            "assets/tiny/weights.txt": "tiny-1\n",
            "assets/other/weights.txt": "other-1\n",
        }
    )
    return repo, sha


def synced(
    kube: Kube, op: OperatorProcess, git: GitServer, namespace: str, prefix: str, **spec: Any
) -> tuple[Repository, str]:
    """``tiny_repo`` ``<prefix>-<namespace>`` delivered by the GitSource ``platform`` (``spec``
    added), once it applied the first commit; the repository and that commit."""
    repo, sha = tiny_repo(git, f"{prefix}-{namespace}", namespace)
    create_source(kube, namespace, git, f"{prefix}-{namespace}", **spec)
    wait_source(kube, op, namespace, applied(sha), timeout=60)
    return repo, sha


def entries(obj: Mapping[str, Any]) -> list[str]:
    return [e["id"] for e in (obj.get("status") or {}).get("inventory", {}).get("entries", [])]


def test_the_example_platform_delivered_by_a_gitsource_reaches_ready(
    op: OperatorProcess, kube: Kube, proxy: Proxy, git: GitServer, namespace: str
) -> None:
    since = proxy.mark()
    repo = git.create("example")
    files: dict[str, str | bytes | None] = {
        f"manifests/{p.relative_to(ROOT / 'manifests').as_posix()}": p.read_bytes()
        for p in sorted((ROOT / "manifests").rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    files["manifests/endpoints/llama.yaml"] = SERVERLESS  # one object of every applied kind
    sha = repo.commit(files)
    create_source(kube, namespace, git, "example", path="manifests")
    source = wait_source(kube, op, namespace, applied(sha), timeout=120)
    assert source["status"]["artifact"]["revision"] == f"main@sha1:{sha}"
    ids = entries(source)
    assert f"{namespace}_slm-base_amlops.io_Model" in ids
    assert f"{namespace}_slm-base-prod_amlops.io_Model" in ids  # D10: one namespace, two names
    assert f"{namespace}_support-online_amlops.io_Endpoint" in ids

    base = kube.wait(namespace, "Model", "slm-base", is_ready, timeout=120)
    notes = base["metadata"]["annotations"]
    assert notes["amlops.io/source"] == f"{namespace}/platform"
    assert notes["amlops.io/revision"] == sha
    assert notes["amlops.io/source-file"] == "manifests/models/slm-base.yaml"
    # no owner reference: Kubernetes' garbage collector must never delete Azure assets
    assert not base["metadata"].get("ownerReferences")
    labels = base["metadata"]["labels"]
    assert (labels["amlops.io/source-name"], labels["amlops.io/source-namespace"]) == (
        "platform",
        namespace,
    )
    # `path: ../assets/slm-base` resolved inside the source's artifact; tagged with its commit
    view = BackendView(op)
    try:
        version = view.backend.get_model_version("mlw-platform-dev", "slm-base", "1")
        assert version is not None
        assert version.tags.get("amlops-commit") == sha
        assert version.tags.get("amlops-manifest") == "manifests/models/slm-base.yaml"
    finally:
        view.close()
    kube.wait(namespace, "Pipeline", "finetune-support-slm", is_ready, timeout=300)
    kube.wait(namespace, "Endpoint", "support-online", is_ready, timeout=300)

    # deleting the source prunes what it applied (spec.prune: true)
    kube.delete(namespace, "GitSource", "platform")
    for kind, name in (("Endpoint", "support-online"), ("ServerlessEndpoint", "llama")):
        kube.wait_gone(namespace, kind, name, timeout=120)
    kube.wait_gone(namespace, "GitSource", "platform", timeout=120)
    used = set().union(*(rbac_rules(r) for r in proxy.records(since)))
    assert sorted(GITSOURCE_ONLY - RECEIVER_ONLY - used) == []


def test_a_bad_revision_is_held_back_and_the_last_good_one_stays(
    op: OperatorProcess, kube: Kube, git: GitServer, namespace: str
) -> None:
    repo, good = synced(kube, op, git, namespace, "held")
    kube.wait(namespace, "Model", "tiny", is_ready, timeout=60)

    broken = repo.commit({"models/tiny.yaml": "apiVersion: amlops.io/v1alpha1\nkind: [Model\n"})
    request_sync(kube, namespace)
    source = wait_source(kube, op, namespace, attempted(broken, "ValidationFailed"), timeout=60)
    status = source["status"]
    assert status["lastAppliedRevision"] == f"main@sha1:{good}"
    assert status["artifact"]["revision"] == f"main@sha1:{broken}"  # fetched, not applied
    assert condition(source, "Stalled")["reason"] == "ValidationFailed"
    first = status["findings"][0]
    # the unclosed flow sequence of line 2, reported where the parser gives up
    assert first["file"] == "models/tiny.yaml" and first["line"] in (2, 3)
    assert first["rule"].startswith("load.")
    assert f"{namespace}_tiny_amlops.io_Model" in entries(source)  # nothing pruned
    tiny = kube.get(namespace, "Model", "tiny")
    assert tiny is not None and is_ready(tiny)
    assert tiny["metadata"]["annotations"]["amlops.io/revision"] == good
    warnings = wait_for(
        lambda: [e.reason for e in kube.events(namespace, "platform") if e.type == "Warning"],
        what="the ValidationFailed Event",
    )
    assert warnings == ["ValidationFailed"]

    # a policy error (an unpinned model version) is held back the same way
    unpinned = repo.commit({"models/tiny.yaml": model("tiny", namespace, "second", pinned=False)})
    request_sync(kube, namespace)
    source = wait_source(kube, op, namespace, attempted(unpinned, "ValidationFailed"), timeout=60)
    findings = source["status"]["findings"]
    assert ("models/tiny.yaml", "model.version-pinned") in {
        (f["file"], f["rule"]) for f in findings
    }
    assert source["status"]["lastAppliedRevision"] == f"main@sha1:{good}"
    live = kube.get(namespace, "Model", "tiny")
    assert live is not None and live["spec"]["model"]["description"] == "first"

    fixed = repo.commit({"models/tiny.yaml": model("tiny", namespace, "third")})
    request_sync(kube, namespace)
    source = wait_source(kube, op, namespace, applied(fixed), timeout=60)
    assert "findings" not in source["status"]
    live = kube.get(namespace, "Model", "tiny")
    assert live is not None and live["spec"]["model"]["description"] == "third"
    assert live["metadata"]["annotations"]["amlops.io/revision"] == fixed


def test_removing_a_file_prunes_its_object_and_deleting_the_source_prunes_the_rest(
    op: OperatorProcess, kube: Kube, git: GitServer, namespace: str
) -> None:
    repo, first = synced(kube, op, git, namespace, "prune")
    kube.wait(namespace, "Model", "other", is_ready, timeout=60)
    tiny_before = kube.get(namespace, "Model", "tiny")
    assert tiny_before is not None

    second = repo.commit({"models/other.yaml": None})
    request_sync(kube, namespace)
    source = wait_source(kube, op, namespace, applied(second), timeout=60)
    kube.wait_gone(namespace, "Model", "other", timeout=60)
    assert entries(source) == [f"{namespace}_tiny_amlops.io_Model"]
    tiny = kube.get(namespace, "Model", "tiny")
    assert tiny is not None  # unchanged: not written again, its revision is the first one
    assert tiny["metadata"]["generation"] == tiny_before["metadata"]["generation"]
    assert tiny["metadata"]["annotations"]["amlops.io/revision"] == first  # a write would move it

    kube.delete(namespace, "GitSource", "platform")
    kube.wait_gone(namespace, "GitSource", "platform", timeout=60)
    kube.wait_gone(namespace, "Model", "tiny", timeout=60)


def test_a_suspended_source_syncs_nothing_until_resumed(
    op: OperatorProcess, kube: Kube, git: GitServer, namespace: str
) -> None:
    repo, first = synced(kube, op, git, namespace, "suspend")
    kube.patch(namespace, "GitSource", "platform", {"spec": {"suspend": True}})
    wait_source(kube, op, namespace, reason_is("Suspended"), timeout=30)
    second = repo.commit({"models/other.yaml": None})
    request_sync(kube, namespace)
    time.sleep(3)
    source = kube.get(namespace, "GitSource", "platform")
    assert source is not None and source["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
    assert kube.get(namespace, "Model", "other") is not None
    kube.patch(namespace, "GitSource", "platform", {"spec": {"suspend": False}})
    wait_source(kube, op, namespace, applied(second), timeout=60)
    kube.wait_gone(namespace, "Model", "other", timeout=60)


def test_deleting_a_source_without_prune_leaves_its_objects_unowned(
    op: OperatorProcess, kube: Kube, git: GitServer, namespace: str
) -> None:
    synced(kube, op, git, namespace, "keep", prune=False)
    kube.wait(namespace, "Model", "tiny", is_ready, timeout=60)
    kube.delete(namespace, "GitSource", "platform")
    kube.wait_gone(namespace, "GitSource", "platform", timeout=60)
    # envtest runs no garbage collector: in a cluster, an owner reference left behind would
    # have the objects deleted with the source, so its absence is what keeps them
    for name in ("tiny", "other"):
        obj = kube.get(namespace, "Model", name)
        assert obj is not None and not obj["metadata"].get("ownerReferences")
        assert obj["metadata"].get("deletionTimestamp") is None


def _post(op: OperatorProcess, namespace: str, body: bytes, headers: dict[str, str]) -> int:
    url = f"http://127.0.0.1:{op.receiver_port}/hook/{namespace}/platform"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_the_receiver_triggers_a_sync_only_with_a_good_signature(
    op: OperatorProcess, kube: Kube, proxy: Proxy, git: GitServer, namespace: str
) -> None:
    since = proxy.mark()
    repo, first = synced(kube, op, git, namespace, "hook")
    second = repo.commit({"models/tiny.yaml": model("tiny", namespace, "pushed")})
    body = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
    good = "sha256=" + hmac.new(HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
    bad = "sha256=" + hmac.new(b"not-the-key", body, hashlib.sha256).hexdigest()

    for headers in (
        {"X-Hub-Signature-256": bad},
        {"X-Signature": bad},
        {},
        {"X-Hub-Signature-256": good.replace("sha256=", "sha1=")},
    ):
        assert _post(op, namespace, body, headers) == 401
    assert _post(op, namespace, b"x" * (2 * 1024 * 1024), {"X-Signature": good}) == 413
    assert _post(op, "nowhere", body, {"X-Hub-Signature-256": good}) == 401
    time.sleep(3)  # the interval is an hour: nothing else may sync it
    source = kube.get(namespace, "GitSource", "platform")
    assert source is not None
    assert source["status"]["lastAppliedRevision"] == f"main@sha1:{first}"
    assert "amlops.io/requestedAt" not in (source["metadata"].get("annotations") or {})

    assert _post(op, namespace, body, {"X-Hub-Signature-256": good}) == 202
    source = wait_source(kube, op, namespace, applied(second), timeout=30)
    requested = source["metadata"]["annotations"]["amlops.io/requestedAt"]
    assert source["status"]["lastHandledReconcileAt"] == requested
    third = repo.commit({"models/tiny.yaml": model("tiny", namespace, "generic")})
    body = b"{}"
    generic = "sha256=" + hmac.new(HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
    assert _post(op, namespace, body, {"X-Signature": generic}) == 202
    wait_source(kube, op, namespace, applied(third), timeout=30)
    # the receiver read the GitSource through the API, as a standby replica (which runs no
    # GitSource handler) does
    used = set().union(*(rbac_rules(r) for r in proxy.records(since)))
    assert sorted(RECEIVER_ONLY - used) == []


def test_a_second_source_declaring_an_object_is_refused_naming_its_owner(
    op: OperatorProcess, kube: Kube, git: GitServer, namespace: str
) -> None:
    """Two GitSources declaring one Model would take it from each other every interval."""
    synced(kube, op, git, namespace, "own-a")
    other = git.create(f"own-b-{namespace}")
    other.commit(
        {
            "platform/workspaces.yaml": WORKSPACES,
            "models/tiny.yaml": model("tiny", namespace, "from-b"),
            "assets/tiny/weights.txt": "b\n",
        }
    )
    kube.create(namespace, "GitSource", "second", source_spec(git, f"own-b-{namespace}"))
    second = kube.wait(
        namespace, "GitSource", "second", reason_is("ApplyFailed"), timeout=60, what="ApplyFailed"
    )
    message = condition(second)["message"]
    assert f"Model {namespace}/tiny" in message and f"GitSource {namespace}/platform" in message
    assert entries(second) == []  # nothing of it was applied
    live = kube.get(namespace, "Model", "tiny")
    assert live is not None and live["spec"]["model"]["description"] == "first"
    assert live["metadata"]["labels"]["amlops.io/source-name"] == "platform"


def test_the_token_never_reaches_status_events_or_logs(
    op: OperatorProcess, kube: Kube, git: GitServer, namespace: str
) -> None:
    _, first = tiny_repo(git, f"secret-{namespace}", namespace)
    # a Secret without the opt-in label is not read: a GitSource cannot send just any Secret
    # of its namespace to the URL it names
    create_secret(
        kube, namespace, "other", {"username": git.user, "password": TOKEN}, labelled=False
    )
    create_source(kube, namespace, git, f"secret-{namespace}", secretRef={"name": "other"})
    source = wait_source(kube, op, namespace, reason_is("FetchFailed"), timeout=60)
    assert CREDENTIALS_LABEL in condition(source)["message"]
    assert "lastAttemptedRevision" not in source["status"]  # nothing was fetched
    # a wrong token: the fetch fails, saying so without the token
    create_secret(kube, namespace, "wrong", {"username": git.user, "password": TOKEN + "-old"})
    kube.patch(namespace, "GitSource", "platform", {"spec": {"secretRef": {"name": "wrong"}}})

    def refused(obj: Mapping[str, Any]) -> bool:
        message = str(condition(obj).get("message", ""))
        return "401" in message or "authentication" in message

    source = wait_source(kube, op, namespace, refused, timeout=60)
    assert "lastAppliedRevision" not in source["status"]
    kube.patch(namespace, "GitSource", "platform", {"spec": {"secretRef": {"name": "git-auth"}}})
    source = wait_source(kube, op, namespace, applied(first), timeout=60)

    def both() -> list[Any] | None:
        events = kube.events(namespace, "platform")
        return events if {e.reason for e in events} >= {"FetchFailed", "Succeeded"} else None

    events = wait_for(both, what="the FetchFailed and Succeeded Events")
    seen = json.dumps(source) + "".join(str(e.message) for e in events) + op.tail(100_000)
    assert TOKEN not in seen and HOOK_KEY not in seen


def test_an_object_without_a_source_naming_missing_files_is_told_so(
    op: OperatorProcess, kube: Kube, namespace: str
) -> None:
    """kubectl apply of the example's Model: its `path: ../assets/slm-base` means nothing
    outside Git, and the condition says what to do."""
    spec = model_spec(path="../assets/slm-base", name=f"{namespace}-nosrc")
    kube.create(namespace, "Model", "slm-base", spec)
    obj = kube.wait(namespace, "Model", "slm-base", reason_is("ArtifactsNotFound"), timeout=30)
    message = condition(obj)["message"]
    assert "spec.model.path" in message and "no source" in message and "GitSource" in message
    assert condition(obj, "Stalled")["reason"] == "ArtifactsNotFound"


def test_the_example_manifests_have_unique_names_per_kind() -> None:
    """D10: applied into one namespace (kubectl, a GitSource), no two objects collide."""
    seen: dict[tuple[str, str], Path] = {}
    for path in sorted((ROOT / "manifests").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ORDER:
                key = (doc["kind"], doc["metadata"]["name"])
                assert key not in seen, f"{key} in {path} and {seen[key]}"
                seen[key] = path


def test_a_spec_with_credentials_in_the_url_or_a_bad_interval_is_refused() -> None:
    locator = ObjectLocator("GitSource t/s")
    spec, findings = parse(
        {"url": f"https://user:{TOKEN}@git.example.com/p.git", "prune": True}, locator
    )
    assert spec is None and [f.field for f in findings] == ["spec.url"]
    assert TOKEN not in findings[0].message
    spec, findings = parse(
        {"url": "https://git.example.com/p.git", "interval": "5 min", "prune": True}, locator
    )
    assert spec is None and [f.field for f in findings] == ["spec.interval"]
    spec, findings = parse(
        {"url": "ssh://git@git.example.com/p.git", "path": "../up", "prune": True}, locator
    )
    assert spec is None and [f.field for f in findings] == ["spec.path"]
    spec, findings = parse(
        {
            "url": "ssh://git@git.example.com/p.git",
            "interval": "1h30m",
            "ref": {"tag": "v1"},
            "prune": False,
        },
        locator,
    )
    assert findings == [] and spec is not None
    assert (spec.interval_s, spec.timeout_s, spec.ref.tag) == (5400.0, 60.0, "v1")
    assert spec.prune is False
    # prune has no default (Flux's Kustomization): deleting what left Git is written down
    for prune in (None, "yes"):
        body = {"url": "https://git.example.com/p.git", "prune": prune}
        spec, findings = parse({k: v for k, v in body.items() if v is not None}, locator)
        assert spec is None and [f.field for f in findings] == ["spec.prune"]


def test_the_receiver_takes_a_body_signed_in_either_header_and_nothing_else() -> None:
    body, key = b'{"ref": "refs/heads/main"}', HOOK_KEY.encode()
    good = receiver.signature(key, body)
    assert good == "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    assert receiver.verified(key, body, {"X-Hub-Signature-256": good})
    assert receiver.verified(key, body, {"X-Signature": good.upper().replace("SHA256=", "sha256=")})
    assert not receiver.verified(key, body + b" ", {"X-Hub-Signature-256": good})
    assert not receiver.verified(b"other", body, {"X-Hub-Signature-256": good})
    assert not receiver.verified(key, body, {"X-Hub-Signature": good})  # not a header we read
    assert not receiver.verified(key, body, {})


def test_paths_of_an_object_without_a_source_leaving_the_root_are_artifacts_not_found(
    tmp_path: Path,
) -> None:
    obj = Resource.of(
        {"kind": "Model", "metadata": {"name": "m", "namespace": "team"}, "spec": model_spec()}
    )
    source = source_of(obj, tmp_path)
    want = (tmp_path / "models" / "m").resolve()  # in the root: the reconciler checks it is there
    assert source.resolve(("spec", "model", "path"), "models/m") == want
    for value in ("../assets/slm-base", "/etc"):
        with pytest.raises(ArtifactsNotFound, match=r"^spec\.model\.path: .*no source: name a"):
            source.resolve(("spec", "model", "path"), value)


def test_an_object_from_a_source_resolves_in_the_artifact_of_its_revision(tmp_path: Path) -> None:
    sha, older = "a" * 40, "b" * 40
    for commit, weights in ((sha, "new"), (older, "old")):
        folder = artifacts_dir(tmp_path, "team/platform") / commit / "assets" / "m"
        folder.mkdir(parents=True)
        (folder / "weights.txt").write_text(weights)
        (artifacts_dir(tmp_path, "team/platform") / f"{commit}.json").write_text("{}")  # finished
    annotations = {
        "amlops.io/source": "team/platform",
        "amlops.io/revision": older,
        "amlops.io/source-file": "manifests/models/m.yaml",  # spec.path is "manifests"
    }
    obj = sourced("team", annotations)
    Applied(sha, "manifests").write(tmp_path, "team/platform")
    source = source_of(obj, tmp_path / "checkout", state_dir=tmp_path)
    target = source.resolve(("spec", "model", "path"), "../assets/m")
    assert (target / "weights.txt").read_text() == "old"
    assert obj.tags()["amlops-commit"] == older
    with pytest.raises(SpecError, match="outside the source root"):
        source.resolve(("spec", "model", "path"), "../../../escape")
    # its own artifact collected: the source's last applied one holds the same files
    shutil.rmtree(artifacts_dir(tmp_path, "team/platform") / older)
    again = source_of(obj, tmp_path / "checkout", state_dir=tmp_path)
    assert (again.resolve(("spec", "model", "path"), "../assets/m") / "weights.txt").exists()
    shutil.rmtree(artifacts_dir(tmp_path, "team/platform") / sha)
    with pytest.raises(ArtifactsNotFound, match="team/platform"):
        source_of(obj, tmp_path / "checkout", state_dir=tmp_path)


def sourced(
    namespace: str, annotations: Mapping[str, str], labels: Mapping[str, str] | None = None
) -> Resource:
    """A Model as a GitSource applies it: its source's labels, unless ``labels`` says."""
    source_ns, _, source_name = annotations["amlops.io/source"].partition("/")
    given = (
        {"amlops.io/source-name": source_name, "amlops.io/source-namespace": source_ns}
        if labels is None
        else labels
    )
    return Resource.of(
        {
            "kind": "Model",
            "metadata": {
                "name": "m",
                "namespace": namespace,
                "annotations": dict(annotations),
                "labels": dict(given),
            },
            "spec": model_spec(),
        }
    )


def test_an_object_naming_another_namespaces_source_or_a_bad_revision_has_no_source(
    tmp_path: Path,
) -> None:
    """A user of namespace B must not read namespace A's artifact by naming its source."""
    sha = "c" * 40
    folder = artifacts_dir(tmp_path, "a/platform") / sha / "assets" / "m"
    folder.mkdir(parents=True)
    (folder / "weights.txt").write_text("a's")
    (artifacts_dir(tmp_path, "a/platform") / f"{sha}.json").write_text("{}")  # finished
    Applied(sha, ".").write(tmp_path, "a/platform")
    notes = {
        "amlops.io/source": "a/platform",
        "amlops.io/revision": sha,
        "amlops.io/source-file": "models/m.yaml",
    }
    checkout = tmp_path / "checkout"
    good = sourced("a", notes)
    assert good.source == "a/platform" and good.revision == sha
    assert (
        source_of(good, checkout, state_dir=tmp_path).resolve(
            ("spec", "model", "path"), "../assets/m"
        )
        == folder.resolve()
    )
    for obj in (
        sourced("b", notes),  # another namespace's source, its labels copied too
        sourced("a", notes, labels={}),  # the annotation alone
        sourced("a", notes, labels={"amlops.io/source-name": "other"}),
    ):
        assert obj.source is None
        # no source: resolved in the operator's own root, never in a's artifact
        target = source_of(obj, checkout, state_dir=tmp_path).resolve(
            ("spec", "model", "path"), "../assets/m"
        )
        assert target.is_relative_to(checkout.resolve())
    for revision in ("..", ".", "C" * 40, sha[:12], f"{sha}/.."):
        obj = sourced("a", {**notes, "amlops.io/revision": revision})
        assert obj.revision is None
        assert "amlops-commit" not in obj.tags()
    # a revision that is no commit falls back to the last applied artifact, never to its parent
    dotdot = sourced("a", {**notes, "amlops.io/revision": ".."})
    resolved = source_of(dotdot, checkout, state_dir=tmp_path).resolve(
        ("spec", "model", "path"), "../assets/m"
    )
    assert resolved == folder.resolve()


def test_the_deployment_exposes_the_receiver_through_a_service() -> None:
    (deployment,) = deploy_documents("deployment.yaml")
    pod = deployment["spec"]["template"]
    (operator,) = [c for c in pod["spec"]["containers"] if c["name"] == "operator"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports["receiver"] == int(env["AMLOPS_RECEIVER_PORT"])
    (service,) = deploy_documents("receiver-service.yaml")
    assert service["kind"] == "Service" and service["metadata"]["name"] == "amlops-receiver"
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["receiver"]


def test_the_standby_replica_answers_the_receiver_as_the_leader_does(
    cluster: Cluster,
    kube: Kube,
    operator: OperatorProcess,
    source_root: Path,
    tmp_path: Path,
    git: GitServer,
    namespace: str,
) -> None:
    """Behind a Service half the pushes reach the standby, which runs no GitSource handler."""
    from tests.operator.test_ha import peered  # test_ha imports this module (test_rbac)

    with peered(cluster, kube, operator, source_root, tmp_path) as (ops, _, _):
        repo, _ = synced(kube, ops[0], git, namespace, "ha")
        second = repo.commit({"models/tiny.yaml": model("tiny", namespace, "pushed")})
        body = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
        good = "sha256=" + hmac.new(HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
        assert [_post(op, namespace, body, {"X-Hub-Signature-256": good}) for op in ops] == [
            202,
            202,
        ]
        wait_source(kube, ops[0], namespace, applied(second), timeout=60)
