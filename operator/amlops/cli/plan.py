"""``amlops plan``: what a pull request changes, for the PR comment; ``--infra`` for Pulumi."""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from amlops.cli import common, formats, plan_infra
from amlops.cli.formats import printable
from amlops.cli.markdown import NAME_LIMIT, md_code, md_html, md_text
from amlops.cli.markdown import fence as md_fence
from amlops.cli.validate import findings_table
from amlops.core import azureml
from amlops.core.config import find_config
from amlops.core.findings import Finding
from amlops.core.limits import LimitsError
from amlops.core.plan import (
    Change,
    FieldChange,
    FindingSplit,
    GitError,
    content_changes,
    diff,
    git_commit,
    git_texts,
    git_top_level,
    split_findings,
)
from amlops.core.validate import Report, validate_paths

SYMBOL = {"create": "+", "update": "~", "delete": "-"}
# How each engine applies a merged change: the one line a reviewer needs to know who acts.
ENGINES = {
    "pulumi": "Pulumi (`pulumi up` on `infra/`)",
    "operator": "the amlops operator (reconciles the custom resources)",
}


@dataclass(frozen=True)
class Revisions:
    """What a plan compares: the refs as given, the commits they named when it was made (a
    branch moves on; the SHA says what was reviewed), and the path planned, which tells one
    plan comment on a pull request from another (one per platform directory or stack)."""

    base: str
    head: str
    base_sha: str | None = None
    head_sha: str | None = None  # None: the working tree
    path: str = ""
    base_findings: list[Finding] | None = field(default=None, repr=False)

    def split(self, head: Report, changes: list[Change]) -> FindingSplit:
        touched = {(c.kind, c.name) for c in changes if c.action != "delete"}
        return split_findings(head.findings, self.base_findings, blind=_blind, touched=touched)


def _blind(f: Finding) -> bool:
    """Rules the base revision is not checked by: they read files on disk (the Azure ML
    loaders read conda files and components), and only the head is checked out."""
    return f.rule in (azureml.RULE, "ref.missing-file") or f.rule.startswith("files.")


HELP = "what changes between two Git revisions of the manifests"
EXITS = (
    "Compares --base with --head (default: the working tree). "
    "Exit 0: plan made, no error findings in head; 1: error findings; 2: usage/Git error."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = common.command(sub, "plan", HELP, EXITS, path="manifests")
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
        # One source root and one repository config for both sides: a path is judged the
        # same in base and head, and the checked-out config is the one the merge applies with.
        config = find_config([path])
        base = validate_paths(
            [path], texts=base_texts, check_files=False, sdk=False, root=root, config=config
        )
        if head_texts is None:
            head = validate_paths([path], root=root, config=config)
        else:
            head = validate_paths(
                [path], texts=head_texts, check_files=False, root=root, config=config
            )
    except LimitsError as exc:
        raise common.UsageError(str(exc)) from exc
    try:
        content = content_changes(head.manifests, args.base, args.head)
        revs = Revisions(
            args.base,
            args.head or "working tree",
            git_commit(path, args.base),
            git_commit(path, args.head) if args.head else None,
            args.path,
            base.findings,
        )
    except GitError as exc:
        raise common.UsageError(f"git: {exc}") from exc
    changes = diff(base.manifests, head.manifests, content)
    if args.output == "json":
        common.print_json(to_json(changes, head, revs))
    elif args.output == "markdown":
        print(markdown(changes, head, revs.base, revs.head, revisions=revs))
    else:
        _text(changes, head, revs)
    return common.EXIT_OK if head.ok else common.EXIT_FINDINGS


def to_json(changes: list[Change], head: Report, revs: Revisions) -> dict[str, Any]:
    split = revs.split(head, changes)
    return {
        "base": revs.base,
        "head": revs.head,
        "base_sha": revs.base_sha,
        "head_sha": revs.head_sha,
        "path": revs.path,
        "marker": marker(revs.path),
        "changes": [c.to_json() for c in changes],
        "deletes": [f"{c.kind}/{c.name}" for c in changes if c.action == "delete"],
        "applied_by": _engines(changes),
        "findings": [f.to_json() for f in head.findings],
        "findings_introduced": [f.to_json() for f in split.introduced],
        "findings_existing": [f.to_json() for f in split.existing],
        "findings_fixed": split.fixed,
    }


def _engines(changes: list[Change]) -> dict[str, list[str]]:
    """Per engine, the kinds of the changes it applies, in the order the engines are listed."""
    out: dict[str, list[str]] = {}
    for c in changes:
        kinds = out.setdefault(c.engine, [])
        if c.kind not in kinds:
            kinds.append(c.kind)
    order = list(ENGINES)
    return {e: out[e] for e in sorted(out, key=lambda e: [*order, e].index(e))}


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


def _short(sha: str | None) -> str:
    return f" ({sha[:12]})" if sha else ""


def _text(changes: list[Change], head: Report, revs: Revisions) -> None:
    out = common.stdout
    # user text goes through Text (never rich markup) and printable (never control codes)
    base = f"{revs.base}{_short(revs.base_sha)}"
    ref_head = f"{revs.head}{_short(revs.head_sha)}"
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
_MESSAGE_LIMIT = 500

_DELETES_SHOWN = 20  # names in the deletion warning; the table below lists every one

# The hidden line CI finds its previous comment by (``amlops comment``), so a new push updates
# the comment instead of adding one. One per planned path: a repository with a platform per
# directory keeps one comment each. The path keeps only characters that cannot end an HTML
# comment (``-->``, ``--!>``), so the marker is always one inert line.
MARKER = re.compile(r"<!-- amlops-plan(?: path=[\w./+=-]*)? -->", re.ASCII)
_MARKER_UNSAFE = re.compile(r"[^\w./+=-]", re.ASCII)


def marker(path: str) -> str:
    safe = _MARKER_UNSAFE.sub("_", path)[:NAME_LIMIT]
    return f"<!-- amlops-plan path={safe} -->" if safe else "<!-- amlops-plan -->"


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
    changes: list[Change],
    head: Report,
    base: str,
    ref_head: str,
    limit: int = COMMENT_LIMIT,
    *,
    revisions: Revisions | None = None,
) -> str:
    """The plan as a pull-request comment of at most ``limit`` UTF-8 bytes.

    ``revisions`` adds the commits, the marker's path and the base's findings; without it the
    comment has no SHAs and every finding counts as introduced by the change.
    """
    revs = revisions or Revisions(base, ref_head)
    cut = _Cut()
    top = [
        f"### amlops plan: {_summary(changes)}",
        "",
        *_revisions_md(revs),
        *_deletes_md(changes),
        *_applied_md(changes),
    ]
    end = ["", marker(revs.path)]
    split = revs.split(head, changes)
    findings = _findings_md(split, revs, limit // _FINDINGS_SHARE, cut)
    budget = limit - _RESERVE - _size(top) - _size(findings) - _size(end) - 2
    body = _changes_md(changes, budget, cut) if changes else ["No changes to the platform."]
    return "\n".join([*top, *body, "", *findings, *cut.notice(len(changes)), *end])


def _revisions_md(revs: Revisions) -> list[str]:
    """Refs with short SHAs, then the full SHAs in code spans: GitHub turns a bare SHA into a
    link, and a code span keeps it copyable text."""
    base = md_code(revs.base) + (f" at {md_code(revs.base_sha[:7])}" if revs.base_sha else "")
    head = md_code(revs.head) + (f" at {md_code(revs.head_sha[:7])}" if revs.head_sha else "")
    lines = [f"{base} → {head}", ""]
    if revs.base_sha:
        full_head = md_code(revs.head_sha) if revs.head_sha else "the working tree"
        lines += [f"Commits: base {md_code(revs.base_sha)}, head {full_head}", ""]
    return lines


def _deletes_md(changes: list[Change]) -> list[str]:
    """Deletions stand out above the table: they are the changes that cannot be undone."""
    deletes = [c for c in changes if c.action == "delete"]
    if not deletes:
        return []
    names = ", ".join(map(_object_md, deletes[:_DELETES_SHOWN]))
    more = f" and {len(deletes) - _DELETES_SHOWN} more" if len(deletes) > _DELETES_SHOWN else ""
    return [f"> ⚠️ **This change will delete {len(deletes)} object(s):** {names}{more}", ""]


def _object_md(c: Change) -> str:
    """``Kind/name`` and its workspace: one name may be an object in each environment."""
    ws = f" in {md_text(c.workspace)}" if c.workspace and c.kind != "Workspace" else ""
    return f"{md_code(f'{c.kind}/{c.name}')}{ws}"


def _applied_md(changes: list[Change]) -> list[str]:
    parts = [
        f"{ENGINES.get(engine) or md_text(engine)} for {', '.join(map(md_text, kinds))}"
        for engine, kinds in _engines(changes).items()
    ]
    return [f"**Applied after merge by** {'; '.join(parts)}.", ""] if parts else []


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
    fence = md_fence(fields)
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


def _findings_md(split: FindingSplit, revs: Revisions, budget: int, cut: _Cut) -> list[str]:
    """The findings the change introduces first (what the reviewer must block on), then those
    the base already had, which fail the check just the same but are not this change's doing."""
    fixed = [f"✔️ This change fixes {split.fixed} finding(s) of the base."] if split.fixed else []
    fixed = ["", *fixed] if fixed else []
    if not split.introduced and not split.existing:
        return ["✅ All policies pass.", *fixed]
    known = revs.base_findings is not None
    new = _finding_rows(_introduced_title(split.introduced, known), split.introduced, budget, cut)
    if not split.existing:
        return [*new, *fixed]
    errors = sum(1 for f in split.existing if f.is_error)
    title = (
        f"**Already on the base** {md_code(revs.base)}, not introduced by this change: "
        f"{len(split.existing)} finding(s)"
        + (f", of which {errors} error(s) still fail the check" if errors else "")
    )
    old = _finding_rows(title, split.existing, budget - _size(new) - 1, cut)
    return [*new, "", *old, *fixed]


def _introduced_title(findings: list[Finding], known: bool) -> str:
    by = " introduced by this change" if known else ""
    if not findings:
        return "✅ This change introduces no findings."
    errors = sum(1 for f in findings if f.is_error)
    if errors:
        return (
            f"❌ {errors} error(s){by} block it"
            if known
            else f"❌ {errors} error(s) block this change"
        )
    return f"⚠️ {len(findings)} warning(s){by}"


def _finding_rows(title: str, findings: list[Finding], budget: int, cut: _Cut) -> list[str]:
    if not findings:
        return [title]
    rows = [title, "", "| severity | location | object | rule | message |", "|---|---|---|---|---|"]
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
