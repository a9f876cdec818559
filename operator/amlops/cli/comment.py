"""``amlops comment``: create or update the plan comment on a GitHub pull request.

One comment per plan, updated on every push (as Atlantis does) instead of one more comment each
time: the previous comment is the one holding the same hidden marker (``plan.MARKER``) as the
new body. Talks to the GitHub REST API with the standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlops.cli import common
from amlops.cli.formats import printable
from amlops.cli.plan import MARKER

API_VERSION = "2022-11-28"
_TIMEOUT = 30.0  # seconds per request: a CI step must fail, not hang, when GitHub does not answer
_PAGES = 100  # at 100 comments a page; a pull request with more than 10,000 is not one we plan


class GitHubError(Exception):
    """GitHub refused or could not be reached; the message says what to do, never the token."""


@dataclass(frozen=True)
class GitHub:
    api: str
    token: str = field(repr=False)  # never in a repr, a log line or an error message

    def request(self, method: str, url: str, body: Any = None) -> tuple[Any, str | None]:
        """The decoded JSON answer and the ``rel="next"`` page, if any."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/vnd.github+json")
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("X-GitHub-Api-Version", API_VERSION)
        req.add_header("User-Agent", "amlops")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:
                payload = json.loads(resp.read() or b"null")
                return payload, self._next(resp.headers.get("Link", ""))
        except urllib.error.HTTPError as exc:
            raise GitHubError(self._explain(exc)) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise GitHubError(self._hide(f"cannot reach {self.api}: {reason}")) from None

    def _next(self, link: str) -> str | None:
        for part in link.split(","):
            url, _, params = part.partition(";")
            if 'rel="next"' in params:
                url = url.strip().strip("<>")
                # The token goes with every request: follow pages on the API's own host only.
                same = urllib.parse.urlsplit(url).netloc == urllib.parse.urlsplit(self.api).netloc
                return url if same else None
        return None

    def _explain(self, exc: urllib.error.HTTPError) -> str:
        try:
            message = str(json.loads(exc.read()).get("message", ""))
        except (ValueError, AttributeError, OSError):
            message = ""
        said = f" (GitHub: {printable(message)[:200]})" if message else ""
        hint = {
            401: "GitHub rejected the token: set GITHUB_TOKEN to a valid, unexpired token",
            403: "GitHub refused: the token may not write pull-request comments (give the "
            "workflow `permissions: pull-requests: write`; a pull request from a fork gets a "
            "read-only token), or a rate limit was hit",
            404: "not found: check --repo OWNER/NAME and --pr, and that the token can see "
            "the repository",
        }.get(exc.code, f"GitHub answered HTTP {exc.code}")
        return self._hide(f"{hint}{said}")

    def _hide(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text


def find_comment(gh: GitHub, repo: str, pr: int, marker: str) -> int | None:
    """The id of the pull request's first comment holding ``marker``, reading every page."""
    url: str | None = f"{gh.api}/repos/{repo}/issues/{pr}/comments?per_page=100"
    for _ in range(_PAGES):
        if url is None:
            return None
        comments, url = gh.request("GET", url)
        for c in comments:
            if marker in str(c.get("body") or ""):
                return int(c["id"])
    return None


def upsert(gh: GitHub, repo: str, pr: int, body: str) -> tuple[str, str]:
    """Update the comment with this body's marker, else create one: ``(action, url)``."""
    found = MARKER.findall(body)
    if not found:
        raise GitHubError(
            "the comment has no amlops plan marker (`<!-- amlops-plan ... -->`): "
            "make it with `amlops plan --output markdown`"
        )
    existing = find_comment(gh, repo, pr, found[-1])
    if existing is None:
        url, method, action = f"{gh.api}/repos/{repo}/issues/{pr}/comments", "POST", "created"
    else:
        url, method = f"{gh.api}/repos/{repo}/issues/comments/{existing}", "PATCH"
        action = "updated"
    made, _ = gh.request(method, url, {"body": body})
    return action, str(made.get("html_url", ""))


HELP = "create or update the plan comment on a GitHub pull request"
EXITS = (
    "Posts FILE (from `amlops plan --output markdown`) on pull request N, "
    "replacing the earlier comment with the same plan marker. Reads GITHUB_TOKEN and "
    "GITHUB_API_URL (default https://api.github.com). "
    "Exit 0: posted; 1: GitHub refused or is unreachable; 2: usage error."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = common.command(sub, "comment", HELP, EXITS)
    p.add_argument("--repo", default=os.environ.get("GITHUB_REPOSITORY"), metavar="OWNER/NAME")
    p.add_argument("--pr", type=int, required=True, metavar="N")
    p.add_argument("--file", type=Path, required=True, metavar="FILE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    token = os.environ.get("GITHUB_TOKEN", "")
    if not token:
        raise common.UsageError("comment needs GITHUB_TOKEN in the environment")
    if not args.repo or args.repo.count("/") != 1:
        raise common.UsageError("comment needs --repo OWNER/NAME (or GITHUB_REPOSITORY)")
    try:
        body = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise common.UsageError(f"{args.file}: {exc.strerror}") from exc
    api = os.environ.get("GITHUB_API_URL") or "https://api.github.com"
    gh = GitHub(api.rstrip("/"), token)
    repo = urllib.parse.quote(args.repo, safe="/")
    try:
        action, url = upsert(gh, repo, args.pr, body)
    except GitHubError as exc:
        common.stderr.print(f"error: {exc}", markup=False, highlight=False)
        return common.EXIT_FINDINGS
    common.print_lines([f"{action} plan comment on {args.repo}#{args.pr}: {url}"])
    return common.EXIT_OK
