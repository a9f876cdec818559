"""The pull-request comment (``amlops plan --output markdown``) cannot be hijacked by a value,
stays under GitHub's size limit, and the text plan prints no terminal control codes
(issue 8 item 7)."""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from amlops.cli import common, main
from amlops.cli.plan import COMMENT_LIMIT, markdown
from amlops.core.findings import Finding, Severity
from amlops.core.plan import Change, FieldChange
from amlops.core.validate import Report

from .conftest import git

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests" / "fixtures" / "hostile"
GITHUB_LIMIT = 65_536

# -- reading the comment back the way a CommonMark/GFM renderer does -----------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _split(md: str) -> tuple[list[str], list[list[str]]]:
    """(lines outside fenced code blocks, the blocks). A block closes only at a fence of the
    same character, at least as long, with nothing after it."""
    outside: list[str] = []
    blocks: list[list[str]] = []
    current: list[str] | None = None
    fence = ""
    for line in md.split("\n"):
        match = _FENCE.match(line)
        if current is None:
            if match:
                fence, current = match.group(1), []
            else:
                outside.append(line)
        elif (
            match
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
            and not match.group(2).strip()
        ):
            blocks.append(current)
            current = None
        else:
            current.append(line)
    assert current is None, "a code block is left open: everything after it is swallowed"
    return outside, blocks


def _assert_not_hijacked(md: str, *, updates: int) -> list[list[str]]:
    outside, blocks = _split(md)
    assert len(blocks) == updates  # one diff block per update, none opened by a value
    text = "\n".join(_SPAN.sub("", line) for line in outside)  # code spans are inert
    headings = [line for line in outside if re.match(r" {0,3}#{1,6}(\s|$)", line)]
    assert headings == [outside[0]] and outside[0].startswith("### amlops plan:")
    assert not [line for line in outside if re.fullmatch(r" {0,3}(=+|-+)\s*", line)]
    assert re.search(r"(?<!\w)@\w", text) is None, "an @mention would notify someone"
    assert set(re.findall(r"</?([A-Za-z][\w-]*)", text)) <= {"details", "summary"}
    assert text.count("<details>") == text.count("</details>") == updates
    assert "![" not in text and re.search(r"(?<!\\)\]\(", text) is None  # no image, no link
    for line in outside:
        if line.startswith("|"):  # every row of both tables has exactly its five cells
            assert len(_UNESCAPED_PIPE.findall(line)) == 6, line
    return blocks


# -- a repository with two revisions --------------------------------------------------------------


@pytest.fixture
def repo(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # a wide console: a table never folds a cell, so what is printed is what is asserted on
    monkeypatch.setattr(common, "stdout", Console(highlight=False, width=10_000))
    return repo


def _without_hostile_values(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    if doc["kind"] == "Model":
        del doc["spec"]["model"]["description"], doc["spec"]["model"]["tags"]
    else:
        doc["spec"]["endpoint"]["traffic"] = {}
    return doc


def _hostile_change(repo: Path) -> None:
    """HEAD~1 holds the fixture's objects with plain values; HEAD makes them hostile, and
    adds a plain CLI v2 file with a hostile name under a hostile file name."""
    target = repo / "manifests" / "models" / "comment-breakout.yaml"
    fixture = HOSTILE / "comment-breakout.yaml"
    docs = list(yaml.safe_load_all(fixture.read_text()))
    target.write_text(yaml.safe_dump_all([_without_hostile_values(d) for d in docs]))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "plain")
    shutil.copy(fixture, target)
    shutil.copy(HOSTILE / "comment-plain-cli.yml", repo / "manifests" / "models" / "a|b`c`.yml")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "hostile")


def test_values_cannot_break_out_of_the_comment(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _hostile_change(repo)
    main(["plan", "manifests", "--base", "HEAD~1", "--head", "HEAD", "-o", "markdown"])
    md = capsys.readouterr().out
    blocks = _assert_not_hijacked(md, updates=2)
    # every hostile value is still there to review, one line each, inside the diff blocks
    diff = "\n".join(line for block in blocks for line in block)
    assert all(line[:2] in ("+ ", "- ", "~ ") for block in blocks for line in block)
    for field in ("description", "tags.col|umn", "tags.~~~", "tags.note", "tags.terminal"):
        assert f"+ spec.model.{field}: " in diff
    assert "@octocat <img src=x onerror=alert(1)>" in diff  # inert inside a code block
    # the table lists the plain file's object and file, pipes and backticks included
    (row,) = [
        line
        for line in md.split("\n")
        if line.startswith("| + create | ``Model/x\\|y`z`</summary>")
    ]
    assert row.endswith("| ``manifests/models/a\\|b`c`.yml:3`` |")
    assert "\x1b" not in md and "\r" not in md


def test_text_plan_prints_no_control_codes_and_no_rich_markup(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _hostile_change(repo)
    main(["plan", "manifests", "--base", "HEAD~1", "--head", "HEAD"])
    out = capsys.readouterr().out
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", out)
    assert "\\x1b[31mred\\x1b[0m\\rover [bold red]markup[/]" in out  # shown, escaped, verbatim


def test_3000_changed_tags_fit_one_comment_that_says_what_was_cut(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = repo / "manifests" / "models" / "slm-base.yaml"
    dev, prod = list(yaml.safe_load_all(path.read_text()))

    def tagged(version: str) -> None:
        tags = {
            f"tag-{i:04d}": f"{version}-value-of-a-reasonably-long-tag-{i:04d}" for i in range(3000)
        }
        dev["spec"]["model"]["tags"] = tags
        path.write_text(yaml.safe_dump_all([dev, prod], sort_keys=False))
        git(repo, "commit", "-qam", version)

    tagged("old")
    tagged("new")
    args = ["plan", "manifests", "--base", "HEAD~1", "--head", "HEAD"]
    assert main([*args, "-o", "markdown"]) == 0
    md = capsys.readouterr().out
    assert len(md) < GITHUB_LIMIT and len(md.encode()) <= COMMENT_LIMIT + 1  # + print's newline
    (block,) = _assert_not_hijacked(md, updates=1)
    shown = [line for line in block if line.startswith("~ spec.model.tags.tag-")]
    (more,) = [line for line in block if line.startswith("# … ")]
    left = int(re.search(r"(\d+) more changed field", more).group(1))  # type: ignore[union-attr]
    assert shown and len(shown) + left == 3000
    assert f"{left} changed field(s) not shown" in md
    assert "`amlops plan --output json` prints the whole plan" in md
    assert main([*args, "-o", "json"]) == 0
    (change,) = json.loads(capsys.readouterr().out)["changes"]
    assert len(change["fields"]) == 3000


def test_many_changes_and_findings_are_cut_with_errors_kept_first() -> None:
    changes = [
        Change(
            "update",
            "Model",
            f"model-{i:05d}",
            "mlw-platform-dev",
            f"manifests/models/m{i}.yaml",
            5,
            [FieldChange("spec.model.tags.note", "a" * 60, "b" * 60)],
        )
        for i in range(4000)
    ]
    findings = [
        Finding(
            f"manifests/models/m{i}.yaml",
            7,
            3,
            "some.rule",
            f"finding {i} | with a pipe and @someone",
            Severity.WARNING if i % 2 else Severity.ERROR,
            "Model",
            f"model-{i:05d}",
        )
        for i in range(4000)
    ]
    md = markdown(changes, Report([], findings), "origin/main", "HEAD")
    assert len(md.encode()) <= COMMENT_LIMIT
    outside, blocks = _split(md)
    _assert_not_hijacked(md, updates=len(blocks))
    change_rows = [line for line in outside if line.startswith("| ~ update |")]
    finding_rows = [line for line in outside if line.startswith(("| error |", "| warning |"))]
    notice = re.search(r"(\d+) of 4000 change\(s\), .*?(\d+) finding\(s\) not shown", md)
    assert notice is not None
    assert len(change_rows) + int(notice.group(1)) == 4000
    assert len(finding_rows) + int(notice.group(2)) == 4000
    severities = [row.split("|")[1].strip() for row in finding_rows]
    assert severities == sorted(severities)  # every error before any warning
    assert len(blocks) <= len(change_rows)
