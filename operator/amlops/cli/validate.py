"""``amlops validate``, ``amlops policies`` and ``amlops explain``: the pull-request check."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from amlops.cli import common, formats, targets
from amlops.cli.formats import printable
from amlops.core.config import find_config
from amlops.core.findings import Finding
from amlops.core.limits import LimitsError
from amlops.core.policy import PolicyError, effective_policies
from amlops.core.validate import Report, validate_paths

OUTPUTS = ("text", "table", "json", "sarif", "github", "gitlab")
OUTPUT_HELP = (
    "text: one finding per line, path:line:col: severity rule message (as ruff, mypy and eslint "
    "print them); table: a table for people; json: counts and findings; sarif: SARIF 2.1.0 for "
    "code scanning; github: workflow-command annotations; gitlab: GitLab Code Quality JSON. "
    "Default: table on a terminal, text otherwise (pipes, CI logs)"
)


HELP = "check manifests against schemas, Azure ML, references and policies"
EXITS = "Exit 0: clean (warnings allowed); 1: errors or unparsable input; 2: usage."


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = common.command(sub, "validate", HELP, EXITS)
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="folders to validate (default: the repository); files alone are validated with the "
        "whole repository around them and only their findings are reported",
    )
    p.add_argument("--output", "-o", choices=OUTPUTS, default=None, help=OUTPUT_HELP)
    p.add_argument(
        "--no-sdk",
        action="store_true",
        help="skip the azure-ai-ml loaders (faster; schemas, references and policies still run)",
    )
    p.set_defaults(func=run)

    p = sub.add_parser(
        "policies",
        help="list the policy rules as the repository config (amlops.yaml) leaves them",
    )
    p.add_argument(
        "path",
        nargs="?",
        default=".",
        metavar="PATH",
        help="a path in the repository whose amlops.yaml applies (default: here)",
    )
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")
    p.set_defaults(func=run_policies)

    p = sub.add_parser("explain", help="explain one policy rule")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=run_explain)


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise common.UsageError(f"no such file or directory: {', '.join(missing)}")
    scope = targets.targets(args.paths)
    try:
        report = scope.report(validate_paths(scope.read, sdk=not args.no_sdk))
    except (PolicyError, LimitsError) as exc:
        raise common.UsageError(str(exc)) from exc
    render(report, args.output, formats.source_root(scope.read))
    return common.EXIT_OK if report.ok else common.EXIT_FINDINGS


def render(report: Report, output: str | None, root: Path) -> None:
    """``output`` None picks ``table`` on a terminal, ``text`` elsewhere; ``root`` is what
    SARIF and GitLab paths are relative to (the repository)."""
    findings = report.findings  # secret values already masked by the core
    if output is None:
        output = "table" if common.is_terminal() else "text"
    if output == "json":
        common.print_json(to_json(report, findings))
    elif output == "sarif":
        common.print_json(formats.to_sarif(findings, root))
    elif output == "gitlab":
        common.print_json(formats.to_gitlab(findings, root))
    elif output == "github":
        common.print_lines(formats.github_annotations(findings, root))
    elif output == "text":
        summary = formats.summary_line(len(report.errors), len(report.warnings))
        common.print_lines([*map(formats.finding_line, findings), f"{summary} ({_counts(report)})"])
    else:
        _table(report, findings)


def to_json(report: Report, findings: Sequence[Finding]) -> dict[str, Any]:
    return {
        "manifests": len(report.manifests),
        "kinds": report.kinds(),
        "errors": [f.to_json() for f in findings if f.is_error],
        "warnings": [f.to_json() for f in findings if not f.is_error],
    }


def findings_table(findings: Sequence[Finding], title: str | None = None) -> Table:
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("severity")
    table.add_column("location", overflow="fold")
    table.add_column("object", overflow="fold")
    table.add_column("field", overflow="fold")
    table.add_column("rule")
    table.add_column("message", overflow="fold")
    for f in findings:
        style = "red" if f.is_error else "yellow"
        table.add_row(
            f"[{style}]{f.severity}[/]",
            *(
                Text(printable(cell))  # user text: never rich markup, never control codes
                for cell in (
                    f"{f.file}:{f.line}",
                    f"{f.kind}/{f.name}" if f.kind else "",
                    f.field,
                    f.rule,
                    f.message,
                )
            ),
        )
    return table


def _counts(report: Report) -> str:
    kinds = ", ".join(f"{n} {k}" for k, n in report.kinds().items()) or "none"
    return f"{len(report.manifests)} manifests in {report.files} files: {kinds}"


def _table(report: Report, findings: Sequence[Finding]) -> None:
    out = common.stdout
    out.print(Text(_counts(report)))
    if findings:
        out.print(findings_table(findings))
    verdict = "[red]failed[/]" if report.errors else "[green]passed[/]"
    out.print(f"validation {verdict}: {len(report.errors)} errors, {len(report.warnings)} warnings")


def run_policies(args: argparse.Namespace) -> int:
    config = find_config([args.path])
    try:
        effective, problems = effective_policies(config)
    except PolicyError as exc:
        raise common.UsageError(str(exc)) from exc
    if args.output == "json":
        common.print_json(
            [
                {
                    "id": e.policy.id,
                    "title": e.policy.title,
                    "enabled": e.enabled,
                    "severity": str(e.policy.severity),
                    "kinds": list(e.policy.kinds),
                    "environments": list(e.policy.environments),
                    "type": "check" if e.policy.check else "condition",
                    "changes": list(e.changes),
                }
                for e in effective
            ]
        )
        return common.EXIT_OK
    enabled = sum(e.enabled for e in effective)
    table = Table(title=f"{len(effective)} policies ({enabled} enabled)")
    for column in ("id", "enabled", "severity", "kinds", "environments", "title", "changed by"):
        # ids and their amlops.yaml:LINE are copied into configs and `explain`: never folded
        table.add_column(column, no_wrap=column in ("id", "changed by"))
    for e in effective:
        p = e.policy
        table.add_row(
            p.id,
            "yes" if e.enabled else "no",
            str(p.severity),
            ", ".join(p.kinds),
            ", ".join(p.environments) or "all",
            Text(p.title),
            Text("\n".join(e.changes)),
        )
    common.stdout.print(table)
    for f in problems:
        common.stdout.print(Text(formats.finding_line(f)))
    return common.EXIT_OK


def run_explain(args: argparse.Namespace) -> int:
    effective, _ = effective_policies(find_config([Path.cwd()]))
    policy = next((e.policy for e in effective if e.policy.id == args.id), None)
    if policy is None:
        ids = ", ".join(e.policy.id for e in effective)
        raise common.UsageError(f"no policy {args.id!r}; known: {ids}")
    out = common.stdout
    out.print(f"[bold]{escape(policy.id)}[/] ({policy.severity}): {escape(policy.title)}\n")
    out.print(Text(policy.description + "\n"))
    out.print(f"applies to: {', '.join(policy.kinds)}", end="")
    out.print(f" in {', '.join(policy.environments)}" if policy.environments else " everywhere")
    if policy.remediation:
        out.print(Text(f"fix: {policy.remediation}"))
    if policy.check:
        out.print(f"built-in check: {policy.check}")
    out.print(Text(f"defined in: {policy.source}"))
    return common.EXIT_OK
