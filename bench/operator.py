# ruff: noqa: A005 - the issue names this script bench/operator.py; it is run, never imported
"""Operator throughput and write economy on a real kube-apiserver + etcd (envtest).

1. Starts the API server, installs the CRDs and the shipped RBAC, and runs the real operator
   (``amlops operator``) as its ServiceAccount behind a counting proxy, with its admission
   webhooks registered (``--no-webhooks``: without): the mutating one adds the finalizer at
   admission, so a create costs the operator one status write and one Event.
2. Creates N Model objects (one model folder each is the same small file: registering is
   cheap, so the figure is the operator's and the API server's, not the disk's) and times
   until every one is Ready at its generation.
3. Counts the operator's requests in that phase, per object and by verb.
4. Restarts the operator with nothing changed: every object is resumed (reconciled against the
   backend) and the object writes are counted; they must be 0 (Kopf re-registering the
   webhook configurations at start and stop is counted apart).
5. With the operator stopped, measures the API server's raw PATCH rate in the same run: status
   merge-patches of the same objects, through the same proxy, from an asyncio client with 32
   requests in flight (best of three). ``raw_patch_ratio`` is the operator's PATCH rate during
   the create phase divided by that raw rate: the share of the API server's write capacity the
   operator turned into finished objects.

    python -m bench.operator [--objects 1000] [--workers 8] [--no-webhooks]
"""

from __future__ import annotations

import os
import sys

# This file's name is the standard library's `operator`: with `python bench/operator.py`, its
# folder comes first on sys.path and `enum` (imported by almost everything) would import this
# script instead of the stdlib module. Drop the folder before anything imports `operator`.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse
import asyncio
import json
import shutil
import ssl
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from amlops import API_GROUP
from amlops.crds import VERSION
from tests.envtest.apiserver import apply_object
from tests.operator.harness import (
    Kube,
    OperatorProcess,
    body,
    ca_of,
    is_ready,
    model_spec,
    production_operator,
    refuses,
    settled_records,
    token_of,
    wait_for,
    webhook_env,
)
from tests.operator.proxy import Record, by_verb, writes

NAMESPACE = "bench"


def ready_count(kube: Kube) -> int:
    listed: Any = kube.custom.list_namespaced_custom_object(API_GROUP, VERSION, NAMESPACE, "models")
    return sum(1 for item in listed["items"] if is_ready(item))


def resumed(op: OperatorProcess, start: int) -> int:
    lines = op.log_records()[start:]
    return sum(1 for r in lines if str(r.get("message", "")).startswith("Resuming is processed"))


def blast(
    base: str,
    token: str,
    ca: bytes | None,
    requests: list[tuple[str, str, dict[str, Any], str]],
    concurrency: int,
) -> float:
    """Send ``(method, path, body, content type)`` requests with ``concurrency`` in flight
    from one asyncio client (little Python per request); returns requests per second."""

    async def run() -> float:
        ssl_context = ssl.create_default_context(cadata=ca.decode()) if ca else None
        connector = aiohttp.TCPConnector(ssl=ssl_context or False, limit=concurrency)
        limit = asyncio.Semaphore(concurrency)
        auth = {"Authorization": f"Bearer {token}", "User-Agent": "amlops-bench"}
        async with aiohttp.ClientSession(base, headers=auth, connector=connector) as session:

            async def send(method: str, path: str, body: dict[str, Any], kind: str) -> None:
                async with limit:
                    headers = {"Content-Type": kind}
                    async with session.request(method, path, json=body, headers=headers) as r:
                        r.raise_for_status()
                        await r.read()

            started = time.monotonic()
            await asyncio.gather(*(send(*request) for request in requests))
            return len(requests) / (time.monotonic() - started)

    return asyncio.run(run())


def models_path(name: str = "") -> str:
    return f"/apis/{API_GROUP}/{VERSION}/namespaces/{NAMESPACE}/models" + (
        f"/{name}" if name else ""
    )


def create_requests(names: list[str]) -> list[tuple[str, str, dict[str, Any], str]]:
    return [
        (
            "POST",
            models_path(),
            body("Model", name, model_spec("models/m", name=name)),
            "application/json",
        )
        for name in names
    ]


def status_patches(names: list[str], run: int) -> list[tuple[str, str, dict[str, Any], str]]:
    return [
        (
            "PATCH",
            models_path(name) + "/status",
            {"status": {"bench": run}},
            "application/merge-patch+json",
        )
        for name in names
    ]


def client_token(cluster: Any) -> str:
    """A cluster-admin ServiceAccount for the bench's own requests (the operator's SA may not
    create Models)."""
    with cluster.api_client() as api:
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "amlops-bench"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": "amlops-bench", "namespace": "default"}
            ],
        }
        apply_object(
            api, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/amlops-bench", binding
        )
    return token_of(cluster.service_account_kubeconfig("default", "amlops-bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8, help="operator handler threads")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--webhooks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="register the operator's admission webhooks (default: on)",
    )
    args = parser.parse_args()
    n = args.objects
    work = Path(tempfile.mkdtemp(prefix="amlops-bench-operator-"))
    (work / "src" / "models" / "m").mkdir(parents=True)
    (work / "src" / "models" / "m" / "weights.txt").write_text("bench\n")

    webhooks = webhook_env() if args.webhooks else {"AMLOPS_WEBHOOKS": "false"}
    try:
        with (
            production_operator(work, AMLOPS_WORKERS=str(args.workers), **webhooks) as running,
            running[0].api_client() as api,
        ):
            cluster, proxy, op = running
            kube = Kube(api)
            kube.create_namespace(NAMESPACE)
            if args.webhooks:
                wait_for(
                    lambda: refuses(kube, NAMESPACE, "models/m"),
                    timeout=120,
                    every=0.5,
                    what="webhooks",
                )
            names = [f"m-{i:05d}" for i in range(n)]

            # -- create: time to all Ready --------------------------------------------------
            bench_token = client_token(cluster)
            ca = ca_of(cluster)
            since = proxy.mark()
            started = time.monotonic()
            blast(cluster.host, bench_token, ca, create_requests(names), 32)
            created_s = time.monotonic() - started
            wait_for(lambda: ready_count(kube) == n, timeout=1800, every=0.5, what=f"{n} Ready")
            ready_s = time.monotonic() - started
            create = settled_records(proxy, since)
            patches = [r for r in writes(create) if r.verb == "patch"]
            verbs = by_verb(create)
            write_count = len(writes(create))

            # -- restart with nothing changed ---------------------------------------------------
            op.stop()
            log_start = len(op.log_records())
            since = proxy.mark()
            op.start()
            wait_for(
                lambda: resumed(op, log_start) >= n, timeout=600, every=0.5, what="all resumed"
            )
            restart = settled_records(proxy, since)
            noop_writes = len([r for r in writes(restart) if not _webhook_config(r)])
            config_writes = len([r for r in writes(restart) if _webhook_config(r)])
            op.stop()

            # -- the API server's raw PATCH rate, same objects, same proxy --------------------
            # the operator's path: through the proxy, with its identity
            token = token_of(Path(op.env["KUBECONFIG"]))
            rates = [blast(proxy.url, token, None, status_patches(names, i), 32) for i in range(3)]
            raw_rate = max(rates)

        operator_rate = len(patches) / ready_s
        ratio = operator_rate / raw_rate
        per_object = {verb: round(count / n, 3) for verb, count in verbs.items()}
        print(f"objects                 {n}")
        print(f"created in              {created_s:.1f} s (client side)")
        print(f"all Ready after         {ready_s:.1f} s ({n / ready_s:.0f} objects/s)")
        print(f"requests per object     {json.dumps(per_object)}")
        print(
            f"writes per create       {write_count / n:.2f} "
            f"({dict(Counter(_what(r) for r in writes(create)))})"
        )
        print(
            f"no-change restart       {noop_writes} writes, "
            f"{json.dumps(by_verb(restart))} requests in all "
            f"({config_writes} of the webhook configurations)"
        )
        print(
            f"raw PATCH rate          {raw_rate:.0f}/s (runs: "
            f"{', '.join(f'{r:.0f}' for r in rates)}; median {statistics.median(rates):.0f})"
        )
        print(f"operator PATCH rate     {operator_rate:.0f}/s during the create phase")
        print(
            f"RESULT objects={n} ready_s={ready_s:.1f} "
            f"requests_per_object={len(create) / n:.2f} "
            f"writes_per_create={write_count / n:.2f} noop_restart_writes={noop_writes} "
            f"raw_patch_ratio={ratio:.2f}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


def _webhook_config(r: Record) -> bool:
    return r.path.startswith("/apis/admissionregistration.k8s.io/")


def _what(r: Record) -> str:
    if r.path.endswith("/events"):
        return "event"
    return "status" if r.path.endswith("/status") else "object"


if __name__ == "__main__":
    main()
