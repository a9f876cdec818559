"""``gitops.fetch`` against a real ``git daemon`` and ``git http-backend`` on loopback: refs,
revisions, incremental fetches, authentication, and no credential in any message."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlops.gitops.fetch import (
    FETCH_FAILED,
    INVALID_SOURCE,
    Credentials,
    FetchError,
    SemverRange,
    Source,
    fetch,
    parse_version,
    safe_url,
    scrub,
    ssh_command,
)
from amlops.kinds.git_source import Ref
from tests.gitserver import GitServer

pytestmark = pytest.mark.slow

TOKEN = "tok-3f9a1c77e2b54d0a"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    with GitServer(tmp_path_factory.mktemp("git"), token=TOKEN) as s:
        yield s


@pytest.fixture(scope="module")
def platform(server: GitServer) -> dict[str, str]:
    """main: c1 (tagged v1.0.0, v1.2.0-rc.1) -> c2 (v1.2.0, annotated) -> c3 (v2.0.0, light);
    release: r1."""
    repo = server.create("platform")
    shas = {"c1": repo.commit({"manifests/m.yaml": "a: 1\n"})}
    repo.tag("v1.0.0")
    repo.tag("v1.2.0-rc.1")
    shas["c2"] = repo.commit({"manifests/m.yaml": "a: 2\n"})
    repo.tag("v1.2.0")
    shas["c3"] = repo.commit({"manifests/m.yaml": "a: 3\n"})
    repo.tag("v2.0.0", annotated=False)
    shas["r1"] = repo.commit({"release.txt": "r\n"}, branch="release")
    return shas


def git_source(server: GitServer, ref: Ref, name: str = "platform") -> Source:
    return Source(f"test/{name}", server.git_url(name), ref)


def test_a_branch_over_git_protocol_gives_the_flux_revision(
    server: GitServer, platform: dict[str, str], tmp_path: Path
) -> None:
    got = fetch(git_source(server, Ref(branch="main")), tmp_path)
    assert got.commit == platform["c3"]
    assert got.revision == f"main@sha1:{platform['c3']}"
    assert got.ref == "refs/heads/main"
    other = fetch(git_source(server, Ref(branch="release")), tmp_path)
    assert other.commit == platform["r1"]
    assert fetch(git_source(server, Ref()), tmp_path).commit == platform["c3"]  # remote HEAD


@pytest.mark.parametrize(
    ("ref", "commit", "label"),
    [
        (Ref(tag="v1.2.0"), "c2", "v1.2.0"),  # annotated: peeled to its commit
        (Ref(tag="v2.0.0"), "c3", "v2.0.0"),  # lightweight
        (Ref(semver="^1.0"), "c2", "v1.2.0"),  # the rc is a pre-release: not chosen
        (Ref(semver=">=1.2.0-rc.0 <1.2.0"), "c1", "v1.2.0-rc.1"),
        (Ref(semver="~1.0"), "c1", "v1.0.0"),
        (Ref(semver=">=1.0.0"), "c3", "v2.0.0"),
        (Ref(semver="1.x || 3.x"), "c2", "v1.2.0"),
    ],
)
def test_tags_and_semver_ranges_resolve_to_the_tagged_commit(
    server: GitServer,
    platform: dict[str, str],
    tmp_path: Path,
    ref: Ref,
    commit: str,
    label: str,
) -> None:
    got = fetch(git_source(server, ref), tmp_path)
    assert got.commit == platform[commit]
    assert got.revision == f"{label}@sha1:{platform[commit]}"


def test_a_commit_is_found_in_its_branch(
    server: GitServer, platform: dict[str, str], tmp_path: Path
) -> None:
    got = fetch(git_source(server, Ref(commit=platform["c1"])), tmp_path)
    assert (got.commit, got.revision) == (platform["c1"], f"sha1:{platform['c1']}")
    got = fetch(git_source(server, Ref(branch="main", commit=platform["c2"])), tmp_path)
    assert got.revision == f"main@sha1:{platform['c2']}"
    for where in (tmp_path / "fresh", tmp_path):  # also when the mirror has it from elsewhere
        fetch(git_source(server, Ref(branch="release")), tmp_path)
        with pytest.raises(FetchError) as err:
            fetch(git_source(server, Ref(branch="main", commit=platform["r1"])), where)
        assert err.value.reason == FETCH_FAILED and platform["r1"] in str(err.value)


def test_missing_refs_fail_and_bad_refs_are_invalid(
    server: GitServer, platform: dict[str, str], tmp_path: Path
) -> None:
    for ref in (Ref(branch="nope"), Ref(tag="v9"), Ref(semver=">=5")):
        with pytest.raises(FetchError) as err:
            fetch(git_source(server, ref), tmp_path)
        assert err.value.reason == FETCH_FAILED
    for bad in ({"commit": "abc"}, {"branch": "--upload-pack=x"}, {"semver": ">>1"}):
        with pytest.raises(FetchError) as err:
            git_source(server, Ref(**bad))
        assert err.value.reason == INVALID_SOURCE


def test_a_second_fetch_transfers_only_new_objects(server: GitServer, tmp_path: Path) -> None:
    repo = server.create("incremental")
    repo.commit({"big.bin": os.urandom(100_000), "m.yaml": "v: 1\n"})
    source = Source(
        "test/inc", server.http_url("incremental"), Ref(branch="main"), Credentials(password=TOKEN)
    )
    first = fetch(source, tmp_path)

    def packs() -> list[int]:
        return sorted(p.stat().st_size for p in (first.mirror / "objects" / "pack").glob("*.pack"))

    before = packs()
    assert sum(before) > 100_000  # the random (incompressible) file came

    repo.commit({"m.yaml": "v: 2\n"})
    second = fetch(source, tmp_path)
    assert second.commit == repo.head() != first.commit
    new = [size for size in packs() if size not in before] or [0]
    # the new pack holds the commit, one tree and one small blob, not the big file again
    assert 0 < sum(new) < 1000, (before, packs())
    # nothing new: no pack at all
    count = len(packs())
    assert fetch(source, tmp_path).commit == second.commit
    assert len(packs()) == count


def test_http_with_the_right_token_and_without_any_token(
    server: GitServer, platform: dict[str, str], tmp_path: Path
) -> None:
    url = server.http_url("platform")
    ok = fetch(Source("t/h", url, Ref(branch="main"), Credentials(password=TOKEN)), tmp_path)
    assert ok.commit == platform["c3"]
    with pytest.raises(FetchError) as err:
        fetch(Source("t/h", url, Ref(branch="main")), tmp_path)
    assert err.value.reason == FETCH_FAILED and "401" in str(err.value)


def test_a_wrong_token_fails_without_the_token_anywhere(
    server: GitServer, platform: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-token-9d8c7b6a"
    caplog.set_level(logging.DEBUG)
    attempts = [
        Source("t/w", server.http_url("platform"), Ref(branch="main"), Credentials(password=wrong)),
        Source(
            "t/w",
            server.http_url("platform").replace("http://", f"http://git:{wrong}@"),
            Ref(branch="main"),
        ),
    ]
    for source in attempts:
        with pytest.raises(FetchError) as err:
            fetch(source, tmp_path)
        assert err.value.reason == FETCH_FAILED
        assert err.value.__cause__ is None and err.value.__context__ is None
        assert wrong not in f"{err.value} {err.value!r}" and "@" not in str(err.value)
        assert wrong not in repr(source.credentials)
    assert wrong not in caplog.text
    assert all(
        wrong not in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file()
    )


def test_an_unreachable_server_fails_within_the_timeout(tmp_path: Path) -> None:
    source = Source("t/u", "git://127.0.0.1:9/nothing.git", Ref(branch="main"), timeout=5)
    with pytest.raises(FetchError) as err:
        fetch(source, tmp_path)
    assert err.value.reason == FETCH_FAILED


@pytest.mark.parametrize(
    "url",
    ["file:///etc", "ftp://h/x", "git@github.com:o/r.git", "https://-oProxyCommand=x/r", "ssh://"],
)
def test_urls_other_than_the_four_schemes_are_invalid(url: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError) as err:
        fetch(Source("t/bad", url), tmp_path)
    assert err.value.reason == INVALID_SOURCE


def test_ssh_needs_a_key_and_known_hosts_and_checks_host_keys(tmp_path: Path) -> None:
    with pytest.raises(FetchError) as err:
        fetch(Source("t/s", "ssh://git@127.0.0.1:9/r.git", credentials=Credentials()), tmp_path)
    assert err.value.reason == INVALID_SOURCE and "known_hosts" in str(err.value)
    command = ssh_command(Path("/k/known_hosts"), 30)
    assert "StrictHostKeyChecking=yes" in command and "UserKnownHostsFile=/k/known_hosts" in command
    assert "-F /dev/null" in command and "BatchMode=yes" in command


def test_a_key_from_a_secret_never_reaches_a_message(tmp_path: Path) -> None:
    key = b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAsecretkeymaterial\n-----END OPENSSH...\n"
    creds = Credentials.from_secret({"identity": key, "known_hosts": "127.0.0.1 ssh-ed25519 AAAA"})
    assert "secretkeymaterial" not in repr(creds)
    with pytest.raises(FetchError) as err:  # nothing listens on port 9
        fetch(Source("t/s", "ssh://git@127.0.0.1:9/r.git", credentials=creds, timeout=5), tmp_path)
    assert err.value.reason == FETCH_FAILED
    assert "secretkeymaterial" not in str(err.value)
    assert not list(tmp_path.rglob("identity"))  # the key file is gone


def test_secret_keys_follow_flux() -> None:
    creds = Credentials.from_secret({"bearerToken": b"abc123"})
    assert (creds.username, creds.password) == (None, "abc123")
    creds = Credentials.from_secret({"username": "u", "password": "p4ss"})
    assert (creds.username, creds.password) == ("u", "p4ss")


def test_scrubbing_removes_userinfo_and_secret_values() -> None:
    assert safe_url("see https://u:tok@host/x and git://h/y") == "see https://host/x and git://h/y"
    assert scrub("bad token tok%2F1 or tok/1", ["tok/1"]) == "bad token *** or ***"


def test_semver_ranges_follow_masterminds() -> None:
    def ok(rng: str, tag: str) -> bool:
        version = parse_version(tag)
        assert version is not None
        return SemverRange(rng).matches(version)

    assert ok("^1.2.3", "1.9.0") and not ok("^1.2.3", "2.0.0") and not ok("^1.2.3", "1.2.2")
    assert ok("^0.2.3", "0.2.9") and not ok("^0.2.3", "0.3.0")
    assert ok("~1.2.3", "1.2.9") and not ok("~1.2.3", "1.3.0")
    assert ok("1.2 - 1.4.5", "1.4.5") and not ok("1.2 - 1.4.5", "1.4.6")
    assert ok(">1.2", "1.3.0") and not ok(">1.2", "1.2.9")
    assert ok("<=1.2", "1.2.9") and not ok("<=1.2", "1.3.0")
    assert ok("!=1.2.3, >=1", "1.2.4") and not ok("!=1.2.3 >=1", "1.2.3")
    assert ok("*", "7.0.0") and not ok("*", "7.0.0-beta")
    assert not ok("<2.0.0", "2.0.0-rc.1")  # a pre-release needs a pre-release in the range
    assert parse_version("v1.2") is not None and parse_version("release-1") is None
    assert SemverRange(">=1.0.0").best(["v1.0.0", "1.1.0", "v1.1.0", "latest"]) == "1.1.0"


def test_fetches_of_the_same_repository_share_nothing_between_sources(
    server: GitServer, platform: dict[str, str], tmp_path: Path
) -> None:
    a = fetch(Source("ns/a", server.git_url("platform"), Ref(branch="main")), tmp_path)
    b = fetch(Source("ns/b", server.git_url("platform"), Ref(branch="release")), tmp_path)
    assert a.mirror != b.mirror and a.mirror.parent == b.mirror.parent


@pytest.fixture
def stalling_port() -> Iterator[int]:
    """A TCP server that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


@pytest.mark.parametrize("scheme", ["git", "http"])
def test_a_stalled_server_ends_in_a_timeout(
    stalling_port: int, scheme: str, tmp_path: Path
) -> None:
    source = Source("t/stall", f"{scheme}://127.0.0.1:{stalling_port}/r.git", timeout=1)
    started = time.monotonic()
    with pytest.raises(FetchError) as err:
        fetch(source, tmp_path)
    assert err.value.reason == FETCH_FAILED and "timed out" in str(err.value)
    assert time.monotonic() - started < 10


def test_a_repository_over_the_size_cap_is_refused_and_not_kept(
    server: GitServer, platform: dict[str, str], tmp_path: Path
) -> None:
    source = Source("test/capped", server.git_url("platform"), Ref(branch="main"), max_bytes=64)
    with pytest.raises(FetchError) as err:
        fetch(source, tmp_path)
    assert err.value.reason == FETCH_FAILED and "exceeds" in str(err.value)
    assert not any((tmp_path / "mirrors").glob("test_capped-*/objects"))  # the mirror went
    roomy = Source("test/capped", server.git_url("platform"), Ref(branch="main"), max_bytes=1 << 24)
    assert fetch(roomy, tmp_path).commit == platform["c3"]
