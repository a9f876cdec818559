"""Benchmark: the Pulumi program over a platform of 10 workspaces x 4 clusters x 20 grants.

Generates the manifests, then times the two halves of a run: loading (the amlops validate
check plus the translation to component specs) and declaring every resource under Pulumi's
mock monitor. Run `.venv/bin/python -m bench.infra` from the repository root; the last line
is the RESULT.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path

# Run by path, sys.path[0] is bench/, where this very file is named infra.py: the repository
# root has to come first for `import infra` to find the program.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra import offline, program  # noqa: E402
from infra.config import OperatorIdentityConfig, StackConfig  # noqa: E402

WORKSPACES = 10
CLUSTERS = 4
GRANTS = 20
SIZES = ("Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3", "Standard_NC24ads_A100_v4")
TAGS = "  tags: {owner: ml-platform@contoso.com, cost-center: '4711'}\n"
# (role, scope) by grant number: workspace, cluster and storage scopes, four built-in roles.
GRANT_KINDS = (
    ("AzureML Data Scientist", "{{workspace: {ws}}}"),
    ("AzureML Compute Operator", "{{workspace: {ws}, compute: gpu-{c}}}"),
    ("Reader", "{{workspace: {ws}}}"),
    ("Storage Blob Data Reader", "{{workspace: {ws}, resource: storage}}"),
)


def manifests(directory: Path) -> None:
    for w in range(WORKSPACES):
        ws = f"mlw-bench-{w:02d}"
        docs = [
            f"apiVersion: amlops.io/v1alpha1\nkind: Workspace\nmetadata: {{name: {ws}}}\nspec:\n"
            f"  environment: dev\n  location: westeurope\n  resourceGroup: rg-{ws}\n"
            f"  storage: {{allowSharedKeyAccess: false}}\n{TAGS}"
        ]
        for c in range(CLUSTERS):
            docs.append(
                f"apiVersion: amlops.io/v1alpha1\nkind: ComputeCluster\n"
                f"metadata: {{name: gpu-{c}}}\nspec:\n  workspace: {ws}\n"
                f"  vmSize: {SIZES[c % len(SIZES)]}\n  minInstances: 0\n  maxInstances: 4\n"
                f"  idleTimeBeforeScaleDown: 1800\n{TAGS}"
            )
        for g in range(GRANTS):
            role, scope = GRANT_KINDS[g % len(GRANT_KINDS)]
            principal = uuid.uuid5(uuid.NAMESPACE_OID, f"{ws}/{g}")
            docs.append(
                f"apiVersion: amlops.io/v1alpha1\nkind: RoleAssignment\n"
                f"metadata: {{name: grant-{g:02d}}}\nspec:\n"
                f"  principal: {{type: Group, objectId: {principal}}}\n  role: {role}\n"
                f"  scope: {scope.format(ws=ws, c=g % CLUSTERS)}\n"
            )
        docs.append(
            "apiVersion: amlops.io/v1alpha1\nkind: RoleAssignment\n"
            "metadata: {name: operator}\nspec:\n  principal: {operatorIdentity: true}\n"
            f"  role: AzureML Data Scientist\n  scope: {{workspace: {ws}}}\n"
        )
        (directory / f"{ws}.yaml").write_text("---\n".join(docs), encoding="utf-8")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "manifests"
        directory.mkdir()
        manifests(directory)
        config = StackConfig(
            stack="bench",
            environment="dev",
            manifests=directory,
            project_dir=Path(tmp),
            commit="bench",
            location="westeurope",
            operator=OperatorIdentityConfig(oidc_issuer="https://issuer.example/bench/"),
        )
        started = time.perf_counter()
        platform = program.load_platform(config, warn=lambda message: print("warning:", message))
        loaded = time.perf_counter()
        run = offline.run_offline(platform, config)
        done = time.perf_counter()
    total = len(run.resources)
    azure = sum(1 for r in run.resources if r.custom)
    grants = sum(1 for r in run.resources if r.type.endswith(":RoleAssignment"))
    seconds = done - started
    per_resource = 1000 * seconds / total
    print(
        f"platform: {len(platform.workspaces)} workspaces, {len(platform.clusters)} clusters, "
        f"{len(platform.assignments)} grants + {len(platform.operator_assignments)} operator grants"
    )
    print(
        f"declared: {total} resources ({azure} Azure resources, {grants} role assignments, "
        f"{total - azure} components)"
    )
    print(f"load (validate + translate): {loaded - started:.3f} s")
    print(f"declare under mocks:         {done - loaded:.3f} s")
    print(f"total:                       {seconds:.3f} s, {per_resource:.2f} ms per resource")
    if run.duplicate_urns:
        raise SystemExit(f"duplicate URNs: {run.duplicate_urns}")
    print(f"RESULT resources={total} seconds={seconds:.3f} ms_per_resource={per_resource:.2f}")


if __name__ == "__main__":
    main()
