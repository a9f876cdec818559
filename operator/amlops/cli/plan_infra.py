"""``amlops plan --infra``: the Azure resources the Pulumi program declares for a stack.

Offline by default: the program in infra/ runs under Pulumi's mock monitor and every resource
it registers is listed with its parent, dependencies and key inputs. That is what the program
*declares*, not what would change: there is no Pulumi state and no Azure call, so no diff.
``--preview`` runs a real ``pulumi preview`` through the Automation API instead; it needs the
Pulumi CLI on PATH (and Azure credentials, and a stack backend).

The program lives in the checkout (infra/ next to Pulumi.yaml), not in the installed package,
so it is imported from the Pulumi project directory found above PATH or the working directory.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from amlops.cli import common
from amlops.cli.markdown import md_code, md_text
from amlops.core.credentials import mask
from amlops.paths import repo_root

if TYPE_CHECKING:
    from pulumi import automation as auto

    from infra.offline import DeclaredResource, OfflineRun

DECLARED_NOTE = (
    "Declared resources: the Pulumi program ran under Pulumi's mock monitor. Nothing was "
    "compared with Azure or with a Pulumi state, so this is no diff; IDs use a placeholder "
    "subscription. Use --preview for a real `pulumi preview`."
)
POLICY_PACK = Path("policies") / "pulumi-policy-pack"

# Per resource type, the inputs worth a reviewer's eye (dotted paths into the inputs).
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "azure-native:resources:ResourceGroup": ("resourceGroupName", "location"),
    "azure-native:storage:StorageAccount": (
        "accountName",
        "sku.name",
        "minimumTlsVersion",
        "allowBlobPublicAccess",
        "allowSharedKeyAccess",
        "publicNetworkAccess",
    ),
    "azure-native:keyvault:Vault": (
        "vaultName",
        "properties.enableRbacAuthorization",
        "properties.enablePurgeProtection",
        "properties.softDeleteRetentionInDays",
        "properties.publicNetworkAccess",
    ),
    "azure-native:operationalinsights:Workspace": ("workspaceName", "retentionInDays"),
    "azure-native:applicationinsights:Component": ("resourceName", "ingestionMode"),
    "azure-native:containerregistry:Registry": (
        "registryName",
        "sku.name",
        "adminUserEnabled",
        "publicNetworkAccess",
    ),
    "azure-native:machinelearningservices:Workspace": (
        "workspaceName",
        "location",
        "sku.name",
        "publicNetworkAccess",
        "managedNetwork.isolationMode",
        "identity.type",
        "systemDatastoresAuthMode",
    ),
    "azure-native:machinelearningservices:Compute": (
        "computeName",
        "properties.properties.vmSize",
        "properties.properties.vmPriority",
        "properties.properties.scaleSettings.minNodeCount",
        "properties.properties.scaleSettings.maxNodeCount",
        "properties.properties.scaleSettings.nodeIdleTimeBeforeScaleDown",
        "properties.properties.enableNodePublicIp",
        "properties.properties.remoteLoginPortPublicAccess",
    ),
    "azure-native:managedidentity:UserAssignedIdentity": (
        "resourceName",
        "resourceGroupName",
        "location",
    ),
    "azure-native:managedidentity:FederatedIdentityCredential": ("issuer", "subject"),
    "azure-native:authorization:RoleAssignment": (
        "principalId",
        "principalType",
        "scope",
        "roleAssignmentName",
    ),
}


def add_infra_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--infra`` flags on ``amlops plan`` (PATH and --output are the plan command's)."""
    group = parser.add_argument_group("infrastructure (the Pulumi program in infra/)")
    group.add_argument(
        "--infra",
        action="store_true",
        help="list the Azure resources the Pulumi program declares for --stack "
        "(offline, under Pulumi's mock monitor; no state diff)",
    )
    group.add_argument("--stack", metavar="NAME", help="Pulumi stack (Pulumi.NAME.yaml), e.g. dev")
    group.add_argument(
        "--preview",
        action="store_true",
        help="with --infra: run a real `pulumi preview` via the Automation API "
        "(needs the Pulumi CLI on PATH and Azure credentials)",
    )


def find_project(start: Path) -> Path:
    """The directory holding Pulumi.yaml: above PATH, above the working directory, the checkout."""
    for base in (start.resolve(), Path.cwd().resolve()):
        for candidate in (base, *base.parents):
            if (candidate / "Pulumi.yaml").is_file() and (candidate / "infra").is_dir():
                return candidate
    root = repo_root()
    if (root / "Pulumi.yaml").is_file():
        return root
    raise common.UsageError(
        f"no Pulumi project (Pulumi.yaml with infra/) above {start}; run from the repository"
    )


def _import_infra(project: Path) -> None:
    if str(project) not in sys.path:
        sys.path.insert(0, str(project))


def run_infra_plan(args: argparse.Namespace) -> int:
    if not args.stack:
        raise common.UsageError("plan --infra needs --stack NAME (e.g. --stack dev)")
    path = Path(args.path)
    project = find_project(path)
    _import_infra(project)
    if args.preview:
        return run_preview(project, args.stack, args.output)
    return run_offline_plan(project, args.stack, path, args.output)


def run_offline_plan(project: Path, stack: str, manifests: Path, output: str) -> int:
    from dataclasses import replace

    from infra import config as infra_config
    from infra import offline, program
    from infra.specs import ManifestError, format_finding

    try:
        values = infra_config.read_stack_file(project, stack)
        config = replace(
            infra_config.from_values(values, stack, project), manifests=manifests.resolve()
        )
        warnings: list[str] = []
        platform = program.load_platform(config, warn=warnings.append)
    except ManifestError as exc:
        common.stderr.print(f"[red]{len(exc.findings)} error(s); nothing was declared[/]")
        for finding in exc.findings:
            print(format_finding(finding), file=sys.stderr)
        return common.EXIT_FINDINGS
    except infra_config.ConfigError as exc:
        raise common.UsageError(str(exc)) from exc
    for warning in warnings:
        common.stderr.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)
    run = offline.run_offline(platform, config)
    if run.duplicate_urns:  # the real engine would refuse these; say so instead of hiding it
        common.stderr.print(
            f"[red]duplicate resource URNs:[/] {escape(', '.join(run.duplicate_urns))}"
        )
        return common.EXIT_FINDINGS
    render(run, Meta(stack, config.environment, str(manifests)), output)
    return common.EXIT_OK


@dataclass(frozen=True)
class Meta:
    stack: str
    environment: str
    manifests: str


def render(run: OfflineRun, meta: Meta, output: str) -> None:
    if output == "json":
        common.print_json(to_json(run, meta))
    elif output == "markdown":
        print(markdown(run, meta))
    else:
        print(text(run, meta))


def to_json(run: OfflineRun, meta: Meta) -> dict[str, Any]:
    return {
        "stack": meta.stack,
        "environment": meta.environment,
        "manifests": meta.manifests,
        "mode": "declared",
        "stateDiff": False,
        "note": DECLARED_NOTE,
        "resources": [r.to_json() for r in run.resources],
        "outputs": run.outputs,
    }


def _lookup(inputs: dict[str, Any], dotted: str) -> Any:
    value: Any = inputs
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def key_inputs(resource: DeclaredResource) -> dict[str, Any]:
    from infra.roles import role_name_of

    shown: dict[str, Any] = {}
    if resource.type == "azure-native:authorization:RoleAssignment":
        definition = str(resource.inputs.get("roleDefinitionId", ""))
        shown["role"] = role_name_of(definition) or definition
    for dotted in KEY_INPUTS.get(resource.type, ()):
        value = _lookup(resource.inputs, dotted)
        if value is not None:
            parts = dotted.split(".")
            # `sku.name` and `identity.type` say little as `name` and `type`.
            label = ".".join(parts[-2:]) if parts[-1] in ("name", "type") else parts[-1]
            shown[label] = value
    return shown


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _summary(run: OfflineRun, meta: Meta) -> str:
    azure = sum(1 for r in run.resources if r.custom)
    return (
        f"stack {meta.stack} (environment {meta.environment}, manifests {meta.manifests}): "
        f"{azure} Azure resources in {len(run.resources) - azure} components"
    )


def text(run: OfflineRun, meta: Meta) -> str:
    lines = [_summary(run, meta), DECLARED_NOTE, ""]
    depth: dict[str, int] = {}
    for r in run.resources:
        level = depth.get(r.parent, -1) + 1 if r.parent else 0
        depth[r.name] = level
        pad = "  " * level
        flags = "  [protected]" if r.protect else ""
        lines.append(f"{pad}{r.name}  ({r.type}){flags}")
        shown = mask(key_inputs(r))
        if shown:
            lines.append(f"{pad}    " + "  ".join(f"{k}={_format(v)}" for k, v in shown.items()))
        if r.dependencies:
            lines.append(f"{pad}    depends on: {', '.join(r.dependencies)}")
    lines += ["", "stack outputs:"]
    lines += [f"  {k}: {_format(v)}" for k, v in run.outputs.items()]
    return "\n".join(lines)


def markdown(run: OfflineRun, meta: Meta) -> str:
    rows = [
        f"### Declared Azure resources: {md_text(_summary(run, meta), limit=1000)}",
        "",
        f"> {DECLARED_NOTE}",
        "",
        "| resource | type | parent | depends on | key inputs |",
        "|---|---|---|---|---|",
    ]
    for r in run.resources:
        # manifest values (names, tags) are hostile in a PR comment: escaped for a table cell,
        # secrets under secret-looking names masked as in `amlops plan`
        inputs = mask(key_inputs(r))
        shown = ", ".join(md_code(f"{k}={_format(v)}", in_table=True) for k, v in inputs.items())
        protected = " (protected)" if r.protect else ""
        rows.append(
            f"| {md_code(r.name, in_table=True)}{protected} | {md_code(r.type, in_table=True)} "
            f"| {md_text(r.parent or '')} | {md_text(', '.join(r.dependencies))} | {shown} |"
        )
    return "\n".join(rows)


# -- a real preview ---------------------------------------------------------------------------


def preview_stack(project: Path, stack: str, command: auto.PulumiCommand) -> auto.Stack:
    """The Automation API stack for ``project``'s own program (``main: infra/``)."""
    from pulumi import automation as auto

    workspace = auto.LocalWorkspace(work_dir=str(project), pulumi_command=command)
    return auto.Stack.select(stack, workspace)


def run_preview(
    project: Path,
    stack: str,
    output: str,
    command: auto.PulumiCommand | None = None,
    echo: Callable[[str], Any] = print,
) -> int:
    from pulumi import automation as auto

    if command is None:
        if shutil.which("pulumi") is None:
            raise common.UsageError(
                "--preview runs `pulumi preview` through the Pulumi Automation API and needs "
                "the Pulumi CLI on PATH, which was not found "
                "(install: https://www.pulumi.com/docs/install/). Without --preview, "
                "`amlops plan --infra` lists the declared resources offline."
            )
        command = auto.PulumiCommand()
    policy_packs: Sequence[str] = []
    if (project / POLICY_PACK / "PulumiPolicy.yaml").is_file():
        policy_packs = [str(project / POLICY_PACK)]
    try:
        result = preview_stack(project, stack, command).preview(
            diff=True,
            color="never",
            policy_packs=list(policy_packs),
            on_output=echo if output == "text" else None,
        )
    except auto.errors.CommandError as exc:
        common.stderr.print(f"[red]pulumi preview failed:[/] {escape(str(exc))}")
        return common.EXIT_FINDINGS
    if output == "text":
        changes = ", ".join(f"{n} to {op}" for op, n in sorted(result.change_summary.items()))
        echo(f"pulumi preview of stack {stack}: {changes or 'no changes'}")
    else:
        common.print_json(
            {"stack": stack, "mode": "preview", "changeSummary": result.change_summary}
        )
    return common.EXIT_OK
