"""``amlops plan``: what a pull request changes, for the PR comment; ``--infra`` for Pulumi."""

from __future__ import annotations

import argparse
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from amlops.cli import common, formats, plan_infra
from amlops.cli.formats import printable
from amlops.cli.validate import findings_table
from amlops.core.findings import Finding
from amlops.core.limits import LimitsError
from amlops.core.plan import (
    Change,
    FieldChange,
    GitError,
    content_changes,
    diff,
    git_texts,
    git_top_level,
)
from amlops.core.validate import Report, validate_paths

SYMBOL = {"create": "+", "update": "~", "delete": "-"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan",
        help="what changes between two Git revisions of the manifests",
        description="Compares --base with --head (default: the working tree). "
        "Exit 0: plan made, no error findings in head; 1: error findings; 2: usage/Git error.",
    )
    p.add_argument("path", nargs="?", default="manifests", metavar="PATH")
    p.add_argument("--base", help="Git revision to compare against (e.g. origin/main)")
    p.add_argument("--head", help="Git revision of the change (default: the working tree)")
    p.add_argument("--output", "-o", choices=("text", "json", "markdown"), default="text")
    plan_infra.add_infra_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "infra", False):
        return plan_infra.run_infra_plan(args)
    if not args.base:
        raise common.UsageError("plan needs --base REF (the revision the change starts from)")
    path = Path(args.path)
    try:
        root = git_top_level(path)
        base_texts = git_texts(path, args.base)
        head_texts = git_texts(path, args.head) if args.head else None
    except GitError as exc:
        raise common.UsageError(f"git: {exc}") from exc
    try:
        # One source root for both sides: a path is judged the same in base and head.
        base = validate_paths([path], texts=base_texts, check_files=False, sdk=False, root=root)
        if head_texts is None:
            head = validate_paths([path], root=root)
        else:
            head = validate_paths([path], texts=head_texts, check_files=False, root=root)
    except LimitsError as exc:
        raise common.UsageError(str(exc)) from exc
    try:
        content = content_changes(head.manifests, args.base, args.head)
    except GitError as exc:
        raise common.UsageError(f"git: {exc}") from exc
    changes = diff(base.manifests, head.manifests, content)
    ref_head = args.head or "working tree"
    if args.output == "json":
        common.print_json(to_json(changes, head, args.base, ref_head))
    elif args.output == "markdown":
        print(markdown(changes, head, args.base, ref_head))
    else:
        _text(changes, head, args.base, ref_head)
    return common.EXIT_OK if head.ok else common.EXIT_FINDINGS


def to_json(changes: list[Change], head: Report, base: str, ref_head: str) -> dict[str, Any]:
    return {
        "base": base,
        "head": ref_head,
        "changes": [c.to_json() for c in changes],
        "findings": [f.to_json() for f in head.findings],
    }


def _value(value: Any) -> str:
    """One line, at most 80 characters: newlines and control characters shown as escapes."""
    text = printable(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _field_line(f: FieldChange) -> str:
    path = printable(f.path)
    if f.action == "add":
        return f"+ {path}: {_value(f.after)}"
    if f.action == "remove":
        return f"- {path}: {_value(f.before)}"
    before, after = _value(f.before), _value(f.after)
    if f.masked and before == after:  # a secret changed: say so, without either value
        return f"~ {path}: {before} (changed)"
    return f"~ {path}: {before} -> {after}"


def _summary(changes: list[Change]) -> str:
    counts = {a: sum(1 for c in changes if c.action == a) for a in ("create", "update", "delete")}
    return (
        f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete"
    )


def _text(changes: list[Change], head: Report, base: str, ref_head: str) -> None:
    out = common.stdout
    # user text goes through Text (never rich markup) and printable (never control codes)
    out.print(Text(printable(f"plan {base} -> {ref_head}: {_summary(changes)}")))
    if changes:
        table = Table(show_header=True)
        for column in ("", "object", "engine", "file", "fields"):
            table.add_column(column, overflow="fold")
        for c in changes:
            scope = f" ({c.workspace})" if c.workspace and c.kind != "Workspace" else ""
            detail = "\n".join(map(_field_line, c.fields)) if c.action == "update" else ""
            cells = (f"{c.kind}/{c.name}{scope}", c.engine, f"{c.file}:{c.line}")
            table.add_row(SYMBOL[c.action], *(Text(printable(x)) for x in cells), Text(detail))
        out.print(table)
    findings = head.findings
    if findings and common.is_terminal():
        out.print(findings_table(findings, title="findings in the change"))
    elif findings:  # a CI log: one greppable, unfolded line each, as `amlops validate` prints
        common.print_lines(map(formats.finding_line, findings))
    out.print(
        f"{len(head.errors)} errors, {len(head.warnings)} warnings"
        + (" — [red]the change cannot be applied[/]" if head.errors else "")
    )


# -- the pull-request comment -------------------------------------------------------------------
#
# Everything from the manifests (names, paths, values, messages) is attacker-controlled: anyone
# who can open a pull request writes them, and the comment is posted with the CI bot's name.
# Each piece is escaped for the context it lands in, so no value can close a code block or a
# <details>, start a heading, add a table column, embed HTML or an image, or notify people.

# GitHub refuses comments over 65,536 characters; stop well short, counting UTF-8 bytes (which
# are never fewer than characters), so a CI step may still add a header of its own.
COMMENT_LIMIT = 60_000
_FINDINGS_SHARE = 3  # findings may take a third of the comment: they say why a change is blocked
_RESERVE = 600  # for the line that says what was cut
_NAME_LIMIT = 200  # one long name or message must not eat the comment on its own
_MESSAGE_LIMIT = 500

# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that start
# inline constructs (code, emphasis, links and images, strikethrough, table cells, math).
_MD_SPECIAL = re.compile(r"[\\`*_\[\]|~$]")
# @user and @org/team notify people; #123 and owner/repo#123 post a back-reference into another
# issue's timeline. A zero-width space after the sigil leaves the text readable and inert.
_NOTIFY = re.compile(r"([@#])(?=\w)")
_BACKTICKS = re.compile(r"`+")


def _clip(text: str, limit: int = _NAME_LIMIT) -> str:
    text = printable(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _inert(text: str) -> str:
    return _NOTIFY.sub("\\1\u200b", text)


def md_text(text: str, limit: int = _NAME_LIMIT) -> str:
    """User text as Markdown that renders as exactly that text, also inside a table cell."""
    escaped = html.escape(_clip(text, limit), quote=False)
    return _inert(_MD_SPECIAL.sub(r"\\\g<0>", escaped))


def md_html(text: str, limit: int = _NAME_LIMIT) -> str:
    """User text inside raw HTML (``<summary>``), where Markdown is not parsed."""
    return _inert(html.escape(_clip(text, limit), quote=True))


def md_code(text: str, *, in_table: bool = False, limit: int = _NAME_LIMIT) -> str:
    """User text as an inline code span: the fence is longer than any run of backticks in it.

    Inside a code span nothing (HTML, mentions, emphasis) is interpreted; only a table splits
    a row on ``|`` before it sees the span, so there the pipes are escaped too.
    """
    text = _clip(text, limit)
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (max(map(len, _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text.startswith(("`", " ")) or text.endswith(("`", " ")) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _fence(lines: list[str]) -> str:
    """A code-block fence no line of the block can close: longer than any backtick run."""
    longest = max((len(run) for line in lines for run in _BACKTICKS.findall(line)), default=0)
    return "`" * max(3, longest + 1)


def _size(lines: list[str]) -> int:
    return sum(len(line.encode()) + 1 for line in lines)


@dataclass
class _Cut:
    """What a capped comment leaves out."""

    changes: int = 0
    fields: int = 0
    findings: int = 0

    def notice(self, total_changes: int) -> list[str]:
        if not (self.changes or self.fields or self.findings):
            return []
        parts = []
        if self.changes:
            parts.append(f"{self.changes} of {total_changes} change(s)")
        if self.fields:
            parts.append(f"{self.fields} changed field(s)")
        if self.findings:
            parts.append(f"{self.findings} finding(s)")
        return [
            "",
            f"> ✂️ This comment is cut to stay under GitHub's 65,536-character limit: "
            f"{', '.join(parts)} not shown. `amlops plan --output json` prints the whole plan.",
        ]


def markdown(
    changes: list[Change], head: Report, base: str, ref_head: str, limit: int = COMMENT_LIMIT
) -> str:
    """The plan as a pull-request comment of at most ``limit`` UTF-8 bytes."""
    cut = _Cut()
    top = [
        f"### amlops plan: {_summary(changes)}",
        "",
        f"{md_code(base)} → {md_code(ref_head)}",
        "",
    ]
    findings = _findings_md(head.findings, limit // _FINDINGS_SHARE, cut)
    budget = limit - _RESERVE - _size(top) - _size(findings) - 2
    body = _changes_md(changes, budget, cut) if changes else ["No changes to the platform."]
    return "\n".join([*top, *body, "", *findings, *cut.notice(len(changes))])


def _changes_md(changes: list[Change], budget: int, cut: _Cut) -> list[str]:
    lines = ["| | object | workspace | applied by | file |", "|---|---|---|---|---|"]
    shown: list[Change] = []
    for c in changes:
        ws = c.workspace if c.workspace and c.kind != "Workspace" else ""
        row = (
            f"| {SYMBOL[c.action]} {c.action} | {md_code(f'{c.kind}/{c.name}', in_table=True)} "
            f"| {md_text(ws)} | {c.engine} | {md_code(f'{c.file}:{c.line}', in_table=True)} |"
        )
        # Keep half of what is left for the field diffs of the rows already shown.
        if _size([*lines, row]) > budget // 2:
            cut.changes += 1  # its fields go with it: the notice counts them as one change
            continue
        lines.append(row)
        shown.append(c)
    for c in shown:
        if c.action == "update":
            lines += _details_md(c, budget - _size(lines), cut)
    return lines


def _details_md(c: Change, budget: int, cut: _Cut) -> list[str]:
    fields = [_field_line(f) for f in c.fields]
    fence = _fence(fields)
    opening = [
        "",
        f"<details><summary>~ {md_html(f'{c.kind}/{c.name}')} ({len(fields)} field(s))</summary>",
        "",
        f"{fence}diff",
    ]
    more = f"# … {len(fields)} more changed field(s) not shown"  # its widest form
    closing = [fence, "</details>"]
    room = budget - _size([*opening, more, *closing])
    if room < 0:
        cut.fields += len(fields)
        return []
    shown = []
    for line in fields:
        if _size([line]) > room:
            break
        room -= _size([line])
        shown.append(line)
    left = len(fields) - len(shown)
    if left:
        cut.fields += left
        shown.append(f"# … {left} more changed field(s) not shown")
    return [*opening, *shown, *closing]


def _findings_md(findings: list[Finding], budget: int, cut: _Cut) -> list[str]:
    if not findings:
        return ["✅ All policies pass."]
    errors = sum(1 for f in findings if f.is_error)
    head = f"❌ {errors} error(s) block this change" if errors else f"⚠️ {len(findings)} warning(s)"
    rows = [head, "", "| severity | location | object | rule | message |", "|---|---|---|---|---|"]
    more = f"… {len(findings)} more finding(s) not shown"
    room = budget - _size([*rows, "", more])
    # Errors first: when the comment is cut, what blocks the change is what must stay.
    for i, f in enumerate(sorted(findings, key=lambda f: not f.is_error)):
        obj = f"{f.kind}/{f.name}" if f.kind else ""
        row = (
            f"| {f.severity} | {md_code(f'{f.file}:{f.line}', in_table=True)} | {md_text(obj)} "
            f"| {md_code(f.rule, in_table=True)} | {md_text(f.message, _MESSAGE_LIMIT)} |"
        )
        if _size([row]) > room:
            left = len(findings) - i
            cut.findings += left
            return [*rows, "", f"… {left} more finding(s) not shown"]
        room -= _size([row])
        rows.append(row)
    return rows
