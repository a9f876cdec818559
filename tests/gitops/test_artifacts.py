"""``gitops.artifacts``: a commit's tree (only ``path``, minus ``ignore``) read-only on disk;
links out of it and oversize trees refused; old artifacts collected."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from amlops.core.limits import Limits
from amlops.gitops.artifacts import (
    ARTIFACT_REFUSED,
    PATH_NOT_FOUND,
    ArtifactError,
    artifact_dir,
    collect,
    materialise,
)
from amlops.gitops.fetch import Source, fetch
from amlops.kinds.git_source import Ref
from tests.gitserver import GitServer, Repository

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return GitServer(tmp_path).create("platform")  # a bare repository; no server needed


def test_only_the_path_minus_ignored_files_read_only(repo: Repository, tmp_path: Path) -> None:
    sha = repo.commit(
        {
            "manifests/model.yaml": "kind: Model\n",
            "manifests/sub/endpoint.yaml": "kind: Endpoint\n",
            "manifests/NOTES.md": "notes\n",
            "manifests/drafts/wip.yaml": "kind: Model\n",
            "manifests/run.sh": "#!/bin/sh\n",
            "docs/guide.md": "guide\n",
        },
        symlinks={"manifests/same.yaml": "sub/endpoint.yaml"},
    )
    os.chmod(repo.work / "manifests" / "run.sh", 0o755)
    sha = repo.commit({}, message="exec bit")
    state = tmp_path / "state"
    art = materialise(
        repo.bare, sha, state, "ns/src", path="./manifests/", ignore=["*.md", "manifests/drafts/"]
    )
    assert art.root == state / "artifacts" / art.root.parent.name / sha
    files = sorted(
        p.relative_to(art.root).as_posix() for p in art.root.rglob("*") if not p.is_dir()
    )
    assert files == ["model.yaml", "run.sh", "same.yaml", "sub/endpoint.yaml"]
    assert (art.root / "same.yaml").read_text() == "kind: Endpoint\n"
    assert art.files == 4 and art.path == "manifests"
    assert (art.root / "model.yaml").stat().st_mode & 0o777 == 0o444
    assert (art.root / "run.sh").stat().st_mode & 0o777 == 0o555
    assert (art.root / "sub").stat().st_mode & 0o777 == 0o555
    assert art.root.stat().st_mode & 0o777 == 0o555  # (root, as in CI containers, ignores it)
    assert artifact_dir(state, "ns/src", sha) == art.root
    assert artifact_dir(state, "ns/src", "0" * 40) is None
    assert artifact_dir(state, "ns/src", "../../etc") is None


def test_the_same_commit_is_reused_and_other_options_rebuild(
    repo: Repository, tmp_path: Path
) -> None:
    sha = repo.commit({"m/a.yaml": "a\n", "m/b.md": "b\n"})
    state = tmp_path / "state"
    first = materialise(repo.bare, sha, state, "s", path="m")
    inode = (first.root / "a.yaml").stat().st_ino
    again = materialise(repo.bare, sha, state, "s", path="m")
    assert again == first and (again.root / "a.yaml").stat().st_ino == inode
    narrower = materialise(repo.bare, sha, state, "s", path="m", ignore=["*.md"])
    assert narrower.files == 1 and narrower.digest != first.digest
    assert not (narrower.root / "b.md").exists()


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("m/out", "../../etc/passwd"),  # .. past the artifact (m/ is its root)
        ("m/up", "../secret.txt"),  # inside the repository, but outside the artifact
        ("m/abs", "/etc/passwd"),
    ],
)
def test_symbolic_links_leaving_the_tree_are_refused(
    repo: Repository, tmp_path: Path, link: str, target: str
) -> None:
    sha = repo.commit({"m/a.yaml": "a\n", "secret.txt": "s\n"}, symlinks={link: target})
    with pytest.raises(ArtifactError) as err:
        materialise(repo.bare, sha, tmp_path / "state", "s", path="m")
    assert err.value.reason == ARTIFACT_REFUSED
    assert err.value.path == link
    assert artifact_dir(tmp_path / "state", "s", sha) is None
    assert not list((tmp_path / "state" / "artifacts").rglob("a.yaml"))  # nothing left behind


@pytest.mark.parametrize(
    "links",
    [
        {"m/dot": ".", "m/esc": "dot/.."},  # dot is written first
        {"m/z-dot": ".", "m/a-esc": "z-dot/.."},  # a-esc is written before what it leads through
    ],
)
def test_a_link_through_a_link_is_checked_where_it_lands(
    repo: Repository, tmp_path: Path, links: dict[str, str]
) -> None:
    # the escaping link is lexically inside (x/.. is .), but x is the root itself
    sha = repo.commit({"m/a.yaml": "a\n"}, symlinks=links)
    with pytest.raises(ArtifactError) as err:
        materialise(repo.bare, sha, tmp_path / "state", "s", path="m")
    assert err.value.reason == ARTIFACT_REFUSED
    assert err.value.path == next(k for k, v in links.items() if v != ".")


def test_size_and_count_limits_refuse_before_writing(repo: Repository, tmp_path: Path) -> None:
    sha = repo.commit({"m/small.yaml": "a\n", "m/big.bin": b"\0" * 5000})
    state = tmp_path / "state"
    with pytest.raises(ArtifactError) as err:
        materialise(repo.bare, sha, state, "s", path="m", limits=Limits(max_file_bytes=4096))
    assert (err.value.reason, err.value.path) == (ARTIFACT_REFUSED, "m/big.bin")
    assert "AMLOPS_MAX_FILE_BYTES" in str(err.value)
    with pytest.raises(ArtifactError) as err:
        materialise(repo.bare, sha, state, "s", path="m", limits=Limits(max_tree_bytes=4096))
    assert "AMLOPS_MAX_TREE_BYTES" in str(err.value)
    with pytest.raises(ArtifactError) as err:
        materialise(repo.bare, sha, state, "s", path="m", limits=Limits(max_tree_files=1))
    assert "AMLOPS_MAX_TREE_FILES" in str(err.value)
    ignored = materialise(
        repo.bare, sha, state, "s", path="m", ignore=["*.bin"], limits=Limits(max_file_bytes=4096)
    )
    assert ignored.files == 1  # an ignored file does not count


def test_a_missing_path_and_an_escaping_path(repo: Repository, tmp_path: Path) -> None:
    sha = repo.commit({"m/a.yaml": "a\n"})
    with pytest.raises(ArtifactError) as err:
        materialise(repo.bare, sha, tmp_path, "s", path="nope")
    assert err.value.reason == PATH_NOT_FOUND
    for bad in ("../x", "/etc", "m/../.."):
        with pytest.raises(ArtifactError) as err:
            materialise(repo.bare, sha, tmp_path, "s", path=bad)
        assert err.value.reason == ARTIFACT_REFUSED


def test_collect_keeps_the_newest_and_the_pinned(repo: Repository, tmp_path: Path) -> None:
    state = tmp_path / "state"
    shas = []
    for i in range(4):
        sha = repo.commit({"m/a.yaml": f"v: {i}\n"})
        materialise(repo.bare, sha, state, "s", path="m")
        shas.append(sha)
        os.utime(state / "artifacts" / next((state / "artifacts").iterdir()).name / f"{sha}.json",
                 (1000 + i, 1000 + i))  # fmt: skip
    removed = collect(state, "s", keep=2, pinned=[shas[0]])
    assert removed == [shas[1]]
    assert [artifact_dir(state, "s", s) is not None for s in shas] == [True, False, True, True]


def test_fetch_then_materialise(tmp_path: Path) -> None:
    with GitServer(tmp_path) as server:
        repo = server.create("p")
        sha = repo.commit({"manifests/m.yaml": "kind: Model\n"})
        fetched = fetch(Source("ns/p", server.git_url("p"), Ref(branch="main")), tmp_path / "st")
    art = materialise(fetched.mirror, fetched.commit, tmp_path / "st", "ns/p", path="manifests")
    assert art.commit == sha and (art.root / "m.yaml").read_text() == "kind: Model\n"
