"""GitSource: a Git repository the operator fetches, validates and applies manifests from.

Not an Azure ML asset and not reconciled through a backend: the operator's GitSource handler
(``amlops.handlers.git_source``) fetches ``url`` at ``ref`` every ``interval``, validates the
folder ``path`` with the same core as ``amlops validate`` and server-side applies the operator
kinds' manifests it holds into the source's namespace (Flux's GitRepository and Kustomization
in one object). ``secretRef`` and ``receiver.secretRef`` name Secrets whose values the operator
reads at sync time and never writes anywhere; each must carry the label
``amlops.io/git-credentials: "true"``, so a GitSource cannot read any other Secret of its
namespace. ``prune`` is required, as in Flux's Kustomization.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from amlops.core.findings import Finding
from amlops.core.locator import Locator
from amlops.core.source import FieldPath
from amlops.kinds import base

KIND_NAME = "GitSource"
# the label a Secret must carry for a GitSource to read it (credentials, the receiver's key)
CREDENTIALS_LABEL = "amlops.io/git-credentials"
REFS = ("commit", "semver", "tag", "branch")  # by precedence, as Flux reads them
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")  # Git's object ids: SHA-1, lowercase hex
DEFAULT_INTERVAL_S = 300.0
DEFAULT_TIMEOUT_S = 60.0
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_URL = re.compile(r"^(https?|ssh|git)://[^\s]+$")


def duration_s(text: str) -> float | None:
    """A Go duration as Flux writes intervals (``30s``, ``5m``, ``1h30m``) in seconds; None if
    it is not one."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    return total if text and pos == len(text) else None


def is_commit_id(value: str) -> bool:
    """Whether ``value`` is a full commit id: what ``ref.commit`` must be, what a fetch resolves
    every ref to, and the only revision an artifact or an object's annotation is named by."""
    return _COMMIT_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class Ref:
    """What to check out (Flux's ``spec.ref``): the first set of ``commit``, ``semver``,
    ``tag``, ``branch``; none set is the remote's HEAD. ``branch`` with ``commit`` says where
    to look for the commit. ``amlops.gitops.fetch`` checks the names and resolves it."""

    branch: str | None = None
    tag: str | None = None
    semver: str | None = None
    commit: str | None = None


@dataclass(frozen=True)
class GitSource:
    """A GitSource spec as the handler reads it."""

    url: str
    ref: Ref
    path: str  # a relative POSIX folder inside the repository ("." for the top)
    interval_s: float
    timeout_s: float
    secret: str | None  # the credentials Secret's name
    receiver_secret: str | None  # the push receiver's HMAC key Secret
    ignore: str
    suspend: bool
    prune: bool


def _secret_name(value: Any) -> str | None:
    name = value.get("name") if isinstance(value, Mapping) else None
    return name if isinstance(name, str) and name else None


def receiver_secret(spec: Mapping[str, Any]) -> str | None:
    """``spec.receiver.secretRef.name``: the Secret holding the push receiver's HMAC key (read
    by the receiver on every replica, without the rest of the spec having to be valid)."""
    return _secret_name(base.mapping(spec.get("receiver")).get("secretRef"))


def _inside(path: str) -> bool:
    pure = PurePosixPath(path)
    return not pure.is_absolute() and ".." not in pure.parts and "\\" not in path


def parse(spec: Mapping[str, Any], locator: Locator) -> tuple[GitSource | None, list[Finding]]:
    """Read a GitSource spec once; one that cannot be synced is None with findings."""
    findings: list[Finding] = []

    def refuse(path: FieldPath, message: str) -> None:
        findings.append(base.spec_finding(locator, KIND_NAME, ("spec", *path), message))

    url = spec.get("url")
    if not isinstance(url, str) or not _URL.match(url):
        refuse(("url",), "write the repository's https://, ssh:// or git:// URL")
    elif "@" in url.split("://", 1)[1].split("/", 1)[0] and not url.startswith("ssh://"):
        # a token in the URL would end up in status and logs; the Secret is where it goes
        refuse(("url",), "credentials do not go in the URL: put them in a Secret (secretRef)")
    ref_spec = base.mapping(spec.get("ref"))
    ref = Ref(**{k: str(ref_spec[k]) for k in REFS if isinstance(ref_spec.get(k), str)})
    if ref.commit is not None and not is_commit_id(ref.commit):
        refuse(("ref", "commit"), "write the commit's full 40-hex-digit SHA-1")
    path = spec.get("path", ".")
    if not isinstance(path, str) or not _inside(path):
        refuse(("path",), "write a relative folder inside the repository (no '..')")
    times: dict[str, float] = {}
    for key, default in (("interval", DEFAULT_INTERVAL_S), ("timeout", DEFAULT_TIMEOUT_S)):
        raw = spec.get(key)
        seconds = default if raw is None else duration_s(str(raw))
        if seconds is None or seconds <= 0:
            refuse((key,), f"write a duration such as 30s, 5m or 1h, not {raw!r}")
        times[key] = seconds or default
    ignore = spec.get("ignore", "")
    prune = spec.get("prune")
    if not isinstance(prune, bool):
        # as Flux's Kustomization: deleting what left Git (and, with the source, everything it
        # applied, so the Azure assets) is a choice to write down, never a default
        refuse(("prune",), "write prune: true (delete what leaves Git) or prune: false")
    if findings:
        return None, findings
    return GitSource(
        url=str(url),
        ref=ref,
        path=str(PurePosixPath(str(path))),
        interval_s=times["interval"],
        timeout_s=times["timeout"],
        secret=_secret_name(spec.get("secretRef")),
        receiver_secret=receiver_secret(spec),
        ignore=ignore if isinstance(ignore, str) else "",
        suspend=bool(spec.get("suspend", False)),
        prune=bool(prune),
    ), []


KIND = base.Kind(
    name=KIND_NAME,
    # reconciled by the operator, but as a source of objects rather than through a backend
    engine="gitops",
    crd=base.Crd(
        short_names=("amlgitsource", "amlgs"),
        columns=(
            base.Column("URL", ".spec.url"),
            base.Column("Revision", ".status.lastAppliedRevision"),
        ),
    ),
)
