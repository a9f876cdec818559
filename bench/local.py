"""The local backend: reconcile cost, no-op passes, and what the endpoint router adds.

(a) Generates N Model manifests, each with its own small model folder, and reconciles them into
    a fresh local backend twice: the first pass registers every version (hashing the files,
    storing them content-addressed, one catalog transaction each); the second pass changes
    nothing and must write nothing. Prints the time and the catalog writes of each pass.
(b) Starts one deployment of the example scoring script (azmlinfsrv, slm-base model) behind
    the endpoint router and sends the same request R times straight to the scoring server and
    R times through the router (key auth, weighted choice, forwarding), alternating, both over
    kept-alive connections. Prints p50/p99 of each and the router's overhead.

Ends with one ``RESULT`` line.

    python -m bench.local [--models 1000] [--requests 2000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path

from amlops.backends.base import (
    DeploymentSpec,
    EndpointSpec,
    ModelRef,
    ModelVersionSpec,
    ProvisioningState,
)
from amlops.backends.local.backend import LocalBackend
from amlops.core.manifests import load_tree
from amlops.reconcile.tree import TreeReconciler

ROOT = Path(__file__).resolve().parents[1]
WS = "bench"
BODY = json.dumps({"prompt": "i cannot log in to my", "max_tokens": 8}).encode()


def write_models(root: Path, n: int) -> Path:
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    docs = [
        f"apiVersion: amlops.io/v1alpha1\nkind: Workspace\nmetadata:\n  name: {WS}\n"
        "spec:\n  environment: dev\n  location: westeurope\n"
    ]
    for i in range(n):
        folder = root / "assets" / f"model-{i:04d}"
        folder.mkdir(parents=True)
        (folder / "model.json").write_text(json.dumps({"id": i, "weights": [i % 7] * 16}))
        docs.append(
            "apiVersion: amlops.io/v1alpha1\nkind: Model\n"
            f"metadata:\n  name: model-{i:04d}\n"
            f"spec:\n  workspace: {WS}\n  model:\n    name: model-{i:04d}\n"
            f'    version: "1"\n    path: ../assets/model-{i:04d}\n'
        )
    (manifests / "models.yaml").write_text("---\n".join(docs))
    return manifests


def bench_reconcile(n: int, tmp: Path) -> tuple[float, int, float, int]:
    manifests = load_tree([write_models(tmp, n)]).manifests
    with LocalBackend(tmp / "state") as backend:
        backend.start()
        reconciler = TreeReconciler(backend, backend.catalog)
        passes = []
        for _ in range(2):
            writes = backend.catalog.writes
            started = time.perf_counter()
            reports = reconciler.reconcile(manifests)
            passes.append((time.perf_counter() - started, backend.catalog.writes - writes))
            not_ready = [r for r in reports if r.outcome.reason != "Registered"]
            assert not not_ready, not_ready[:3]
        assert backend.catalog.count_model_versions() == n
    (first_s, first_w), (noop_s, noop_w) = passes
    return first_s, first_w, noop_s, noop_w


def _post(conn: http.client.HTTPConnection, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    conn.request("POST", "/score", BODY, headers)
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    assert response.status == 200, response.status
    return elapsed


def _pct(values: list[float], q: int) -> float:
    """The q-th percentile, in milliseconds."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


def bench_router(requests: int, tmp: Path) -> tuple[dict[str, float], dict[str, float]]:
    with LocalBackend(tmp / "router-state") as backend:
        backend.start()
        model = backend.create_or_update_model_version(
            WS, ModelVersionSpec("slm-base", "1", ROOT / "manifests" / "assets" / "slm-base")
        )
        backend.create_or_update_endpoint(EndpointSpec(WS, "bench", "key", {"blue": 100}))
        spec = DeploymentSpec(
            WS,
            "bench",
            "blue",
            ModelRef(model.name, model.version),
            ROOT / "manifests" / "src" / "score",
            "score.py",
            "bench",
        )
        backend.create_or_update_deployment(spec)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            (state,) = backend.list_deployments(WS, "bench")
            if state.provisioning_state is not ProvisioningState.CREATING:
                break
            time.sleep(0.1)
        assert state.provisioning_state is ProvisioningState.SUCCEEDED, state.message
        scoring_port = backend.scoring.port((WS, "bench", "blue"))
        endpoint = backend.get_endpoint(WS, "bench")
        assert scoring_port is not None and endpoint is not None
        router_port = int(endpoint.scoring_uri.split(":")[2].split("/")[0])
        key = backend.get_endpoint_keys(WS, "bench").primary
        direct = http.client.HTTPConnection("127.0.0.1", scoring_port, timeout=30)
        routed = http.client.HTTPConnection("127.0.0.1", router_port, timeout=30)
        plain = {"Content-Type": "application/json"}
        authed = {**plain, "Authorization": f"Bearer {key}"}
        for _ in range(50):  # warm up both paths (connections, the worker's first requests)
            _post(direct, plain)
            _post(routed, authed)
        times: dict[str, list[float]] = {"direct": [], "router": []}
        for _ in range(requests):
            times["direct"].append(_post(direct, plain))
            times["router"].append(_post(routed, authed))
        direct.close()
        routed.close()
    p50 = {k: _pct(v, 50) for k, v in times.items()}
    p99 = {k: _pct(v, 99) for k, v in times.items()}
    return p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlops-bench-") as tmp:
        first_s, first_w, noop_s, noop_w = bench_reconcile(args.models, Path(tmp))
        print(f"reconcile {args.models} models: first pass {first_s:.2f} s, {first_w} writes")
        print(f"reconcile {args.models} models: no-op pass {noop_s:.2f} s, {noop_w} writes")
        p50, p99 = bench_router(args.requests, Path(tmp))
    for path in ("direct", "router"):
        print(f"scoring {path:>6}: p50 {p50[path]:.2f} ms, p99 {p99[path]:.2f} ms")
    print(
        f"RESULT models={args.models} first_pass_s={first_s:.3f} first_pass_writes={first_w} "
        f"noop_pass_s={noop_s:.3f} noop_pass_writes={noop_w} "
        f"router_p50_overhead_ms={p50['router'] - p50['direct']:.3f} "
        f"router_p99_overhead_ms={p99['router'] - p99['direct']:.3f}"
    )


if __name__ == "__main__":
    main()
