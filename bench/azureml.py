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

``--scale`` (issue 12): drift checks by listing (``amlops.backends.azureml.snapshots``) at the
issue's size by default: 2,000 model versions (``--names`` 200 model names x ``--versions``
10, a Model object each), ``--endpoints`` 200 endpoints with 2 deployments and
``--pipelines`` 50 pipelines of 4 command steps (2,650 objects: a pipeline is one, its steps
are its job's children). Setting up is not what is measured, so it is made cheap: every
version registers the same small folder and every endpoint serves the same two models; the
Model objects of two names, one Endpoint and every Pipeline go through the reconcilers
(uploads, PUTs, pollers, jobs run on the fake's clock), and the other names and endpoints are
copies of what amlops made for those in the fake's state, each with its own names and
provenance tags. The first pass over the whole tree through the reconcilers is what proves
the copies owned and Ready: it must make no write. Then one full drift cycle with nothing
changed, and one after 10 objects were changed behind amlops's back (4 endpoints' traffic, 3
deployments' tags stripped, 3 model versions deleted), each a TTL after the last (as a drift
timer longer than the TTL does); the snapshot TTL (``--ttl``) is 1.5 times the first pass by
default, so that no list expires within a cycle. The fake pages its lists at 100 items.

The writes the 10 changes need: 1 endpoint write per traffic split put back, 1 create per
deleted version (its blob is still there), and per stripped deployment a redeploy plus 1
endpoint write (the health gate moves its share to the healthy deployment while it comes up;
1 more endpoint write puts it back once it is up, a pass later). The last line::

    RESULT objects=N drift_cycle_reads=R reads_per_object=R/N drift_cycle_s=S drifted=10
    corrected=C correction_writes=W correction_writes_needed=W0 reads_floor=F

R and S: the no-change cycle's ARM reads and wall time; C: how many of the 10 changes the next
cycle put back; W: its writes (W0: what the changes need, above); F: the fewest reads that see
every object (``reads_floor``): the ARM API (2024-04-01) lists model versions only per model
name and deployments only per endpoint (endpoints, jobs and schedules have workspace-wide
lists), so F = names + endpoints + ceil(endpoints / 100) + 2 x ceil(pipelines / 100): 404 at
the issue's size, 0.152 reads per object; the issue's 0.05 is out of reach without skipping
objects.

    python -m bench.azureml [--models 200] [--endpoints 10]
    python -m bench.azureml --scale [--names 200] [--versions 10] [--endpoints 200]
        [--pipelines 50] [--ttl S]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from amlops.backends.azureml.backend import TAG_FINGERPRINT
from amlops.backends.azureml.snapshots import MAX_HOLD_S
from amlops.backends.base import TAG_OWNER
from amlops.core.manifests import Manifest, load_tree
from amlops.core.provenance import Provenance
from amlops.reconcile.conditions import Phase
from amlops.reconcile.tree import TreeReconciler
from tests.azure.azurite import start_azurite
from tests.azure.backend_support import WS, MemoryStore, code_dir, make_backend, model_dir
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


def write_tree(
    root: Path,
    models: int,
    endpoints: int,
    versions: int = 1,
    uniform: bool = False,
    pipelines: int = 0,
) -> Path:
    """``models`` model names with ``versions`` versions each (a Model object per version:
    ``model-NNNN`` for version 1, ``model-NNNN-vV`` for the others) and ``endpoints``
    endpoints serving version 1 of two of them (``2e`` and ``2e+1``). ``uniform``: every
    version registers the same small folder (its content hash names its blob: the SDK uploads
    it once) and every endpoint serves model-0000:1 and model-0001:1, so that what amlops
    makes for one model name or endpoint is what it makes for any other, names aside
    (``--scale`` copies it, see ``_seed``); and ``pipelines`` Pipelines (``_pipeline``)."""
    code_dir(root, "score")
    if uniform:
        model_dir(root / "assets", "weights", b"bench weights")
    docs = []
    for i in range(models):
        for v in range(1, versions + 1):
            suffix = "" if v == 1 else f"-v{v}"
            path = "assets/weights" if uniform else f"assets/model-{i:04d}{suffix}"
            if not uniform:
                folder = root / path
                folder.mkdir(parents=True)
                (folder / "model.json").write_text(
                    json.dumps({"id": i, "version": v, "weights": [i % 7] * 16})
                )
            docs.append(
                "apiVersion: amlops.io/v1alpha1\nkind: Model\n"
                f"metadata:\n  name: model-{i:04d}{suffix}\n"
                f"spec:\n  workspace: {WS}\n  model:\n    name: model-{i:04d}\n"
                f'    version: "{v}"\n    path: {path}\n'
            )
    for e in range(endpoints):
        deployments = "".join(
            f"    - name: {color}\n"
            f"      model: azureml:model-{k if uniform else (2 * e + k) % models:04d}:1\n"
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
    if pipelines:
        (root / "src").mkdir()
        (root / "src" / "step.py").write_text("import sys\n\nprint(sys.argv[1:])\n")
    docs += [_pipeline(f"pipe-{p:03d}") for p in range(pipelines)]
    for start in range(0, len(docs), _PER_FILE):
        chunk = docs[start : start + _PER_FILE]
        (root / f"objects-{start // _PER_FILE:03d}.yaml").write_text("---\n".join(chunk))
    return root


_STEPS = ("prep", "train", "evaluate", "report")


def _pipeline(name: str) -> str:
    """A Pipeline of four command steps on the tree's one code folder, each reading the one
    before: prep -> train -> evaluate -> report."""
    steps = []
    for before, step in zip((None, *_STEPS[:-1]), _STEPS, strict=True):
        binding = "${{parent.jobs." + str(before) + ".outputs.data}}"
        steps.append(
            f"      {step}:\n        type: command\n        code: ./src\n"
            f"        command: python step.py {step}"
            + (" --in ${{inputs.data}}" if before else "")
            + " --out ${{outputs.data}}\n"
            "        environment: azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest\n"
            + (f"        inputs:\n          data: {binding}\n" if before else "")
            + "        outputs:\n          data: {type: uri_folder}\n"
        )
    return (
        "apiVersion: amlops.io/v1alpha1\nkind: Pipeline\n"
        f"metadata:\n  name: {name}\n"
        f"spec:\n  workspace: {WS}\n  job:\n    type: pipeline\n"
        "    settings: {default_compute: azureml:cpu}\n    jobs:\n" + "".join(steps)
    )


# ARM pages its lists: 100 items a page (the figure; the fake pages at its page_size)
_PAGE = 100
_SPLIT = {"blue": 80, "green": 20}
# reconciled through amlops; the other names and endpoints are copies of them (``_seed``)
_REAL_NAMES = ("model-0000", "model-0001")
_REAL_ENDPOINT = "ep-bench-000"


@dataclass(frozen=True)
class Cycle:
    """What one reconcile pass over the tree asked of the ARM API."""

    reads: int
    writes: Counter[str]  # operation id -> writes
    seconds: float
    by_operation: Counter[str]
    ready: bool

    @property
    def write_count(self) -> int:
        return sum(self.writes.values())


def _pass(reconciler: TreeReconciler, manifests: Sequence[Manifest], fake: FakeArm) -> Cycle:
    """One pass, with the requests it made."""
    fake.log.reset()
    started = time.perf_counter()
    reports = reconciler.reconcile(manifests)
    took = time.perf_counter() - started
    records = fake.log.records
    stalled = [r for r in reports if r.outcome.phase is Phase.STALLED]
    assert not stalled, stalled[:3]
    return Cycle(
        reads=sum(r.is_read for r in records),
        writes=Counter(str(r.operation_id) for r in records if r.is_write),
        seconds=took,
        by_operation=Counter(str(r.operation_id) for r in records),
        ready=all(r.outcome.phase is Phase.READY for r in reports),
    )


def _until_ready(
    reconciler: TreeReconciler, manifests: Sequence[Manifest], fake: FakeArm
) -> tuple[int, Counter[str]]:
    """Passes, the fake's clock moving a deployment's duration between them, until every
    object is Ready; the passes and their writes."""
    writes: Counter[str] = Counter()
    for passes in range(1, 20):
        one = _pass(reconciler, manifests, fake)
        writes.update(one.writes)
        if one.ready:
            return passes, writes
        fake.clock.advance(fake.durations["onlineDeployments"])
    raise AssertionError("not Ready after 19 passes")


def _seed(fake: FakeArm, ws: str, manifests: Sequence[Manifest]) -> int:
    """Every model name and endpoint the first pass did not make, copied in the fake's state
    from what amlops made for ``_REAL_NAMES`` and ``_REAL_ENDPOINT`` (the uniform tree makes
    them alike but for their names), each with the provenance tags of its own manifest. What
    proves the copies right is the next pass through the reconcilers: every object Ready, no
    write. Returns how many resources were copied."""
    state = fake.state
    origin = Provenance()
    files = {m.name: m.file for m in manifests}
    names = sorted({str(m.spec["model"]["name"]) for m in manifests if m.kind == "Model"})
    endpoints = sorted(m.name for m in manifests if m.kind == "Endpoint")

    def copy(resource_id: str, old: str, new: str, obj: str | None, in_properties: bool) -> None:
        body = state.get(resource_id)
        assert body is not None, resource_id
        made = json.loads(json.dumps(body).replace(old, new))
        if obj is not None:  # the object's own manifest, as amlops tags what it makes
            holder = made["properties"] if in_properties else made
            holder["tags"] = {**(holder.get("tags") or {}), **origin.tags(files[obj])}
        state.put(made["id"], made)

    copied = 0
    template = _REAL_NAMES[0]
    container = state.resource_id(ws, "models", template)
    versions = [v["name"] for v in state.children(container, "versions")]
    for name in names:
        if name in _REAL_NAMES:
            continue
        copy(container, template, name, None, True)
        for version in versions:
            obj = name if version == "1" else f"{name}-v{version}"
            copy(f"{container}/versions/{version}", template, name, obj, True)
        copied += 1 + len(versions)
    endpoint = state.resource_id(ws, "onlineEndpoints", _REAL_ENDPOINT)
    deployments = [d["name"] for d in state.children(endpoint, "deployments")]
    for name in endpoints:
        if name == _REAL_ENDPOINT:
            continue
        copy(endpoint, _REAL_ENDPOINT, name, name, False)
        for dep in deployments:
            copy(f"{endpoint}/deployments/{dep}", _REAL_ENDPOINT, name, name, False)
        copied += 1 + len(deployments)
    return copied


def reads_floor(names: int, versions: int, endpoints: int, pipelines: int) -> int:
    """The fewest ARM reads that see every object once: the API lists model versions only per
    model name (ModelVersions_List, ``/models/{name}/versions``) and deployments only per
    endpoint (OnlineDeployments_List, ``/onlineEndpoints/{endpointName}/deployments``); the
    endpoints, the jobs (a pipeline's runs) and the schedules (a pipeline's, which amlops makes
    and removes) have lists of the whole workspace (OnlineEndpoints_List, Jobs_List,
    Schedules_List)."""
    return (
        names * math.ceil(versions / _PAGE)
        + endpoints * math.ceil(2 / _PAGE)
        + max(1, math.ceil(endpoints / _PAGE))
        + 2 * math.ceil(pipelines / _PAGE)
    )


def _ops(counter: Counter[str]) -> str:
    return ", ".join(f"{op} {n}" for op, n in sorted(counter.items())) or "none"


def _cycle(
    reconciler: TreeReconciler,
    manifests: Sequence[Manifest],
    fake: FakeArm,
    wait_s: float,
    title: str,
) -> Cycle:
    """A drift cycle ``wait_s`` after the last one: the pass, and what it asked, printed."""
    time.sleep(wait_s)
    cycle = _pass(reconciler, manifests, fake)
    print(f"{title}: {cycle.write_count} writes, {cycle.reads} reads in {cycle.seconds:.1f} s")
    print("  " + _ops(cycle.by_operation))
    return cycle


def scale(names: int, versions: int, endpoints: int, pipelines: int, ttl: float | None) -> None:
    """Drift cycles at scale (see the module's docstring)."""
    assert names >= 4 and versions >= 2 and endpoints >= 7, "too small for the 10 changes"
    with tempfile.TemporaryDirectory(prefix="amlops-bench-azureml-") as tmp_name:
        tmp = Path(tmp_name)
        tree = write_tree(tmp / "tree", names, endpoints, versions, True, pipelines)
        loaded = load_tree([tree], root=tree)
        assert not loaded.findings, loaded.findings[:3]
        manifests = loaded.manifests
        real = [
            m
            for m in manifests
            if (m.kind == "Model" and m.spec["model"]["name"] in _REAL_NAMES)
            or m.name == _REAL_ENDPOINT
            or m.kind == "Pipeline"
        ]
        with fake_cloud(tmp) as env:
            fake, ws = env.fake, env.workspace
            fake.jobs.add_compute("cpu")  # Pulumi's part
            backend = make_backend(env, upload_timeout_s=300.0)
            reconciler = TreeReconciler(backend, MemoryStore(), backend.learn)

            started = time.perf_counter()
            passes, made = _until_ready(reconciler, real, fake)
            real_s = time.perf_counter() - started
            print(
                f"set up: {len(real)} objects made through amlops in {passes} passes, "
                f"{real_s:.0f} s ({_ops(made)})"
            )
            copied = _seed(fake, ws, manifests)
            first = _pass(reconciler, manifests, fake)
            print(
                f"  {copied} resources copied from them; the first pass over all "
                f"{len(manifests)} objects: {first.write_count} writes, {first.reads} reads, "
                f"{first.seconds:.0f} s, all Ready: {first.ready}"
            )
            assert first.ready and first.write_count == 0, first.writes

            # a cycle starts once the last one's lists and cached reads expired (a drift timer
            # longer than the TTL) and the SDK's pollers saw their operations end; the lists
            # must outlive a cycle (else a scope read again late in the cycle is listed again)
            backend.snapshots.ttl_s = ttl if ttl is not None else max(30.0, 1.5 * first.seconds)
            wait_s = max(backend.snapshots.ttl_s, backend.settings.model_cache_s) + 0.5
            print(f"  snapshot TTL {backend.snapshots.ttl_s:.0f} s, cycles {wait_s:.0f} s apart")

            noop = _cycle(reconciler, manifests, fake, wait_s, "no-change drift cycle")

            # 10 objects changed behind amlops's back, and the writes each needs
            traffic = [f"ep-bench-{e:03d}" for e in range(0, 4)]
            stripped = [f"ep-bench-{e:03d}" for e in range(4, 7)]
            deleted = [f"model-{i:04d}" for i in range(1, 4)]
            for name in traffic:
                fake.state.set_traffic(name, {"blue": 100}, ws)
            with fake.state.locked() as state:
                for name in stripped:
                    rid = state.resource_id(ws, "onlineEndpoints", name, "deployments", "green")
                    state.resources[rid.lower()]["tags"] = {}
            for name in deleted:
                version = fake.state.resource_id(ws, "models", name, "versions", "2")
                assert fake.state.delete(version)
            needed = Counter(
                {
                    # a traffic split put back: 1 endpoint write
                    "OnlineEndpoints_CreateOrUpdate": len(traffic) + len(stripped),
                    # a deployment without its fingerprint tag is redeployed, and its share of
                    # traffic moves to the healthy one while it comes up (the health gate):
                    # 1 deployment write and 1 endpoint write (and 1 more once it is up)
                    "OnlineDeployments_CreateOrUpdate": len(stripped),
                    # a deleted version registered again (its blob is still there): 1 write
                    "ModelVersions_CreateOrUpdate": len(deleted),
                }
            )
            drifted = len(traffic) + len(stripped) + len(deleted)

            title = f"drift cycle, {drifted} objects changed"
            fix = _cycle(reconciler, manifests, fake, wait_s, title)
            verdict = "as needed" if fix.writes == needed else "NOT as needed"
            print(f"  writes needed: {_ops(needed)}; made: {_ops(fix.writes)} ({verdict})")

            corrected = 0
            for name in traffic:
                found = fake.state.online_endpoint(name, ws)
                corrected += bool(found and found["properties"]["traffic"] == _SPLIT)
            for name in stripped:
                dep = fake.state.online_deployment(name, "green", ws)
                corrected += bool(dep and TAG_FINGERPRINT in (dep.get("tags") or {}))
            for name in deleted:
                found = fake.state.get(fake.state.resource_id(ws, "models", name, "versions", "2"))
                tags = (found or {}).get("properties", {}).get("tags") or {}
                corrected += tags.get(TAG_OWNER) == backend.owner

            # the redeployed deployments come up and get their share back
            passes, restore = _until_ready(reconciler, manifests, fake)
            split = all(
                (fake.state.online_endpoint(n, ws) or {}).get("properties", {}).get("traffic")
                == _SPLIT
                for n in traffic + stripped
            )
            print(
                f"  then Ready after {passes} passes ({_ops(restore)}); every changed endpoint "
                f"back at {_SPLIT}: {split}"
            )
            assert backend.gate.remaining(WS) <= MAX_HOLD_S

    objects = names * versions + endpoints * 3 + pipelines
    floor = reads_floor(names, versions, endpoints, pipelines)
    print(
        f"no-change cycle reads: {noop.reads} measured, floor {floor} ({names} model names x "
        f"ceil({versions}/{_PAGE}) + {endpoints} endpoints' deployments + ceil({endpoints}/"
        f"{_PAGE}) pages of endpoints + 2 x ceil({pipelines}/{_PAGE}) of jobs and schedules): "
        f"{noop.reads / objects:.3f} vs {floor / objects:.3f} reads per object"
    )
    print(
        f"RESULT objects={objects} drift_cycle_reads={noop.reads} "
        f"reads_per_object={noop.reads / objects:.3f} drift_cycle_s={noop.seconds:.1f} "
        f"drifted={drifted} corrected={corrected} correction_writes={fix.write_count} "
        f"correction_writes_needed={sum(needed.values())} reads_floor={floor}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=None)
    parser.add_argument("--scale", action="store_true", help="drift cycles at scale")
    parser.add_argument("--names", type=int, default=200, help="--scale: model names")
    parser.add_argument("--versions", type=int, default=10, help="--scale: versions per name")
    parser.add_argument(
        "--ttl",
        type=float,
        default=None,
        help="--scale: snapshot TTL (s); default: 1.5 first passes",
    )
    parser.add_argument("--pipelines", type=int, default=50, help="--scale: 4-step pipelines")
    args = parser.parse_args()
    if args.scale:
        endpoints = args.endpoints if args.endpoints is not None else 200
        scale(args.names, args.versions, endpoints, args.pipelines, args.ttl)
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

            fake.clock.advance(fake.durations["onlineDeployments"])
            more, _writes = _until_ready(reconciler, loaded.manifests, fake)
            passes = 1 + more

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
