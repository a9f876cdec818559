"""``amlops apply [PATH] [--prune] [--allow-empty] [--dry-run]``: server-side apply of the Model,
Pipeline and Endpoint manifests to the cluster of the current kube context (field manager
``amlops``). The work is ``amlops.gitops.apply`` (shared with the GitSource handler); this module
reads the manifests and flags, keeps the inventory and prints the plan.

Order: the CRDs (generated from the schemas this amlops ships) and wait until they are served,
then the namespaces, then Models, Pipelines, Endpoints (what an Endpoint serves is applied
before it); ``--prune`` then deletes the objects of this instance's inventory whose manifests
left Git, Endpoints first. Namespace of an object: ``--namespace``, else its
``metadata.namespace``, else its workspace (``mlw-platform-dev`` ...), so one name can live in
two workspaces.

Every object is labelled as managed (``app.kubernetes.io/managed-by: amlops`` and
``amlops.io/instance``) and annotated with its manifest's path in the repository and the Git
commit (``amlops.io/source-file``, ``amlops.io/git-commit``), which the operator uses to resolve
relative paths and to tag the assets it creates.

The inventory of an instance (what it applied, Flux's format) is the ConfigMap
``amlops-inventory-<instance>`` in ``--inventory-namespace`` (``amlops-system``), written after
the objects when it changed. Prune deletes only objects in that inventory (and still labelled
for the instance), never by label alone; a PATH with no objects while the inventory has some
is refused (exit 1) unless ``--allow-empty`` says that deleting everything is meant.

A no-op apply writes nothing: each object carries a digest of what was last applied
(``amlops.io/applied-digest``), and an object is skipped when the digest matches and the live
object still holds every applied field. A new commit alone does not rewrite unchanged objects,
so ``git-commit`` names the commit that last changed the object.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.markup import escape

from amlops.cli import common
from amlops.cli.validate import findings_table
from amlops.core.limits import LimitsError
from amlops.core.manifests import Manifest, kubernetes_name
from amlops.core.provenance import Provenance
from amlops.core.validate import validate_paths
from amlops.gitops import apply as gitops_apply
from amlops.gitops.apply import (
    ApplyError,
    BuildError,
    Kube,
    OriginOf,
    Plan,
    instance_labels,
    instance_options,
)
from amlops.gitops.inventory import Inventory, InventoryError, PruneAllRefused
from amlops.kinds import ORDER

INVENTORY_NAMESPACE = "amlops-system"
INVENTORY_KEY = "inventory"

HELP = "server-side apply the operator kinds' manifests (Model, Pipeline, Endpoint...) to a cluster"
EXITS = (
    "Exit 0 applied (or nothing to do); 1 invalid manifests, a failed request, or a prune of "
    "everything without --allow-empty; 2 usage (no kube context)."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = common.command(sub, "apply", HELP, EXITS, path="manifests")
    p.add_argument(
        "--prune", action="store_true", help="delete objects of the inventory no longer in PATH"
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="with --prune: allow a PATH without objects to prune every object of the instance",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument("--namespace", "-n", metavar="NS", help="put every object in NS")
    p.add_argument(
        "--instance",
        default="default",
        metavar="NAME",
        help="which apply owns the objects (prune only deletes its own); default: default",
    )
    p.add_argument(
        "--inventory-namespace",
        default=INVENTORY_NAMESPACE,
        metavar="NS",
        help=f"where the instance's inventory ConfigMap lives; default: {INVENTORY_NAMESPACE}",
    )
    p.add_argument("--context", metavar="CTX", help="kube context (default: the current one)")
    p.set_defaults(func=run_apply)


def desired_objects(
    manifests: Iterable[Manifest], namespace: str | None, origin_of: OriginOf, instance: str
) -> list[dict[str, Any]]:
    """The objects ``amlops apply --instance INSTANCE`` applies (usage error if two manifests
    are one object, or a namespace is no DNS label)."""
    try:
        return gitops_apply.build_objects(
            manifests, namespace=namespace, origin_of=origin_of, labels=instance_labels(instance)
        )
    except BuildError as exc:
        raise common.UsageError(str(exc)) from exc


def run_apply(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise common.UsageError(f"{path} does not exist")
    try:
        report = validate_paths([path])
    except LimitsError as exc:
        raise common.UsageError(str(exc)) from exc
    if not report.ok:
        common.stderr.print(findings_table(report.errors))
        common.stderr.print(f"{len(report.errors)} error(s): nothing applied")
        return common.EXIT_FINDINGS
    objects = desired_objects(
        report.of_kind(*ORDER), args.namespace, Provenance().origin, args.instance
    )
    kube = Kube(_client(args.context))
    store = InventoryStore(kube, args.inventory_namespace, args.instance)
    options = replace(
        instance_options(args.instance),
        prune=args.prune,
        allow_empty=args.allow_empty,
        dry_run=args.dry_run,
        extra_namespaces=(args.inventory_namespace,),
    )
    try:
        previous = store.load()
        result = gitops_apply.sync(kube, objects, options, previous)
        if not args.dry_run:
            store.save(previous, result.inventory, result.plan)
    except PruneAllRefused as exc:
        common.stderr.print(f"[red]error:[/] {escape(str(exc))}; nothing applied")
        return common.EXIT_FINDINGS
    except (ApplyError, InventoryError) as exc:
        common.stderr.print(f"[red]error:[/] {escape(str(exc))}")
        return common.EXIT_FINDINGS
    for verb, what in result.plan.lines:
        common.stdout.print(f"{verb:10} {escape(what)}")
    mode = " (dry run: nothing written)" if args.dry_run else ""
    common.stdout.print(f"{result.plan.writes} change(s){mode}")
    return common.EXIT_OK


class InventoryStore:
    """An instance's inventory in the ConfigMap ``amlops-inventory-<instance>``."""

    def __init__(self, kube: Kube, namespace: str, instance: str) -> None:
        self.kube = kube
        self.name = f"amlops-inventory-{kubernetes_name(instance)}"
        self.namespace = namespace
        self.path = f"/api/v1/namespaces/{namespace}/configmaps/{self.name}"
        self.instance = instance

    def load(self) -> Inventory:
        found = self.kube.request("GET", self.path)
        if found is None:
            return Inventory()
        text = (found.get("data") or {}).get(INVENTORY_KEY)
        try:
            return Inventory.from_json(text)
        except InventoryError as exc:
            raise InventoryError(f"ConfigMap {self.name}: {exc}") from None

    def save(self, previous: Inventory, inventory: Inventory, plan: Plan) -> None:
        """Written only when it changed, so a no-op apply writes nothing."""
        if inventory == previous:
            return
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": instance_labels(self.instance),
            },
            "data": {INVENTORY_KEY: inventory.to_json()},
        }
        self.kube.apply(self.path, body)
        where = f"{self.namespace}/{self.name}"
        plan.write("record", f"inventory ConfigMap {where}: {len(inventory)} object(s)")


def _client(context: str | None) -> Any:
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    # $KUBECONFIG is read now, not when the kubernetes package was imported
    path = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        return k8s_config.new_client_from_config(path, context=context, persist_config=False)
    except (ConfigException, OSError) as exc:
        raise common.UsageError(f"no usable kube context: {exc}") from exc
