"""The azureml backend against the fake Azure ML API (tests/azure): requests per pass.

Registers N models (each its own small folder, pinned version 1, uploaded to Azurite) and
reconciles E endpoints with 2 deployments each (serving those models), through the reconcile
tree as ``amlops up --backend azureml`` does, on the fake's clock; then runs a pass over the
unchanged tree once the reads of the last one have expired (as a drift timer would). Prints the
first pass's requests and time, the passes until everything is Ready, and the no-change pass's
writes and reads.

``objects`` counts the assets amlops manages in Azure (model versions, endpoints, deployments);
``noop_reads_per_object`` is the no-change pass's ARM reads over them. Targets: 0 writes on the
no-change pass, at most 1 ARM read per object.

``--scale``: drift checks by listing (``amlops.backends.azureml.snapshots``) at scale: model
versions (``--names`` model names, versions 1..``--versions``, a Model object each) and
``--endpoints`` endpoints with 2 deployments, reconciled to Ready; then one full drift cycle
with nothing changed, and one after 10 objects were changed behind amlops's back through
``fake.state`` (4 endpoints' traffic, 3 deployments' tags stripped, 3 model versions deleted).
Snapshots and the model cache live 3 s here (30 s and 10 s by default) so that the bench waits
less between cycles; a cycle starts after they expired, as a drift timer longer than the TTL
does. The last line: ``RESULT objects=N drift_reads=R reads_per_object=R/N writes=W
corrected=C`` (R: the no-change cycle's ARM reads; W and C: the changed cycle's writes and how
many of the 10 changes it put back).

Scaled down: the defaults are 500 model versions (50 names x 10) and 50 endpoints (650
objects), about a minute on this 2-core machine, setting up dominating (the uploads). The
issue's size, 2,000 versions under 200 names and 200 endpoints (``--names 200 --endpoints
200``), did not finish setting up within 13 minutes here (with the test suite running
alongside); what a drift cycle reads follows from the shape: one list per model name, one of
deployments per endpoint and one of endpoints (names + endpoints + 1: 401 at that size).

    python -m bench.azureml [--models 200] [--endpoints 10]
    python -m bench.azureml --scale [--names 50] [--versions 10] [--endpoints 50]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from amlops.backends.azureml.backend import TAG_FINGERPRINT
from amlops.backends.azureml.snapshots import MAX_HOLD_S
from amlops.core.manifests import load_tree
from amlops.reconcile.conditions import Phase
from amlops.reconcile.tree import TreeReconciler
from tests.azure.azurite import start_azurite
from tests.azure.backend_support import WS, MemoryStore, code_dir, make_backend
from tests.azure.conftest import AzureEnv
from tests.azure.fake_arm import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    FakeArm,
    FakeCredential,
    StorageAccount,
    make_pki,
    resolve,
)

_PER_FILE = 250


@contextmanager
def fake_cloud(tmp: Path) -> Iterator[AzureEnv]:
    """The harness's fake ARM API and Azurite, outside pytest (as tests/azure/conftest.py)."""
    pki = make_pki(tmp / "pki")
    for key in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        os.environ[key] = str(pki.ca_bundle)
    resolve.install()
    azurite = start_azurite(tmp / "azurite", pki.server_cert, pki.server_key)
    storage = StorageAccount(AZURITE_ACCOUNT, AZURITE_KEY, azurite.suffix, pki.ca_bundle)
    fake = FakeArm(pki, storage=storage).start()
    try:
        fake.ensure_container(fake.default_container())
        yield AzureEnv(fake, FakeCredential(), storage, pki.ca_bundle)
    finally:
        fake.stop()
        azurite.stop()


def write_tree(root: Path, models: int, endpoints: int, versions: int = 1) -> Path:
    """``models`` model names with ``versions`` versions each (a Model object per version:
    ``model-NNNN`` for version 1, ``model-NNNN-vV`` for the others) and ``endpoints``
    endpoints serving version 1 of two of them."""
    code_dir(root, "score")
    docs = []
    for i in range(models):
        for v in range(1, versions + 1):
            suffix = "" if v == 1 else f"-v{v}"
            folder = root / "assets" / f"model-{i:04d}{suffix}"
            folder.mkdir(parents=True)
            (folder / "model.json").write_text(
                json.dumps({"id": i, "version": v, "weights": [i % 7] * 16})
            )
            docs.append(
                "apiVersion: amlops.io/v1alpha1\nkind: Model\n"
                f"metadata:\n  name: model-{i:04d}{suffix}\n"
                f"spec:\n  workspace: {WS}\n  model:\n    name: model-{i:04d}\n"
                f'    version: "{v}"\n    path: assets/model-{i:04d}{suffix}\n'
            )
    for e in range(endpoints):
        deployments = "".join(
            f"    - name: {color}\n"
            f"      model: azureml:model-{(2 * e + k) % models:04d}:1\n"
            "      code_configuration: {code: ./score, scoring_script: score.py}\n"
            "      environment: azureml:bench-env:1\n"
            "      instance_type: Standard_DS3_v2\n"
            "      instance_count: 1\n"
            for k, color in enumerate(("blue", "green"))
        )
        docs.append(
            "apiVersion: amlops.io/v1alpha1\nkind: Endpoint\n"
            f"metadata:\n  name: ep-bench-{e:03d}\n"
            f"spec:\n  workspace: {WS}\n  endpoint:\n    name: ep-bench-{e:03d}\n"
            "    auth_mode: key\n    traffic: {blue: 80, green: 20}\n"
            f"  deployments:\n{deployments}"
        )
    for start in range(0, len(docs), _PER_FILE):
        chunk = docs[start : start + _PER_FILE]
        (root / f"objects-{start // _PER_FILE:03d}.yaml").write_text("---\n".join(chunk))
    return root


def scale(names: int, versions: int, endpoints: int) -> None:
    """Drift cycles at scale (see the module's docstring)."""
    ttl = 3.0
    with tempfile.TemporaryDirectory(prefix="amlops-bench-azureml-") as tmp_name:
        tmp = Path(tmp_name)
        tree = write_tree(tmp / "tree", names, endpoints, versions)
        loaded = load_tree([tree], root=tree)
        assert not loaded.findings, loaded.findings[:3]
        with fake_cloud(tmp) as env:
            fake, ws = env.fake, env.workspace
            backend = make_backend(
                env, upload_timeout_s=300.0, snapshot_ttl_s=ttl, model_cache_s=ttl
            )
            reconciler = TreeReconciler(backend, MemoryStore(), backend.learn)

            started = time.perf_counter()
            reconciler.reconcile(loaded.manifests)
            passes = 1
            while True:
                fake.clock.advance(fake.durations["onlineDeployments"])
                reports = reconciler.reconcile(loaded.manifests)
                passes += 1
                if all(r.outcome.phase is Phase.READY for r in reports):
                    break
                assert passes < 20, [r.outcome for r in reports if r.outcome.phase != "Ready"]
            setup_s = time.perf_counter() - started
            print(f"{len(reports)} objects Ready after {passes} passes in {setup_s:.0f} s")

            def cycle(label: str) -> tuple[int, int, dict[str, int]]:
                time.sleep(ttl + 0.5)  # the snapshots and cached reads expire, pollers end
                fake.log.reset()
                started = time.perf_counter()
                reports = reconciler.reconcile(loaded.manifests)
                took = time.perf_counter() - started
                reads, writes = fake.log.reads, fake.log.writes
                ops = dict(fake.log.by_operation())
                print(f"{label}: {writes} writes, {reads} reads in {took:.1f} s")
                print("  " + ", ".join(f"{op} {n}" for op, n in sorted(ops.items())))
                failed = [r for r in reports if r.outcome.phase is Phase.STALLED]
                assert not failed, failed[:3]
                return reads, writes, ops

            drift_reads, noop_writes, _ = cycle("no-change drift cycle")
            assert noop_writes == 0

            # 10 objects changed behind amlops's back
            changed_ep = [f"ep-bench-{e:03d}" for e in range(0, min(endpoints, 4))]
            stripped = [f"ep-bench-{e:03d}" for e in range(4, min(endpoints, 7))]
            deleted = [f"model-{i:04d}" for i in range(1, min(names, 4))]
            for name in changed_ep:
                fake.state.set_traffic(name, {"blue": 100}, ws)
            with fake.state.locked() as state:
                for name in stripped:
                    rid = state.resource_id(ws, "onlineEndpoints", name, "deployments", "green")
                    state.resources[rid.lower()]["tags"] = {}
            for name in deleted:
                version = fake.state.resource_id(ws, "models", name, "versions", "2")
                assert fake.state.delete(version)
            _reads, writes, _ = cycle("drift cycle, 10 objects changed")

            corrected = 0
            for name in changed_ep:
                found = fake.state.online_endpoint(name, ws)
                corrected += bool(found and found["properties"]["traffic"] == _SPLIT)
            for name in stripped:
                dep = fake.state.online_deployment(name, "green", ws)
                corrected += bool(dep and TAG_FINGERPRINT in (dep.get("tags") or {}))
            for name in deleted:
                rid = fake.state.resource_id(ws, "models", name, "versions", "2")
                corrected += fake.state.get(rid) is not None
            assert backend.gate.remaining(WS) <= MAX_HOLD_S

    objects = names * versions + endpoints * 3
    changes = len(changed_ep) + len(stripped) + len(deleted)
    print(f"changes behind the back: {changes}, corrected by the next cycle: {corrected}")
    print(
        f"RESULT objects={objects} drift_reads={drift_reads} "
        f"reads_per_object={drift_reads / objects:.3f} writes={writes} corrected={corrected}"
    )


_SPLIT = {"blue": 80, "green": 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=None)
    parser.add_argument("--scale", action="store_true", help="drift cycles at scale")
    parser.add_argument("--names", type=int, default=50, help="--scale: model names")
    parser.add_argument("--versions", type=int, default=10, help="--scale: versions per name")
    args = parser.parse_args()
    if args.scale:
        scale(args.names, args.versions, args.endpoints if args.endpoints is not None else 50)
        return
    if args.endpoints is None:
        args.endpoints = 10

    with tempfile.TemporaryDirectory(prefix="amlops-bench-azureml-") as tmp_name:
        tmp = Path(tmp_name)
        tree = write_tree(tmp / "tree", args.models, args.endpoints)
        loaded = load_tree([tree], root=tree)
        assert not loaded.findings, loaded.findings[:3]
        with fake_cloud(tmp) as env:
            fake = env.fake
            backend = make_backend(env, upload_timeout_s=120.0)
            reconciler = TreeReconciler(backend, MemoryStore(), backend.learn)

            started = time.perf_counter()
            reconciler.reconcile(loaded.manifests)
            first_s = time.perf_counter() - started
            first_requests = len(fake.log.records)
            first_writes = fake.log.writes

            passes = 1
            while True:
                fake.clock.advance(fake.durations["onlineDeployments"])
                reports = reconciler.reconcile(loaded.manifests)
                passes += 1
                if all(r.outcome.phase is Phase.READY for r in reports):
                    break
                assert passes < 20, [r.outcome for r in reports if r.outcome.phase != "Ready"]

            # the SDK's pollers see their operations end at their next poll, and the model
            # versions read by the last pass expire: a drift-check pass, as a timer runs it
            time.sleep(max(backend.settings.model_cache_s, 2.0) + 0.5)
            fake.log.reset()
            started = time.perf_counter()
            reports = reconciler.reconcile(loaded.manifests)
            noop_s = time.perf_counter() - started
            assert all(r.outcome.phase is Phase.READY for r in reports)
            noop_writes, noop_reads = fake.log.writes, fake.log.reads
            by_operation = fake.log.by_operation()

    objects = args.models + args.endpoints * 3  # model versions, endpoints, deployments
    print(f"first pass: {first_requests} requests ({first_writes} writes) in {first_s:.1f} s")
    print(f"ready after {passes} passes")
    print(f"no-change pass: {noop_writes} writes, {noop_reads} reads in {noop_s:.2f} s")
    print("  " + ", ".join(f"{op} {n}" for op, n in sorted(by_operation.items())))
    print(
        f"RESULT objects={objects} first_pass_requests={first_requests} "
        f"first_pass_s={first_s:.1f} noop_pass_writes={noop_writes} "
        f"noop_reads_per_object={noop_reads / objects:.2f}"
    )


if __name__ == "__main__":
    main()
