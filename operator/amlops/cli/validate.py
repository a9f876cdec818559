"""``amlops validate``, ``amlops policies`` and ``amlops explain``: the pull-request check."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table
from rich.text import Text

from amlops import __name__ as package_name
from amlops.cli import common
from amlops.core.findings import Finding
from amlops.core.limits import LimitsError
from amlops.core.policy import PolicyError, load_policies
from amlops.core.validate import Report, validate_paths

OUTPUTS = ("text", "json", "sarif", "github")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "validate",
        help="check manifests against schemas, Azure ML, references and policies",
        description="Exit 0: clean (warnings allowed); 1: errors or unparsable input; 2: usage.",
    )
    p.add_argument("paths", nargs="*", default=["manifests"], metavar="PATH")
    p.add_argument("--output", "-o", choices=OUTPUTS, default="text")
    p.add_argument(
        "--no-sdk",
        action="store_true",
        help="skip the azure-ai-ml loaders (faster; schemas, references and policies still run)",
    )
    p.set_defaults(func=run)

    p = sub.add_parser("policies", help="list the policy rules")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")
    p.set_defaults(func=run_policies)

    p = sub.add_parser("explain", help="explain one policy rule")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=run_explain)


def run(args: argparse.Namespace) -> int:
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        raise common.UsageError(f"no such file or directory: {', '.join(missing)}")
    try:
        report = validate_paths(args.paths, sdk=not args.no_sdk)
    except (PolicyError, LimitsError) as exc:
        raise common.UsageError(str(exc)) from exc
    render(report, args.output)
    return common.EXIT_OK if report.ok else common.EXIT_FINDINGS


def render(report: Report, output: str) -> None:
    findings = report.findings  # secret values already masked by the core
    if output == "json":
        common.print_json(to_json(report, findings))
    elif output == "sarif":
        common.print_json(to_sarif(findings))
    elif output == "github":
        for line in github_annotations(findings):
            print(line)
    else:
        _text(report, findings)


def to_json(report: Report, findings: Sequence[Finding]) -> dict[str, Any]:
    return {
        "manifests": len(report.manifests),
        "kinds": report.kinds(),
        "errors": [f.to_json() for f in findings if f.is_error],
        "warnings": [f.to_json() for f in findings if not f.is_error],
    }


def _escape(value: str, *, prop: bool = False) -> str:
    # GitHub workflow commands: https://docs.github.com/actions/reference/workflow-commands
    out = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    out = printable(out)  # the Actions log renders ANSI escape sequences
    if prop:
        out = out.replace(":", "%3A").replace(",", "%2C")
    return out


def github_annotations(findings: Sequence[Finding]) -> list[str]:
    lines = []
    for f in findings:
        level = "error" if f.is_error else "warning"
        title = _escape(f"{f.rule} {f.kind or ''}/{f.name or ''}".strip(), prop=True)
        lines.append(
            f"::{level} file={_escape(f.file, prop=True)},line={f.line},col={f.column},"
            f"title={title}::{_escape(f.message)}"
        )
    return lines


def to_sarif(findings: Sequence[Finding]) -> dict[str, Any]:
    policies = load_policies()
    rule_ids = sorted({f.rule for f in findings})
    rules = []
    for rule_id in rule_ids:
        policy = policies.get(rule_id)
        rule: dict[str, Any] = {"id": rule_id}
        if policy is not None:
            rule["shortDescription"] = {"text": policy.title}
            rule["fullDescription"] = {"text": policy.description}
        rules.append(rule)
    results = [
        {
            "ruleId": f.rule,
            "ruleIndex": rule_ids.index(f.rule),
            "level": "error" if f.is_error else "warning",
            "message": {"text": f.message},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.file},
                        "region": {"startLine": f.line, "startColumn": f.column},
                    },
                    "logicalLocations": [
                        {"name": f.name or "", "kind": f.kind or "", "fullyQualifiedName": f.field}
                    ],
                }
            ],
        }
        for f in findings
    ]
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": package_name,
                        "informationUri": "https://amlops.io",
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }


def printable(text: str) -> str:
    """User text made safe for a terminal or log: control characters (escape sequences that
    recolour or rewrite the screen, carriage returns that overprint a line, newlines that fake
    a line of output) and invisible Unicode (bidi overrides) are shown as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


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


def _text(report: Report, findings: Sequence[Finding]) -> None:
    out = common.stdout
    kinds = ", ".join(f"{n} {k}" for k, n in report.kinds().items()) or "none"
    out.print(f"{len(report.manifests)} manifests in {report.files} files ({kinds})")
    if findings:
        out.print(findings_table(findings))
    verdict = "[red]failed[/]" if report.errors else "[green]passed[/]"
    out.print(f"validation {verdict}: {len(report.errors)} errors, {len(report.warnings)} warnings")


def run_policies(args: argparse.Namespace) -> int:
    policies = load_policies()
    if args.output == "json":
        common.print_json(
            [
                {
                    "id": p.id,
                    "title": p.title,
                    "severity": str(p.severity),
                    "kinds": list(p.kinds),
                    "environments": list(p.environments),
                    "type": "check" if p.check else "condition",
                }
                for p in policies.policies
            ]
        )
        return common.EXIT_OK
    table = Table(title=f"{len(policies.policies)} policies")
    for column in ("id", "severity", "kinds", "environments", "title"):
        table.add_column(column)
    for p in policies.policies:
        table.add_row(
            p.id,
            str(p.severity),
            ", ".join(p.kinds),
            ", ".join(p.environments) or "all",
            p.title,
        )
    common.stdout.print(table)
    return common.EXIT_OK


def run_explain(args: argparse.Namespace) -> int:
    policy = load_policies().get(args.id)
    if policy is None:
        ids = ", ".join(p.id for p in load_policies().policies)
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
