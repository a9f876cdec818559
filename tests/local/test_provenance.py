"""Every asset `amlops up` makes is tagged with the Git commit and manifest that made it; a new
commit alone changes nothing, and uncommitted manifests are marked ``-dirty``."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from amlops.backends.local.backend import LocalBackend
from amlops.core.manifests import load_tree
from amlops.core.provenance import TAG_COMMIT, TAG_MANIFEST, Provenance, files_commit
from amlops.reconcile.tree import TreeReconciler

from .conftest import amlops, obj, status_json

MODEL = "manifests/models/slm-base.yaml"
PIPELINE = "manifests/pipelines/finetune-support-slm.yaml"
ENDPOINT = "manifests/endpoints/support-online.yaml"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(platform: Path) -> Path:
    """The example platform as the only thing in a fresh Git repository (manifests/ at its top)."""
    top = platform.parent
    git(top, "init", "-q")
    (top / ".gitignore").write_text("state/\n")
    commit_all(top, "the platform")
    return top


def provenance(commit: str, manifest: str) -> dict[str, str]:
    return {TAG_COMMIT: commit, TAG_MANIFEST: manifest}


def subset(tags: dict[str, Any], wanted: dict[str, str]) -> dict[str, Any]:
    return {k: tags.get(k) for k in wanted}


def test_origin_is_the_commit_and_the_path_from_the_top(repo: Path, tmp_path: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    origins = Provenance()
    # from any working directory, and whichever way the path is written
    assert origins.tags(repo / "manifests" / "models" / ".." / "models" / "slm-base.yaml") == (
        provenance(head, MODEL)
    )
    (repo / MODEL).write_text((repo / MODEL).read_text() + "# edited\n")
    (repo / "manifests" / "new.yaml").write_text("kind: Model\n")
    # one answer per repository per Provenance: a driver makes one per pass
    assert origins.tags(repo / MODEL)[TAG_COMMIT] == head
    fresh = Provenance()
    assert fresh.tags(repo / MODEL) == provenance(f"{head}-dirty", MODEL)
    assert fresh.tags(repo / "manifests" / "new.yaml")[TAG_COMMIT] == f"{head}-dirty"
    assert fresh.tags(repo / PIPELINE) == provenance(head, PIPELINE)

    outside = tmp_path.parent / f"{tmp_path.name}-no-git" / "m.yaml"
    outside.parent.mkdir()
    outside.write_text("kind: Model\n")
    assert Provenance().tags(outside) == {TAG_MANIFEST: str(outside)}  # no Git, no commit


def test_up_tags_every_asset_and_a_new_commit_alone_writes_nothing(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    state = repo / "state"
    amlops("up", "manifests", "--once", "--state-dir", str(state), cwd=repo, check=0)

    status = status_json(repo, state)
    model = obj(status, "Model", "slm-base")
    assert subset(model["tags"], provenance(head, MODEL)) == provenance(head, MODEL)
    assert model["tags"]["owner"] == "ml-platform@contoso.com"  # the manifest's own tags stay
    pipeline = obj(status, "Pipeline", "finetune-support-slm")
    assert subset(pipeline["tags"], provenance(head, PIPELINE)) == provenance(head, PIPELINE)
    endpoint = obj(status, "Endpoint", "support-online")
    assert endpoint["tags"] == provenance(head, ENDPOINT)
    assert endpoint["deploymentTags"] == {
        "blue": provenance(head, ENDPOINT),
        "green": provenance(head, ENDPOINT),
    }

    # a new commit that changes no manifest's content: nothing is re-registered or rerun, and
    # once everything serves again a pass writes nothing; the tags keep the first commit
    (repo / "README.md").write_text("notes\n")
    (repo / MODEL).write_text((repo / MODEL).read_text() + "# a comment only\n")
    newer = commit_all(repo, "comments")
    assert newer != head
    manifests = load_tree([repo / "manifests"]).manifests
    with LocalBackend(state) as backend:
        backend.start()
        reconciler = TreeReconciler(backend, backend.objects, backend.seed_computes)
        versions = backend.catalog.count_model_versions()
        run_id = pipeline["status"]["runId"]
        for _ in range(120):
            if all(r.settled for r in reconciler.reconcile(manifests)):
                break
            time.sleep(0.25)  # the scoring servers come up again
        before = backend.db.writes
        reports = reconciler.reconcile(manifests)
        assert all(r.settled for r in reports)
        assert backend.db.writes - before == 0

        assert backend.catalog.count_model_versions() == versions
        run = backend.latest_pipeline_run(pipeline["workspace"], "finetune-support-slm")
        assert run is not None and run.run_id == run_id  # not rerun for the new commit
        assert run.tags[TAG_COMMIT] == head
        # the model the run registered carries the run's provenance (and the run's id)
        outputs = [ref.split(":") for ref in run.outputs.values()]
        registered = [backend.get_model_version(run.workspace, n, v) for n, v in outputs]
        assert registered and all(
            m is not None and m.tags[TAG_COMMIT] == head and m.tags["amlops-run"] == run_id
            for m in registered
        )
        ep = backend.get_endpoint(endpoint["workspace"], "support-online")
        assert ep is not None and dict(ep.tags) == provenance(head, ENDPOINT)


def test_an_uncommitted_manifest_is_marked_dirty(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    text = (repo / MODEL).read_text()
    (repo / MODEL).write_text(text + "# not committed yet\n")
    state = repo / "state"
    amlops("up", "manifests", "--once", "--state-dir", str(state), cwd=repo, check=0, timeout=180)
    status = status_json(repo, state)
    assert obj(status, "Model", "slm-base")["tags"][TAG_COMMIT] == f"{head}-dirty"
    assert obj(status, "Endpoint", "support-online")["tags"][TAG_COMMIT] == head


def test_a_folder_laid_out_as_a_bare_repository_runs_nothing(tmp_path: Path) -> None:
    """Model files from a repository (a GitSource's artifact) may hold a folder that looks like
    a bare repository whose config names a command `git status` would run (core.fsmonitor):
    asking which commit the files are at must neither run it nor take that folder's word."""
    marker = tmp_path / "ran"
    planted = tmp_path / "artifact" / "model"
    subprocess.run(["git", "init", "-q", "--bare", str(planted)], check=True)
    hook = planted / "fsmonitor.sh"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    git(planted, "config", "core.fsmonitor", str(hook))
    git(planted, "config", "core.worktree", ".")
    (planted / "weights.bin").write_bytes(b"w")

    assert files_commit(planted) is None  # not a checkout amlops trusts
    assert files_commit(planted / "weights.bin") is None
    assert not marker.exists()
