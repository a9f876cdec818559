"""``amlops plan``: what a pull request changes, for the PR comment; ``--infra`` for Pulumi."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from amlops.cli import common, plan_infra
from amlops.cli.validate import findings_table
from amlops.core.findings import Finding
from amlops.core.plan import Change, GitError, content_changes, diff, git_texts
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
        base_texts = git_texts(path, args.base)
        head_texts = git_texts(path, args.head) if args.head else None
    except GitError as exc:
        raise common.UsageError(f"git: {exc}") from exc
    base = validate_paths([path], texts=base_texts, check_files=False, sdk=False)
    if head_texts is None:
        head = validate_paths([path])
    else:
        head = validate_paths([path], texts=head_texts, check_files=False)
    try:
        content = content_changes(head.manifests, args.base, args.head)
    except GitError as exc:
        raise common.UsageError(f"git: {exc}") from exc
    changes = diff(base.manifests, head.manifests, content)
    ref_head = args.head or "working tree"
    if args.output == "json":
        common.print_json(
            {
                "base": args.base,
                "head": ref_head,
                "changes": [c.to_json() for c in changes],
                "findings": [f.to_json() for f in head.findings],
            }
        )
    elif args.output == "markdown":
        print(markdown(changes, head, args.base, ref_head))
    else:
        _text(changes, head, args.base, ref_head)
    return common.EXIT_OK if head.ok else common.EXIT_FINDINGS


def _value(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def _field_lines(change: Change) -> list[str]:
    lines = []
    for f in change.fields:
        if f.action == "add":
            lines.append(f"+ {f.path}: {_value(f.after)}")
        elif f.action == "remove":
            lines.append(f"- {f.path}: {_value(f.before)}")
        else:
            lines.append(f"~ {f.path}: {_value(f.before)} -> {_value(f.after)}")
    return lines


def _summary(changes: list[Change]) -> str:
    counts = {a: sum(1 for c in changes if c.action == a) for a in ("create", "update", "delete")}
    return (
        f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete"
    )


def _text(changes: list[Change], head: Report, base: str, ref_head: str) -> None:
    out = common.stdout
    out.print(Text(f"plan {base} -> {ref_head}: {_summary(changes)}"))
    if changes:
        table = Table(show_header=True)
        for column in ("", "object", "engine", "file", "fields"):
            table.add_column(column, overflow="fold")
        for c in changes:
            scope = f" ({c.workspace})" if c.workspace and c.kind != "Workspace" else ""
            detail = "\n".join(_field_lines(c)) if c.action == "update" else ""
            cells = (f"{c.kind}/{c.name}{scope}", c.engine, f"{c.file}:{c.line}", detail)
            table.add_row(SYMBOL[c.action], *map(Text, cells))  # user text: never markup
        out.print(table)
    if head.findings:
        out.print(findings_table(head.findings, title="findings in the change"))
    out.print(
        f"{len(head.errors)} errors, {len(head.warnings)} warnings"
        + (" — [red]the change cannot be applied[/]" if head.errors else "")
    )


def markdown(changes: list[Change], head: Report, base: str, ref_head: str) -> str:
    lines = [f"### amlops plan: {_summary(changes)}", "", f"`{base}` → `{ref_head}`", ""]
    if changes:
        lines += ["| | object | workspace | applied by | file |", "|---|---|---|---|---|"]
        for c in changes:
            ws = c.workspace if c.workspace and c.kind != "Workspace" else ""
            lines.append(
                f"| {SYMBOL[c.action]} {c.action} | `{c.kind}/{c.name}` | {ws} | {c.engine} "
                f"| `{c.file}:{c.line}` |"
            )
        updates = [c for c in changes if c.action == "update"]
        for c in updates:
            lines += ["", "<details><summary>", f"~ {c.kind}/{c.name}", "</summary>", "", "```diff"]
            lines += _field_lines(c)
            lines += ["```", "</details>"]
    else:
        lines.append("No changes to the platform.")
    lines += ["", _findings_md(head.findings)]
    return "\n".join(lines)


def _findings_md(findings: list[Finding]) -> str:
    if not findings:
        return "✅ All policies pass."
    errors = sum(1 for f in findings if f.is_error)
    head = f"❌ {errors} error(s) block this change" if errors else f"⚠️ {len(findings)} warning(s)"
    rows = ["| severity | location | object | rule | message |", "|---|---|---|---|---|"]
    for f in findings:
        msg = f.message.replace("|", "\\|")
        rows.append(
            f"| {f.severity} | `{f.file}:{f.line}` | {f.kind}/{f.name} | `{f.rule}` | {msg} |"
        )
    return "\n".join([head, "", *rows])
