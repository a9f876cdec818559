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

    python -m bench.azureml [--models 200] [--endpoints 10]
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


def write_tree(root: Path, models: int, endpoints: int) -> Path:
    code_dir(root, "score")
    docs = []
    for i in range(models):
        folder = root / "assets" / f"model-{i:04d}"
        folder.mkdir(parents=True)
        (folder / "model.json").write_text(json.dumps({"id": i, "weights": [i % 7] * 16}))
        docs.append(
            "apiVersion: amlops.io/v1alpha1\nkind: Model\n"
            f"metadata:\n  name: model-{i:04d}\n"
            f"spec:\n  workspace: {WS}\n  model:\n    name: model-{i:04d}\n"
            f'    version: "1"\n    path: assets/model-{i:04d}\n'
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=10)
    args = parser.parse_args()

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
