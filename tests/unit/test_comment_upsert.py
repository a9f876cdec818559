"""``amlops comment`` creates the plan comment once and then updates it, against a fake of the
GitHub REST API on loopback (issue 10 item 8): pages are followed, refusals are explained and
exit 1, and the token never shows up in what the command prints."""

from __future__ import annotations

import json
import re
import shlex
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from amlops.cli import build_parser, main

TOKEN = "ghs_fakeTokenThatMustNeverBePrinted0123"
REPO = "octo/platform"
PR = 7
PER_PAGE = 100
MARKER = "<!-- amlops-plan path=manifests -->"


@dataclass
class FakeGitHub:
    """The three endpoints the upsert uses, with GitHub's pagination (``Link: rel="next"``)."""

    url: str = ""
    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    status: int = 200  # anything else: every request is refused with it
    next_host: str | None = None  # a Link to another host: the token must not follow it

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else None
        self.requests.append((h.command, h.path, body))
        if h.headers.get("Authorization") != f"Bearer {TOKEN}" or self.status != 200:
            status = 401 if self.status == 200 else self.status
            return self._send(h, status, {"message": f"refused {TOKEN}"})  # echoes the token
        path = urlsplit(h.path).path
        listing = f"/repos/{REPO}/issues/{PR}/comments"
        if h.command == "GET" and path == listing:
            page = int(parse_qs(urlsplit(h.path).query).get("page", ["1"])[0])
            start = (page - 1) * PER_PAGE
            links = {}
            if start + PER_PAGE < len(self.comments):
                host = self.next_host or self.url
                links["Link"] = f'<{host}{listing}?per_page=100&page={page + 1}>; rel="next"'
            return self._send(h, 200, self.comments[start : start + PER_PAGE], links)
        if h.command == "POST" and path == listing and body is not None:
            made = {"id": 1000 + len(self.comments), "body": body["body"]}
            made["html_url"] = f"https://github.example/{REPO}/pull/{PR}#c{made['id']}"
            self.comments.append(made)
            return self._send(h, 201, made)
        if h.command == "PATCH" and path.startswith(f"/repos/{REPO}/issues/comments/") and body:
            cid = int(path.rsplit("/", 1)[1])
            (found,) = [c for c in self.comments if c["id"] == cid]
            found["body"] = body["body"]
            return self._send(h, 200, {**found, "html_url": f"https://github.example/c{cid}"})
        return self._send(h, 404, {"message": "Not Found"})

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, data: Any, headers: dict[str, str] | None = None
    ) -> None:
        raw = json.dumps(data).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(raw)


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake.handle(self)

        do_POST = do_PATCH = do_GET

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
            pass  # keep test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    yield fake
    server.shutdown()
    server.server_close()


def _plan_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.md"
    path.write_text(f"### amlops plan: {text}\n\n{MARKER}\n")
    return path


def _comment(path: Path) -> int:
    return main(["comment", "--repo", REPO, "--pr", str(PR), "--file", str(path)])


def _others(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "body": f"LGTM {i}"} for i in range(n)]


def test_first_run_creates_the_comment_and_the_second_updates_it(
    github: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github.comments = _others(2)
    assert _comment(_plan_file(tmp_path, "first")) == 0
    assert "created plan comment on octo/platform#7" in capsys.readouterr().out
    assert _comment(_plan_file(tmp_path, "second")) == 0
    assert "updated plan comment" in capsys.readouterr().out
    ours = [c for c in github.comments if MARKER in c["body"]]
    assert len(ours) == 1 and "second" in ours[0]["body"]
    methods = [(m, urlsplit(p).path) for m, p, _ in github.requests]
    assert methods == [
        ("GET", f"/repos/{REPO}/issues/{PR}/comments"),
        ("POST", f"/repos/{REPO}/issues/{PR}/comments"),
        ("GET", f"/repos/{REPO}/issues/{PR}/comments"),
        ("PATCH", f"/repos/{REPO}/issues/comments/{ours[0]['id']}"),
    ]


def test_the_previous_comment_is_found_on_a_later_page(
    github: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    github.comments = [*_others(250), {"id": 9999, "body": f"old plan\n{MARKER}"}]
    assert _comment(_plan_file(tmp_path, "new")) == 0
    gets = [p for m, p, _ in github.requests if m == "GET"]
    assert len(gets) == 3 and gets[-1].endswith("page=3")
    patches = [p for m, p, _ in github.requests if m == "PATCH"]
    assert patches == [f"/repos/{REPO}/issues/comments/9999"]
    assert "new" in github.comments[-1]["body"] and len(github.comments) == 251


def test_a_plan_for_another_path_is_a_comment_of_its_own(
    github: FakeGitHub, tmp_path: Path
) -> None:
    github.comments = [{"id": 5, "body": "x\n<!-- amlops-plan path=prod -->"}]
    assert _comment(_plan_file(tmp_path, "dev")) == 0
    assert [m for m, _, _ in github.requests] == ["GET", "POST"]


def test_a_next_page_on_another_host_is_not_sent_the_token(
    github: FakeGitHub, tmp_path: Path
) -> None:
    github.comments = _others(150)
    github.next_host = "http://203.0.113.9:1"  # TEST-NET: nothing answers there
    assert _comment(_plan_file(tmp_path, "x")) == 0
    assert [m for m, _, _ in github.requests] == ["GET", "POST"]


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (401, "GitHub rejected the token"),
        (403, "pull-requests: write"),
        (404, "check --repo OWNER/NAME and --pr"),
    ],
)
def test_a_refusal_is_explained_exits_1_and_never_prints_the_token(
    github: FakeGitHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    status: int,
    says: str,
) -> None:
    github.status = status
    assert _comment(_plan_file(tmp_path, "x")) == 1
    out, err = capsys.readouterr()
    assert says in err and "error:" in err
    assert TOKEN not in out + err and "***" in err  # the fake echoes the token: masked


def test_an_unreachable_api_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")  # discard port: refused
    assert _comment(_plan_file(tmp_path, "x")) == 1
    err = capsys.readouterr().err
    assert "cannot reach http://127.0.0.1:9" in err and TOKEN not in err


def test_without_a_token_or_a_marker_nothing_is_sent(
    github: FakeGitHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plain = tmp_path / "other.md"
    plain.write_text("no marker here\n")
    assert _comment(plain) == 1
    assert "amlops plan --output markdown" in capsys.readouterr().err
    monkeypatch.delenv("GITHUB_TOKEN")
    assert _comment(_plan_file(tmp_path, "x")) == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err
    assert github.requests == []


# -- the composite action that runs it ------------------------------------------------------------

ACTION = Path(__file__).resolve().parents[2] / "action.yml"


def _scripts() -> list[str]:
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    return [s["run"] for s in action["runs"]["steps"] if "run" in s]


def test_the_action_passes_inputs_as_data_never_as_shell_code() -> None:
    # `${{ }}` inside a script is pasted into the shell before it runs: a branch name could
    # then run commands. Through `env:` it stays a string.
    assert all("${{" not in script for script in _scripts())


def test_the_action_runs_commands_this_cli_accepts() -> None:
    calls = [
        shlex.split(line.split("||")[0].split(">")[0].rstrip(" \\"))
        for script in _scripts()
        for line in script.splitlines()
        if line.strip().startswith("amlops ")
    ]
    outputs = {call[call.index("--output") + 1] for call in calls if "--output" in call}
    assert outputs == {"github", "sarif", "markdown"}
    assert [c[1] for c in calls] == ["validate", "validate", "plan", "comment"]
    parser = build_parser()
    for call in calls:  # the shell variables stand in for values: any placeholder parses
        parser.parse_args([re.sub(r"^\$\w+$", "7", a) for a in call[1:]])
