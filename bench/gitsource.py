"""GitSource at scale on a real kube-apiserver + etcd (envtest) and a loopback Git server.

1. Starts the API server with the CRDs and the shipped RBAC, the real operator (``amlops
   operator``) as its ServiceAccount behind a counting proxy, and ``git daemon`` serving a
   repository of N Model manifests (each names the same small model folder, so registering is
   cheap and the figures are the sync's).
2. First sync: creates the GitSource and times until it has applied the commit and every
   Model is Ready at its generation.
3. No-change sync: waits for the next sync of the interval timer (the same commit) and counts
   the operator's writes while it runs (target: 0; reads are one GET per object).
4. Change: a commit that edits 10 manifests and removes 5, pushed and announced through the
   push receiver (an HMAC-signed POST), timed until the GitSource has applied it, the 10 are
   Ready at their new generation and the 5 are gone; its writes are counted.

    python -m bench.gitsource [--objects 1000] [--workers 8] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from amlops import API_GROUP
from amlops.crds import VERSION
from tests.gitserver import GitServer, model_manifest
from tests.operator.harness import (
    ROOT,
    Kube,
    OperatorProcess,
    is_ready,
    production_operator,
    settled_records,
    wait_for,
)
from tests.operator.proxy import Record, by_verb, writes

NAMESPACE = "bench"
SOURCE = "platform"
INTERVAL_S = 30
HOOK_KEY = "bench-hook-key-0123456789"


def manifest(i: int, description: str = "bench") -> tuple[str, str]:
    name = f"m-{i:05d}"
    return f"models/{name}.yaml", model_manifest(name, description, asset="m")


def models(kube: Kube) -> list[dict[str, Any]]:
    listed: Any = kube.custom.list_namespaced_custom_object(API_GROUP, VERSION, NAMESPACE, "models")
    return list(listed["items"])


def source(kube: Kube) -> dict[str, Any]:
    got = kube.get(NAMESPACE, "GitSource", SOURCE)
    assert got is not None, "the GitSource is gone"
    return got


def applied(kube: Kube, sha: str) -> bool:
    status = source(kube).get("status") or {}
    return bool(status.get("lastAppliedRevision") == f"main@sha1:{sha}")


def model_reads(records: list[Record]) -> int:
    return sum(1 for r in records if r.verb == "get" and "/models/" in r.path)


def push(op: OperatorProcess, body: bytes) -> int:
    signature = "sha256=" + hmac.new(HOOK_KEY.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{op.receiver_port}/hook/{NAMESPACE}/{SOURCE}",
        data=body,
        headers={"X-Hub-Signature-256": signature, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return int(resp.status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8, help="operator handler threads")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    n = args.objects
    work = Path(tempfile.mkdtemp(prefix="amlops-bench-gitsource-"))
    (work / "src").mkdir()

    try:
        with GitServer(work / "git") as git:
            run(work, git, n, args.workers)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, git: GitServer, n: int, workers: int) -> None:
    """The bench in ``work``, with ``git`` serving its repository; prints the figures."""
    repo = git.create("platform")
    files: dict[str, str | bytes | None] = dict(manifest(i) for i in range(n))
    files["platform/workspaces.yaml"] = (ROOT / "manifests/platform/workspaces.yaml").read_text()
    files["assets/m/weights.txt"] = "bench\n"
    first = repo.commit(files, message="1,000 models")

    with (
        production_operator(work, AMLOPS_WORKERS=str(workers), AMLOPS_WEBHOOKS="false") as (
            cluster,
            proxy,
            op,
        ),
        cluster.api_client() as api,
    ):
        kube = Kube(api)
        kube.create_namespace(NAMESPACE)
        kube.core.create_namespaced_secret(
            NAMESPACE,
            {
                "metadata": {"name": "hook", "labels": {"amlops.io/git-credentials": "true"}},
                "stringData": {"token": HOOK_KEY},
            },
        )

        # -- first sync: to all Ready ----------------------------------------------------
        started = time.monotonic()
        spec = {
            "url": git.git_url("platform"),
            "interval": f"{INTERVAL_S}s",
            "receiver": {"secretRef": {"name": "hook"}},
            "prune": True,
        }
        kube.create(NAMESPACE, "GitSource", SOURCE, spec)
        wait_for(lambda: applied(kube, first), timeout=1800, every=0.5, what="first sync")
        applied_s = time.monotonic() - started
        wait_for(
            lambda: sum(1 for m in models(kube) if is_ready(m)) == n,
            timeout=1800,
            every=1.0,
            what=f"{n} Ready",
        )
        first_sync_s = time.monotonic() - started
        settled_records(proxy, proxy.mark(), seconds=5.0)

        # -- a no-change sync: the interval timer, same commit ---------------------------
        since = proxy.mark()
        wait_for(
            lambda: model_reads(proxy.records(since)) >= n,
            timeout=INTERVAL_S * 4,
            every=0.5,
            what="the interval's sync",
        )
        noop = settled_records(proxy, since)
        noop_writes = len(writes(noop))

        # -- change 10, remove 5, announced by the receiver ------------------------------
        changed = dict(manifest(i, "changed") for i in range(10))
        removed: dict[str, str | bytes | None] = {manifest(i)[0]: None for i in range(10, 15)}
        second = repo.commit({**changed, **removed}, message="change 10, remove 5")
        since = proxy.mark()
        started = time.monotonic()
        assert push(op, json.dumps({"after": second}).encode()) == 202

        def settled() -> bool:
            if not applied(kube, second):
                return False
            live = {m["metadata"]["name"]: m for m in models(kube)}
            fresh = all(
                is_ready(live[f"m-{i:05d}"])
                and live[f"m-{i:05d}"]["spec"]["model"]["description"] == "changed"
                for i in range(10)
            )
            return fresh and not any(f"m-{i:05d}" in live for i in range(10, 15))

        wait_for(settled, timeout=600, every=0.2, what="the change")
        change_s = time.monotonic() - started
        change = settled_records(proxy, since)
        change_writes = len(writes(change))
        pruned = n - len(models(kube))
        op.stop()

    print(f"objects                 {n}")
    print(f"first sync applied in   {applied_s:.1f} s; all Ready after {first_sync_s:.1f} s")
    print(f"no-change sync          {noop_writes} writes; {json.dumps(by_verb(noop))}")
    print(
        f"change (10 + 5 removed) {change_s:.1f} s from the push to settled; "
        f"{change_writes} writes; {json.dumps(by_verb(writes(change)))}"
    )
    print(
        f"RESULT objects={n} first_sync_s={first_sync_s:.1f} noop_sync_writes={noop_writes} "
        f"change_latency_s={change_s:.1f} change_writes={change_writes} pruned={pruned}"
    )


if __name__ == "__main__":
    main()
