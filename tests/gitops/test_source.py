"""The GitSource sync's decisions without a cluster: a real Git server on loopback, the API
server replaced by a dict. What a failed apply remembers, what the backend learns and when,
that a sync never raises, which Secrets it may read, whose objects it refuses, which inventory
entries it trusts, which artifacts stay; and the receiver's lookup on any replica."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, cast

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from amlops.core.manifests import Manifest
from amlops.gitops import apply as gitops_apply
from amlops.gitops import artifacts
from amlops.gitops.apply import REVISION, ApplyError, SyncResult
from amlops.gitops.inventory import Inventory
from amlops.handlers import git_source, receiver
from amlops.handlers.git_source import Source, SyncFailed
from amlops.handlers.options import Settings
from amlops.handlers.runtime import Runtime
from amlops.kinds.git_source import CREDENTIALS_LABEL, GitSource, Ref
from tests.gitops.test_inventory import FakeKube
from tests.gitserver import GitServer, Repository, model_manifest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PLATFORM = ROOT / "manifests" / "platform"


def files(description: str = "first") -> dict[str, str | bytes | None]:
    return {
        "platform/workspaces.yaml": (PLATFORM / "workspaces.yaml").read_text(),
        "platform/compute.yaml": (PLATFORM / "compute.yaml").read_text(),
        "models/a.yaml": model_manifest("a", description),
        "models/b.yaml": model_manifest("b"),
        "assets/a/weights.txt": "a\n",
        "assets/b/weights.txt": "b\n",
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("git")) as s:
        yield s


class Learnt:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def learn(self, manifests: Sequence[Manifest]) -> None:
        self.calls.append(sorted(m.kind for m in manifests))


class RefusingKube(FakeKube):
    def __init__(self) -> None:
        super().__init__()
        self.refuse: set[str] = set()

    def apply(self, path: str, body: dict[str, Any]) -> None:
        if body["metadata"]["name"] in self.refuse:
            raise ApplyError(f"PATCH {path}: 422 invalid")
        super().apply(path, body)


def runtime(tmp_path: Path, kube: FakeKube, monkeypatch: pytest.MonkeyPatch) -> Any:
    managers: list[str] = []

    def make(_api: Any, manager: str) -> FakeKube:
        managers.append(manager)
        kube.field_manager = manager
        return kube

    monkeypatch.setattr(gitops_apply, "Kube", make)
    learnt = Learnt()
    rt = SimpleNamespace(settings=Settings(state_dir=tmp_path), kube=None, sources=learnt)
    return rt


def body(server: GitServer, repo: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team", "name": "platform", "uid": "u-1"},
        "spec": {"url": server.git_url(repo), "ref": {"branch": "main"}, "prune": True},
        "status": status or {},
    }


def test_a_failed_apply_remembers_what_it_wrote_and_teaches_the_backend_nothing(
    server: GitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo: Repository = server.create("failing")
    repo.commit(files())
    kube = RefusingKube()
    kube.refuse = {"b"}
    rt = runtime(tmp_path, kube, monkeypatch)
    result = git_source.sync(cast(Runtime, rt), Source.of(body(server, "failing")))
    assert result.outcome.reason == git_source.APPLY_FAILED
    # "a" was applied before "b" failed: it is in the inventory a later prune reads
    ids = [e["id"] for e in result.fields["inventory"]["entries"]]
    assert ids == ["team_a_amlops.io_Model"]
    assert rt.sources.calls == []  # nothing learnt from a revision that did not apply
    assert kube.managers == [git_source.FIELD_MANAGER]

    kube.refuse = set()
    status = {"inventory": result.fields["inventory"]}
    result = git_source.sync(cast(Runtime, rt), Source.of(body(server, "failing", status)))
    assert result.outcome.reason == git_source.SUCCEEDED
    # only the compute, and only now: Workspaces come from the operator's own root and Pulumi
    (learnt,) = rt.sources.calls
    assert learnt and set(learnt) == {"ComputeCluster"}
    # Azure ML's compute is Pulumi's: what the checkout taught it is not replaced
    rt.settings = Settings(state_dir=tmp_path, backend="azureml")
    git_source.sync(cast(Runtime, rt), Source.of(body(server, "failing", status)))
    assert len(rt.sources.calls) == 1


def test_an_unexpected_error_is_a_sync_failed_outcome(
    server: GitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.create("broken-disk").commit(files())
    rt = runtime(tmp_path, FakeKube(), monkeypatch)

    def full(*_: Any, **__: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "materialise", full)
    result = git_source.sync(cast(Runtime, rt), Source.of(body(server, "broken-disk")))
    assert result.outcome.reason == git_source.SYNC_FAILED
    assert "OSError" in result.outcome.message
    assert result.fields["lastAttemptedRevision"].startswith("main@sha1:")


def test_a_huge_repository_is_refused(
    server: GitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.create("huge").commit(files())
    rt = runtime(tmp_path, FakeKube(), monkeypatch)
    rt.settings = Settings(state_dir=tmp_path, source_max_mib=0)
    result = git_source.sync(cast(Runtime, rt), Source.of(body(server, "huge")))
    assert result.outcome.reason == git_source.FETCH_FAILED
    assert "exceeds 0 MiB" in result.outcome.message


class FakeSecrets:
    """``CoreV1Api`` reading one Secret."""

    secret: Any = None

    def __init__(self, _api: Any = None) -> None:
        pass

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        if self.secret is None:
            raise ApiException(status=404)
        return self.secret


def secret(data: dict[str, bytes], labels: dict[str, str] | None) -> Any:
    encoded = {k: base64.b64encode(v).decode() for k, v in data.items()}
    return k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="s", labels=labels), data=encoded)


def test_only_a_secret_labelled_for_gitsources_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s, "CoreV1Api", FakeSecrets)
    FakeSecrets.secret = secret({"password": b"s3cret-token", "token": b"hook-key"}, None)
    with pytest.raises(SyncFailed) as err:
        git_source.read_secret(None, "team", "s")
    assert err.value.reason == git_source.FETCH_FAILED
    assert CREDENTIALS_LABEL in str(err.value) and "s3cret" not in str(err.value)
    assert receiver.read_key(None, "team", "s") is None  # the receiver's key: the same rule
    FakeSecrets.secret = secret({"password": b"s3cret-token", "token": b"hook-key"}, {})
    FakeSecrets.secret.metadata.labels = {CREDENTIALS_LABEL: "true"}
    assert git_source.read_secret(None, "team", "s")["password"] == b"s3cret-token"
    assert receiver.read_key(None, "team", "s") == b"hook-key"


def test_a_password_that_is_not_utf8_is_a_fetch_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(git_source, "read_secret", lambda *_: {"password": b"\xff\xfe\xfdtok"})
    spec = GitSource("https://h/r.git", Ref(), ".", 60, 60, "s", None, "", False, True)
    src = Source("team", "platform", "u", 1, {}, {}, {})
    with pytest.raises(SyncFailed) as err:
        git_source.credentials_of(cast(Runtime, SimpleNamespace(kube=None)), src, spec)
    assert err.value.reason == git_source.FETCH_FAILED and "UTF-8" in str(err.value)


def test_inventory_entries_of_other_namespaces_are_ignored() -> None:
    entries = [
        {"id": "team_a_amlops.io_Model", "v": "v1alpha1"},
        {"id": "other_victim_amlops.io_Model", "v": "v1alpha1"},
    ]
    src = Source.of(
        {
            "metadata": {"namespace": "team", "name": "p"},
            "status": {"inventory": {"entries": entries}},
        }
    )
    assert [e.id for e in src.inventory.entries] == ["team_a_amlops.io_Model"]


def test_objects_of_another_source_or_an_apply_instance_are_claimed() -> None:
    src = Source("team", "platform", "u", 1, {}, {}, {})

    def live(**labels: str) -> dict[str, Any]:
        return {"metadata": {"labels": labels}}

    mine = {"amlops.io/source-name": "platform", "amlops.io/source-namespace": "team"}
    assert git_source.claimant(src, live(**mine)) is None
    assert git_source.claimant(src, live()) is None  # kubectl's: taken over, as Flux does
    other = {**mine, "amlops.io/source-name": "second"}
    assert git_source.claimant(src, live(**other)) == "GitSource team/second"
    cli = git_source.claimant(src, live(**{"amlops.io/instance": "default"}))
    assert cli is not None and "default" in cli


def test_artifacts_in_use_are_the_new_commit_and_untouched_objects_revisions() -> None:
    old, new = "a" * 40, "b" * 40
    result = SyncResult(gitops_apply.Plan([]), Inventory())
    result.untouched = [
        {"metadata": {"annotations": {REVISION: old}}},
        {"metadata": {}},
    ]
    assert git_source.in_use(new, result) == (old, new)


class FakeSources:
    """``CustomObjectsApi`` holding GitSources; counts the reads."""

    objects: ClassVar[dict[tuple[str, str], dict[str, Any]]] = {}
    reads: ClassVar[int] = 0

    def __init__(self, _api: Any = None) -> None:
        pass

    def get_namespaced_custom_object(self, *args: str) -> dict[str, Any]:
        FakeSources.reads += 1
        namespace, name = args[2], args[4]
        found = self.objects.get((namespace, name))
        if found is None:
            raise ApiException(status=404)
        return copy.deepcopy(found)


def test_the_receiver_looks_the_source_up_through_the_api_and_caches_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(k8s, "CustomObjectsApi", FakeSources)
    FakeSources.objects = {
        ("team", "platform"): {"spec": {"receiver": {"secretRef": {"name": "hook"}}}},
        ("team", "quiet"): {"spec": {}},
    }
    FakeSources.reads = 0
    now = [0.0]
    lookup = receiver.Lookup(ttl=10, clock=lambda: now[0])
    assert lookup.secret_of(None, "team", "platform") == "hook"
    assert lookup.secret_of(None, "team", "platform") == "hook"
    assert FakeSources.reads == 1  # a burst of pushes is one read
    assert lookup.secret_of(None, "team", "quiet") is None  # no receiver
    assert lookup.secret_of(None, "team", "nowhere") is None  # no such GitSource
    FakeSources.objects[("team", "platform")]["spec"]["receiver"]["secretRef"]["name"] = "new"
    now[0] = 11.0
    assert lookup.secret_of(None, "team", "platform") == "new"
