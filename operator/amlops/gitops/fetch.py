"""Fetch a Git repository with dulwich into a bare mirror cache and resolve a ref to a commit.

    source = Source("team-a/platform", "https://git.example.com/platform.git",
                    Ref(branch="main"), Credentials(password=token), timeout=60)
    fetched = fetch(source, state_dir)      # -> Fetched(commit, revision, mirror, ref)
    fetched.revision                        # "main@sha1:5f0c..." (Flux's format)

* URLs: ``https://``, ``http://``, ``git://``, ``ssh://`` (scp-style ``git@host:path`` is not
  accepted: write ``ssh://git@host/path``). Userinfo in the URL is moved into the credentials
  and never kept.
* Credentials (``Credentials.from_secret``, Flux's Secret keys): ``username`` / ``password``
  (or ``bearerToken`` alone: a token as the password) for HTTP basic auth; ``identity`` (an SSH
  private key) with ``known_hosts`` for SSH (host keys are always checked, through the system
  ``ssh`` run by dulwich's ``SubprocessSSHVendor`` with ``-F /dev/null``).
* Refs (``Ref``), by precedence ``commit`` > ``semver`` > ``tag`` > ``branch`` > the remote
  HEAD. ``semver`` is a range over the tags (``>=1.0.0 <2.0.0``, ``^1.2``, ``~1.2.3``,
  ``1.x``, ``1.2.3 - 1.4``, ``||``), see ``SemverRange``; a tag with a pre-release is chosen
  only when the range names a pre-release. A ``commit`` is looked for in ``branch`` (else every
  branch). Revisions: ``main@sha1:<sha>``, ``v1.2.0@sha1:<sha>``, ``sha1:<sha>`` (a commit with
  no branch).
* The mirror is ``<state>/mirrors/<source id>/`` (a bare repository; a changed URL starts a new
  one). A fetch sends the server what the mirror has, so only new objects travel; fetches of
  one source are serialised with a file lock. ``max_bytes`` caps it: the bytes read while
  fetching and the mirror's size after are checked, and a mirror over it is removed
  (``FetchFailed``, "repository exceeds N MiB").
* ``timeout`` bounds the whole fetch (checked on every transport read and write) and each read:
  HTTP requests carry it as their timeout, git:// sockets as SO_RCVTIMEO/SO_SNDTIMEO, SSH as
  ``ConnectTimeout`` with keep-alives. (Connecting over git:// is bounded by the kernel's SYN
  retries, about two minutes, as dulwich opens that socket without a timeout.)

Every failure is a ``FetchError`` with ``reason`` ``InvalidSource`` (the URL, ref or credentials
cannot work: fix the spec) or ``FetchFailed`` (network, authentication, timeout, missing ref:
retry). Messages, ``repr`` and logs never hold a password, token or key: the URL is shown
without userinfo and every secret value is scrubbed from text coming back from the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shlex
import shutil
import socket
import struct
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import semver
from dulwich.client import (
    GitClient,
    HTTPUnauthorized,
    SSHGitClient,
    SubprocessSSHVendor,
    TCPGitClient,
    Urllib3HttpGitClient,
)
from dulwich.errors import GitProtocolError, NotGitRepository
from dulwich.objects import Commit, ObjectID, Tag
from dulwich.protocol import Protocol
from dulwich.refs import Ref as GitRef
from dulwich.repo import Repo

from amlops.kinds.git_source import DEFAULT_TIMEOUT_S, Ref, is_commit_id

log = logging.getLogger(__name__)

SCHEMES = ("https", "http", "git", "ssh")
INVALID_SOURCE = "InvalidSource"
FETCH_FAILED = "FetchFailed"
_PEELED = b"^{}"


class FetchError(Exception):
    """A fetch that did not produce a commit. ``reason``: ``InvalidSource`` or ``FetchFailed``;
    the message is safe to show (no credentials)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


# -- what to fetch --------------------------------------------------------------------------


def _check_ref(ref: Ref) -> None:
    """Raise ``FetchError(InvalidSource)`` for a ref no fetch can resolve (a short commit id, a
    branch or tag name Git refuses, a semver range that does not parse)."""
    if ref.commit is not None and not is_commit_id(ref.commit):
        raise FetchError(INVALID_SOURCE, f"commit {ref.commit!r} is not a full 40-hex-digit SHA-1")
    for name in ("branch", "tag"):
        value = getattr(ref, name)
        if value is not None and not _valid_ref_name(value):
            raise FetchError(INVALID_SOURCE, f"{name} {value!r} is not a valid Git ref name")
    if ref.semver is not None:
        SemverRange(ref.semver)


@dataclass(frozen=True, repr=False)
class Credentials:
    """HTTP basic auth (``username``, ``password`` - a token goes in ``password``) or an SSH
    key (``identity``, with ``known_hosts``). ``repr`` names which fields are set, never their
    values."""

    username: str | None = None
    password: str | None = None
    identity: bytes | None = None
    known_hosts: bytes | None = None

    @classmethod
    def from_secret(cls, data: Mapping[str, str | bytes]) -> Credentials:
        """From a Secret's decoded ``data`` with Flux's keys: ``username``, ``password``,
        ``bearerToken`` (a token without a user name), ``identity``, ``known_hosts``."""

        def text(key: str) -> str | None:
            value = data.get(key)
            if value is None:
                return None
            return value.decode() if isinstance(value, bytes) else value

        def raw(key: str) -> bytes | None:
            value = data.get(key)
            if value is None:
                return None
            return value.encode() if isinstance(value, str) else value

        password = text("password") or text("bearerToken")
        return cls(text("username"), password, raw("identity"), raw("known_hosts"))

    def secrets(self) -> list[str]:
        """Every value that must not appear in a message (longest first)."""
        values = [self.password or ""]
        if self.identity:
            values.append(self.identity.decode(errors="replace"))
        return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)

    def __repr__(self) -> str:
        set_fields = [
            name
            for name in ("username", "password", "identity", "known_hosts")
            if getattr(self, name)
        ]
        return f"Credentials({', '.join(set_fields)} set)"


@dataclass(frozen=True)
class Source:
    """One repository to fetch. ``id`` names its mirror (``namespace/name`` for a GitSource,
    ``cli`` for the command line); ``url`` may carry userinfo, which goes into the
    credentials."""

    id: str
    url: str
    ref: Ref = field(default_factory=Ref)
    credentials: Credentials | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    max_bytes: int | None = None  # the mirror's size cap (None: none)

    def __post_init__(self) -> None:
        _check_ref(self.ref)  # raises FetchError(InvalidSource) now, not at fetch time


@dataclass(frozen=True)
class Fetched:
    commit: str  # 40 hex digits
    revision: str  # Flux's format: main@sha1:<sha>, v1.2.0@sha1:<sha>, sha1:<sha>
    ref: str  # the full ref it came from (refs/heads/main, refs/tags/v1.2.0) or "" for a commit
    mirror: Path  # the bare mirror the commit is in (artifacts.materialise reads it)


# -- URLs and secrets -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Url:
    scheme: str
    host: str
    port: int | None
    path: str
    username: str | None
    password: str | None

    def public(self) -> str:
        """The URL without userinfo: the only form that is printed or stored."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = f"{host}:{self.port}" if self.port else host
        return urllib.parse.urlunsplit((self.scheme, netloc, self.path, "", ""))


def _parse_url(url: str) -> _Url:
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise FetchError(INVALID_SOURCE, f"URL {safe_url(url)!r} cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise FetchError(
            INVALID_SOURCE,
            f"URL {safe_url(url)!r}: scheme must be one of {', '.join(SCHEMES)} "
            "(write ssh://user@host/path for SSH)",
        )
    if not parts.hostname or parts.hostname.startswith("-"):
        raise FetchError(INVALID_SOURCE, f"URL {safe_url(url)!r} has no usable host")
    if parts.query or parts.fragment:
        raise FetchError(INVALID_SOURCE, f"URL {safe_url(url)!r}: no query or fragment allowed")
    return _Url(
        scheme,
        parts.hostname,
        port,
        parts.path or "/",
        urllib.parse.unquote(parts.username) if parts.username else None,
        urllib.parse.unquote(parts.password) if parts.password else None,
    )


_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


def safe_url(text: str) -> str:
    """``text`` with the userinfo of every URL in it removed (``https://u:t@h/`` ->
    ``https://h/``)."""
    return _USERINFO.sub(r"\g<scheme>", text)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` without userinfo and without any of ``secrets`` (nor their URL-quoted form)."""
    out = safe_url(text)
    for secret in secrets:
        for form in {secret, urllib.parse.quote(secret, safe="")}:
            out = out.replace(form, "***")
    return out


def _valid_ref_name(name: str) -> bool:
    """Git's check-ref-format rules, enough to keep a name from being an option or a path."""
    if not name or name.startswith(("-", "/")) or name.endswith((".", "/", ".lock")):
        return False
    if ".." in name or "//" in name or "@{" in name or name == "@":
        return False
    return not any(c in name for c in " ~^:?*[\\\x7f") and all(ord(c) >= 32 for c in name)


# -- semver ranges --------------------------------------------------------------------------


_COMPARATOR = re.compile(r"^(?P<op>!=|>=|<=|=>|=<|~>|[=<>~^])?\s*(?P<version>\S+)$")
_PARTIAL = re.compile(
    r"^v?(?P<major>\d+|[xX*])(?:\.(?P<minor>\d+|[xX*]))?(?:\.(?P<patch>\d+|[xX*]))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_Check = Callable[[semver.Version], bool]


class SemverRange:
    """A range of versions in the syntax Flux uses (Masterminds/semver): comparators ``=``,
    ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``~`` (patch updates), ``^`` (no major change; minor
    for 0.x), ``x``/``*`` wildcards and partial versions (``1.2`` is ``1.2.x``), hyphen ranges
    (``1.2 - 1.4.5``); comparators separated by spaces or commas must all hold, ``||`` joins
    alternatives. A version with a pre-release matches only a group that names a pre-release.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._groups: list[tuple[list[_Check], bool]] = []
        if not text.strip():
            raise FetchError(INVALID_SOURCE, "semver range is empty")
        for group in text.split("||"):
            group = re.sub(r"\s+-\s+", " - ", group.strip())
            group = re.sub(r"(!=|>=|<=|=>|=<|~>|[=<>~^])\s+", r"\1", group)
            tokens = [t for t in re.split(r"[\s,]+", group) if t]
            if not tokens:
                raise FetchError(INVALID_SOURCE, f"semver range {text!r} has an empty part")
            checks: list[_Check] = []
            pre = False
            i = 0
            while i < len(tokens):
                if i + 2 < len(tokens) and tokens[i + 1] == "-":  # hyphen range
                    low, high = tokens[i], tokens[i + 2]
                    checks += self._comparator(">=" + low) + self._comparator("<=" + high)
                    pre = pre or "-" in low.lstrip("v").split("+")[0] or "-" in high
                    i += 3
                    continue
                checks += self._comparator(tokens[i])
                pre = pre or bool(_PARTIAL.match(tokens[i].lstrip("=<>~^!")) and "-" in tokens[i])
                i += 1
            self._groups.append((checks, pre))

    def _comparator(self, token: str) -> list[_Check]:
        match = _COMPARATOR.match(token)
        partial = _PARTIAL.match(match["version"]) if match else None
        if not match or not partial:
            raise FetchError(
                INVALID_SOURCE, f"semver range {self.text!r}: {token!r} is not a comparator"
            )
        op = {"=>": ">=", "=<": "<=", "~>": "~"}.get(match["op"] or "=", match["op"] or "=")
        parts = [partial["major"], partial["minor"], partial["patch"]]
        wild = [p is None or p in "xX*" for p in parts]
        if wild[0]:
            return [] if op in ("=", ">=", "~", "^") else [lambda v: False]
        nums = [0 if w else int(str(p)) for p, w in zip(parts, wild, strict=True)]
        # the number of fixed parts: 1.2 fixes 2
        fixed = wild.index(True) if True in wild else 3
        low = semver.Version(nums[0], nums[1], nums[2], partial["pre"] if fixed == 3 else None)

        def upper_of(level: int) -> semver.Version:
            """The first version above ``low`` with a change at ``level`` (0 major ...)."""
            if level == 0:
                return semver.Version(nums[0] + 1, 0, 0, "0")
            if level == 1:
                return semver.Version(nums[0], nums[1] + 1, 0, "0")
            return semver.Version(nums[0], nums[1], nums[2] + 1, "0")

        # `"0"` as pre-release makes an upper bound exclude every pre-release of that version
        ge: _Check = lambda v: v >= low  # noqa: E731
        if op == "=":
            if fixed == 3:
                return [lambda v: v.compare(low) == 0]
            top = upper_of(fixed - 1)
            return [ge, lambda v: v < top]
        if op == "!=":
            if fixed == 3:
                return [lambda v: v.compare(low) != 0]
            top = upper_of(fixed - 1)
            return [lambda v: v < low or v >= top]
        if op == ">":
            if fixed == 3:
                return [lambda v: v > low]
            top = upper_of(fixed - 1)
            return [lambda v: v >= top]
        if op == ">=":
            return [ge]
        if op == "<":
            return [lambda v: v < low]
        if op == "<=":
            if fixed == 3:
                return [lambda v: v <= low]
            top = upper_of(fixed - 1)
            return [lambda v: v < top]
        if op == "~":
            top = upper_of(0 if fixed == 1 else 1)
            return [ge, lambda v: v < top]
        # ^: the first non-zero fixed part may not change
        level = next((i for i in range(fixed) if nums[i] != 0), fixed - 1)
        top = upper_of(level)
        return [ge, lambda v: v < top]

    def matches(self, version: semver.Version) -> bool:
        for checks, pre in self._groups:
            if version.prerelease and not pre:
                continue
            if all(check(version) for check in checks):
                return True
        return False

    def best(self, tags: list[str]) -> str | None:
        """The tag of the highest matching version (``v1.2.0`` and ``1.2.0`` both parse)."""
        found: list[tuple[semver.Version, str]] = []
        for tag in tags:
            version = parse_version(tag)
            if version is not None and self.matches(version):
                found.append((version, tag))
        if not found:
            return None
        top = max(v for v, _ in found)
        return sorted(t for v, t in found if v.compare(top) == 0)[0]


def parse_version(tag: str) -> semver.Version | None:
    """A tag as a version: an optional ``v``, then ``MAJOR[.MINOR[.PATCH]][-pre][+build]``."""
    match = _PARTIAL.match(tag)
    if not match or any(p and p in "xX*" for p in (match["major"], match["minor"], match["patch"])):
        return None
    return semver.Version(
        int(match["major"]),
        int(match["minor"] or 0),
        int(match["patch"] or 0),
        match["pre"],
    )


# -- the fetch ------------------------------------------------------------------------------


def fetch(source: Source, state_dir: Path) -> Fetched:
    """Fetch ``source`` into its mirror under ``state_dir`` and resolve its ref (see the module
    docstring). Raises ``FetchError``."""
    url = _parse_url(source.url)
    creds = source.credentials or Credentials()
    if url.username or url.password:
        creds = Credentials(
            creds.username or url.username,
            creds.password or url.password,
            creds.identity,
            creds.known_hosts,
        )
    secrets = creds.secrets()
    deadline = time.monotonic() + source.timeout
    mirror = _mirror_dir(state_dir, source.id)
    # The error is raised outside the except blocks: a FetchError carries no __context__ that
    # could hold a credential (dulwich and urllib3 errors may quote URLs and headers).
    failure: FetchError
    try:
        with _locked(mirror):
            with _client(url, creds, deadline, source.timeout, source.max_bytes) as client:
                repo = _open_mirror(mirror, url.public())
                try:
                    fetched = _fetch_into(client, url, source.ref, repo, deadline)
                finally:
                    repo.close()
            if source.max_bytes is not None and mirror_size(mirror) > source.max_bytes:
                raise _TooLarge("too large")
            return fetched
    except _TooLarge:
        # the mirror goes: it would fill the state directory, and the next fetch would start
        # from what it holds
        with _locked(mirror):
            shutil.rmtree(mirror, ignore_errors=True)
        assert source.max_bytes is not None
        failure = FetchError(
            FETCH_FAILED,
            f"{url.public()}: repository exceeds {_mib(source.max_bytes)} "
            "(AMLOPS_SOURCE_MAX_MIB); not kept",
        )
    except FetchError as exc:
        failure = FetchError(exc.reason, scrub(str(exc), secrets))
    except HTTPUnauthorized:
        failure = FetchError(
            FETCH_FAILED, f"{url.public()}: authentication failed (HTTP 401); check the Secret"
        )
    except Exception as exc:  # dulwich, urllib3, ssh: whatever it is, scrubbed and retried
        if time.monotonic() > deadline:
            message = f"{url.public()}: timed out after {source.timeout:g} s"
        else:
            message = f"{url.public()}: {type(exc).__name__}: {exc}"
        failure = FetchError(FETCH_FAILED, scrub(message, secrets))
    raise failure


class _Timeout(GitProtocolError):
    pass


class _TooLarge(GitProtocolError):
    pass


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):g} MiB"


def mirror_size(mirror: Path) -> int:
    """Bytes of the files in a mirror (links not followed)."""
    total = 0
    for dirpath, _, filenames in os.walk(mirror):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _fetch_into(client: GitClient, url: _Url, ref: Ref, repo: Repo, deadline: float) -> Fetched:
    chosen: dict[str, Any] = {}

    def determine_wants(
        refs: Mapping[GitRef, ObjectID], depth: int | None = None
    ) -> list[ObjectID]:
        name, sha, wants = _resolve(ref, refs, repo)
        chosen.update(name=name, sha=sha, wants=wants, refs=dict(refs))
        return [w for w in wants if w not in repo.object_store]

    def progress(_: bytes) -> None:
        if time.monotonic() > deadline:
            raise _Timeout("timed out")

    client.fetch(url.path, repo, determine_wants=determine_wants, progress=progress)
    name: str = chosen["name"]
    # the mirror keeps what it fetched, so the next fetch names it as "have"
    for remote_ref, remote_sha in chosen["refs"].items():
        kept = remote_ref.startswith((b"refs/heads/", b"refs/tags/"))
        if kept and not remote_ref.endswith(_PEELED) and remote_sha in chosen["wants"]:
            repo.refs[remote_ref] = remote_sha
    if ref.commit is not None:
        commit = ObjectID(ref.commit.encode())
        if not _reachable(repo, commit, chosen["wants"]):
            where = f"branch {ref.branch!r}" if ref.branch else "any branch"
            raise FetchError(FETCH_FAILED, f"commit {ref.commit} is not in {where}")
    else:
        commit = _peel(repo, chosen["sha"])
    hexsha = commit.decode()
    label = _short(name) if name else (ref.branch or "")
    revision = f"{label}@sha1:{hexsha}" if label else f"sha1:{hexsha}"
    return Fetched(hexsha, revision, name, Path(repo.path))


def _reachable(repo: Repo, commit: ObjectID, heads: list[ObjectID]) -> bool:
    """Is ``commit`` in the history of one of ``heads``?"""
    if commit not in repo.object_store:
        return False
    present = [h for h in heads if h in repo.object_store]
    return any(entry.commit.id == commit for entry in repo.get_walker(include=present))


def _resolve(
    ref: Ref, refs: Mapping[GitRef, ObjectID], repo: Repo
) -> tuple[str, ObjectID, list[ObjectID]]:
    """(full ref name, the sha it points at, the shas to fetch)."""
    names = {r.decode(errors="replace"): sha for r, sha in refs.items()}
    if ref.commit is not None:
        if ref.branch:
            full = f"refs/heads/{ref.branch}"
            if full not in names:
                raise FetchError(FETCH_FAILED, f"branch {ref.branch!r} not found")
            return full, names[full], [names[full]]
        heads = [sha for n, sha in names.items() if n.startswith("refs/heads/")]
        return "", ObjectID(ref.commit.encode()), heads
    if ref.semver is not None:
        tags = [n.removeprefix("refs/tags/") for n in names if n.startswith("refs/tags/")]
        tags = [t for t in tags if not t.endswith("^{}")]
        best = SemverRange(ref.semver).best(tags)
        if best is None:
            raise FetchError(FETCH_FAILED, f"no tag matches semver range {ref.semver!r}")
        full = f"refs/tags/{best}"
    elif ref.tag is not None:
        full = f"refs/tags/{ref.tag}"
        if full not in names:
            raise FetchError(FETCH_FAILED, f"tag {ref.tag!r} not found")
    elif ref.branch is not None:
        full = f"refs/heads/{ref.branch}"
        if full not in names:
            raise FetchError(FETCH_FAILED, f"branch {ref.branch!r} not found")
    else:
        head = names.get("HEAD")
        if head is None:
            raise FetchError(FETCH_FAILED, "the repository has no HEAD; name a branch")
        branches = sorted(n for n, s in names.items() if n.startswith("refs/heads/") and s == head)
        full = branches[0] if len(branches) == 1 else "HEAD"
        if full == "HEAD":
            return "", head, [head]
    return full, names[full], [names[full]]


def _peel(repo: Repo, sha: ObjectID) -> ObjectID:
    obj = repo[sha]
    while isinstance(obj, Tag):
        obj = repo[obj.object[1]]
    if not isinstance(obj, Commit):
        raise FetchError(FETCH_FAILED, f"{sha.decode()} is not a commit")
    return obj.id


def _short(name: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


# -- clients --------------------------------------------------------------------------------


@contextlib.contextmanager
def _client(
    url: _Url, creds: Credentials, deadline: float, timeout: float, max_bytes: int | None = None
) -> Iterator[GitClient]:
    received = [0]

    def activity(size: int, direction: str) -> None:
        if time.monotonic() > deadline:
            raise _Timeout("timed out")
        if direction == "read" and max_bytes is not None:
            # stop while the pack is arriving, not once it fills the disk
            received[0] += size
            if received[0] > max_bytes:
                raise _TooLarge("too large")

    if url.scheme in ("http", "https"):
        client: GitClient = Urllib3HttpGitClient(
            url.public().removesuffix(url.path) + "/",
            username=creds.username or ("git" if creds.password else None),
            password=creds.password,
            timeout=timeout,
            report_activity=activity,
        )
        try:
            yield client
        finally:
            client.close()
        return
    if url.scheme == "git":
        client = _TimedTCPGitClient(url.host, url.port, report_activity=activity)
        client.read_timeout = timeout
        yield client
        return
    if not creds.identity or not creds.known_hosts:
        raise FetchError(
            INVALID_SOURCE,
            f"{url.public()}: SSH needs the Secret's identity (a private key) and known_hosts",
        )
    with tempfile.TemporaryDirectory(prefix="amlops-ssh-") as tmp:
        key = Path(tmp) / "identity"
        hosts = Path(tmp) / "known_hosts"
        for path, data in ((key, creds.identity), (hosts, creds.known_hosts)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data if data.endswith(b"\n") else data + b"\n")
        client = SSHGitClient(
            url.host,
            url.port,
            username=url.username or creds.username or "git",
            vendor=SubprocessSSHVendor(),
            key_filename=str(key),
            ssh_command=ssh_command(hosts, timeout),
            report_activity=activity,
        )
        yield client


class _TimedTCPGitClient(TCPGitClient):
    """git:// with a bound on each read and write: dulwich's socket has none, so a server that
    accepts and then stalls would hold the fetch forever. The kernel's SO_RCVTIMEO/SO_SNDTIMEO
    are set on the connected socket (through a duplicate of its descriptor), so a stalled read
    ends as a hangup, which ``fetch`` reports as a timeout."""

    read_timeout: float = DEFAULT_TIMEOUT_S

    def _connect(
        self, cmd: bytes, path: str | bytes, protocol_version: int | None = None
    ) -> tuple[Protocol, Callable[[], bool], IO[bytes] | None]:
        proto, can_read, stderr = super()._connect(cmd, path, protocol_version)
        reader = getattr(proto.read, "__self__", None)  # the socket's buffered reader
        fileno = getattr(reader, "fileno", None)
        if callable(fileno):
            seconds = max(self.read_timeout, 0.001)
            value = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
            with socket.socket(fileno=os.dup(fileno())) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
        return proto, can_read, stderr


def ssh_command(known_hosts: Path, timeout: float) -> str:
    """The ssh command line: no user config, no agent, no prompts, host keys checked."""
    options = {
        "BatchMode": "yes",
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "StrictHostKeyChecking": "yes",
        "UserKnownHostsFile": str(known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "ConnectTimeout": str(max(1, int(timeout))),
        "ServerAliveInterval": "15",
        "ServerAliveCountMax": "2",
    }
    args = ["ssh", "-F", "/dev/null"]
    for key, value in options.items():
        args += ["-o", f"{key}={value}"]
    return shlex.join(args)


# -- the mirror -----------------------------------------------------------------------------


def _mirror_dir(state_dir: Path, source_id: str) -> Path:
    return state_dir / "mirrors" / source_dir_name(source_id)


def source_dir_name(source_id: str) -> str:
    """A folder name for a source id: readable, and distinct for distinct ids."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", source_id).strip("._")[:60] or "source"
    return f"{readable}-{hashlib.sha256(source_id.encode()).hexdigest()[:8]}"


@contextlib.contextmanager
def _locked(mirror: Path) -> Iterator[None]:
    mirror.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(f"{mirror}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_URL_FILE = "amlops-url"


def _open_mirror(mirror: Path, public_url: str) -> Repo:
    """The bare mirror of ``public_url``: a mirror of another URL is started again."""
    marker = mirror / _URL_FILE
    if mirror.exists():
        try:
            same = marker.read_text(encoding="utf-8") == public_url
        except OSError:
            same = False
        if same:
            try:
                return Repo(str(mirror))
            except NotGitRepository:
                pass
        log.info("mirror %s: new URL or damaged, starting again", mirror.name)
        shutil.rmtree(mirror)
    mirror.mkdir(mode=0o700)
    repo = Repo.init_bare(str(mirror))
    marker.write_text(public_url, encoding="utf-8")
    return repo
