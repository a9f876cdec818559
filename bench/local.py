"""The local backend: reconcile cost, no-op passes, and what the endpoint router adds.

(a) Generates N Model manifests, each with its own small model folder, and reconciles them into
    a fresh local backend twice: the first pass registers every version (hashing the files,
    storing them content-addressed, one catalog transaction each); the second pass changes
    nothing and must write nothing. Prints the time and the catalog writes of each pass.
(b) Starts one deployment of the example scoring script (azmlinfsrv, slm-base model) behind
    the endpoint router and sends the same request R times straight to the scoring server (on
    its Unix socket, the only way it listens) and R times through the router (key auth,
    weighted choice, forwarding), alternating, one at a time. Prints p50/p99 of each and the
    router's overhead.
(c) The burst: B requests from T client threads at once, each thread on its own connection,
    from a separate process, straight to the scoring server and through the router, in
    alternating rounds so that both see the same machine. Prints p50/p99 of each, their
    ratio, and the requests that failed (connection resets, refusals, any answer but 200).

Ends with one ``RESULT`` line.

    python -m bench.local [--models 1000] [--requests 2000] [--burst 2000] [--threads 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import statistics
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from amlops.backends.base import (
    DeploymentSpec,
    EndpointSpec,
    ModelRef,
    ModelVersionSpec,
    ProvisioningState,
)
from amlops.backends.local.backend import LocalBackend
from amlops.backends.local.scoring import UnixHTTPConnection
from amlops.core.manifests import load_tree
from amlops.reconcile.tree import TreeReconciler

ROOT = Path(__file__).resolve().parents[1]
WS = "bench"
_MODELS_PER_FILE = 250
# the burst goes in rounds, direct and routed in turn: on a shared machine, a noisy minute
# then lands on both paths rather than on one
_BURST_ROUNDS = 4
BODY = json.dumps({"prompt": "i cannot log in to my", "max_tokens": 8}).encode()


def write_models(root: Path, n: int) -> Path:
    manifests = root / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "workspace.yaml").write_text(
        f"apiVersion: amlops.io/v1alpha1\nkind: Workspace\nmetadata:\n  name: {WS}\n"
        "spec:\n  environment: dev\n  location: westeurope\n"
    )
    docs = []
    for i in range(n):
        folder = manifests / "assets" / f"model-{i:04d}"  # inside the repository, as required
        folder.mkdir(parents=True)
        (folder / "model.json").write_text(json.dumps({"id": i, "weights": [i % 7] * 16}))
        docs.append(
            "apiVersion: amlops.io/v1alpha1\nkind: Model\n"
            f"metadata:\n  name: model-{i:04d}\n"
            f"spec:\n  workspace: {WS}\n  model:\n    name: model-{i:04d}\n"
            f'    version: "1"\n    path: assets/model-{i:04d}\n'
        )
    # files of a few hundred documents, as a repository would have (the loader refuses a file
    # of over a thousand)
    for start in range(0, n, _MODELS_PER_FILE):
        chunk = docs[start : start + _MODELS_PER_FILE]
        (manifests / f"models-{start // _MODELS_PER_FILE:03d}.yaml").write_text("---\n".join(chunk))
    return manifests


def bench_reconcile(n: int, tmp: Path) -> tuple[float, int, float, int]:
    loaded = load_tree([write_models(tmp, n)])
    assert not loaded.findings, loaded.findings[:3]
    manifests = loaded.manifests
    with LocalBackend(tmp / "state") as backend:
        backend.start()
        reconciler = TreeReconciler(backend, backend.objects)
        passes = []
        for _ in range(2):
            writes = backend.db.writes
            started = time.perf_counter()
            reports = reconciler.reconcile(manifests)
            passes.append((time.perf_counter() - started, backend.db.writes - writes))
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


def _shares(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


def _pct(values: list[float], q: int) -> float:
    """The q-th percentile, in milliseconds."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000


@dataclass
class Burst:
    times: list[float] = field(default_factory=list)  # seconds, answered requests only
    errors: int = 0

    def add(self, other: Burst) -> None:
        self.times += other.times
        self.errors += other.errors


def _connect(target: Path | int) -> http.client.HTTPConnection:
    """To a scoring server's socket, or to a router's port."""
    if isinstance(target, Path):
        return UnixHTTPConnection(target, timeout=30)
    return http.client.HTTPConnection("127.0.0.1", target, timeout=30)


def burst(target: Path | int, headers: dict[str, str], requests: int, threads: int) -> Burst:
    """``requests`` requests from ``threads`` threads released together, each on its own
    connection (reopened after a failure, as a client library would)."""
    start = threading.Barrier(threads)

    def client(n: int) -> Burst:
        out = Burst()
        conn = _connect(target)
        start.wait()
        for _ in range(n):
            started = time.perf_counter()
            try:
                conn.request("POST", "/score", BODY, headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                out.errors += 1
                conn.close()
                continue
            if response.status == 200:
                out.times.append(time.perf_counter() - started)
            else:
                out.errors += 1
        conn.close()
        return out

    total = Burst()
    with ThreadPoolExecutor(threads) as pool:
        for result in pool.map(client, _shares(requests, threads)):
            total.add(result)
    return total


def bench_router(
    requests: int, bursts: int, threads: int, tmp: Path
) -> tuple[dict[str, float], dict[str, float], dict[str, Burst]]:
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
        scoring_socket = backend.scoring.socket((WS, "bench", "blue"))
        endpoint = backend.get_endpoint(WS, "bench")
        assert scoring_socket is not None and endpoint is not None
        router_port = int(endpoint.scoring_uri.split(":")[2].split("/")[0])
        key = backend.get_endpoint_keys(WS, "bench").primary

        direct, routed = _connect(scoring_socket), _connect(router_port)
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
        bursts_by_path = {"direct": Burst(), "router": Burst()}
        # the clients run in a process of their own, as real ones do: 50 client threads in
        # this process would fight the router's thread for this interpreter's lock
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as clients:
            for part in _shares(bursts, _BURST_ROUNDS):
                for path, target, headers in (
                    ("direct", scoring_socket, plain),
                    ("router", router_port, authed),
                ):
                    result = clients.submit(burst, target, headers, part, threads).result()
                    bursts_by_path[path].add(result)
    p50 = {k: _pct(v, 50) for k, v in times.items()}
    p99 = {k: _pct(v, 99) for k, v in times.items()}
    return p50, p99, bursts_by_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlops-bench-") as tmp:
        first_s, first_w, noop_s, noop_w = bench_reconcile(args.models, Path(tmp))
        print(f"reconcile {args.models} models: first pass {first_s:.2f} s, {first_w} writes")
        print(f"reconcile {args.models} models: no-op pass {noop_s:.2f} s, {noop_w} writes")
        p50, p99, bursts = bench_router(args.requests, args.burst, args.threads, Path(tmp))
    for path in ("direct", "router"):
        print(f"scoring {path:>6}: p50 {p50[path]:.2f} ms, p99 {p99[path]:.2f} ms")
    burst_p50 = {k: _pct(b.times, 50) for k, b in bursts.items()}
    burst_p99 = {k: _pct(b.times, 99) for k, b in bursts.items()}
    for path, b in bursts.items():
        print(
            f"burst of {args.burst} from {args.threads} threads, {path:>6}: "
            f"p50 {burst_p50[path]:.2f} ms, p99 {burst_p99[path]:.2f} ms, {b.errors} errors"
        )
    ratio = burst_p99["router"] / burst_p99["direct"]
    print(f"burst p99 router/direct: {ratio:.2f}x")
    print(
        f"RESULT models={args.models} first_pass_s={first_s:.3f} first_pass_writes={first_w} "
        f"noop_pass_s={noop_s:.3f} noop_pass_writes={noop_w} "
        f"router_p50_overhead_ms={p50['router'] - p50['direct']:.3f} "
        f"router_p99_overhead_ms={p99['router'] - p99['direct']:.3f} "
        f"burst_p50_ms={burst_p50['router']:.3f} burst_p99_ms={burst_p99['router']:.3f} "
        f"direct_p99_ms={burst_p99['direct']:.3f} burst_p99_ratio={ratio:.3f} "
        f"burst_errors={bursts['router'].errors}"
    )


if __name__ == "__main__":
    main()
