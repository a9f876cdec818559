"""Validation speed: amlops validate vs check-jsonschema vs bare YAML parsing, one process.

Generates N manifests of mixed kinds (one file each, a realistic platform repository mix),
then times, in this process and on the same files:

* ``amlops``: ``amlops validate --no-sdk``: parse with positions, JSON Schema per kind,
  cross-references, every policy (what the issue's target is about);
* ``amlops+sdk``: plain ``amlops validate``, which also runs the azure-ai-ml loaders over every
  embedded Azure ML part (reported apart: the SDK's own cost, ~1 ms per model and ~13 ms per
  pipeline job, is the SDK's); cold, then warm (verdicts remembered by content on disk);
* ``check-jsonschema``: its CLI entry point, once per kind, schema only;
* ``parse``: ``yaml.load(..., CSafeLoader)`` of every file and nothing else.

Each contender runs ``--repeat`` times (default 3) and the fastest run counts. Imports happen
before the clocks start (a one-time cost for every contender). amlops compiles
its schemas and policy conditions to Python once and keeps the byte code on disk (like .pyc);
it is timed both cold (a fresh cache, as on a new CI machine) and warm. Prints each time and
the ratios, and ends with one ``RESULT`` line.

    python -m bench.validate [--n 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from amlops.core import azureml
from amlops.core.policy import load_policies
from amlops.core.schemas import load_schemas
from amlops.core.validate import Report, validate_paths
from amlops.paths import schemas_dir

# share of each kind in a platform repository: many models and access rules, few workspaces
MIX = {
    "Workspace": 0.02,
    "ComputeCluster": 0.08,
    "RoleAssignment": 0.30,
    "Model": 0.40,
    "Endpoint": 0.12,
    "Pipeline": 0.04,
    "Environment": 0.04,
}
TAGS = {"owner": "team@contoso.com", "cost-center": "4711"}


def _doc(kind: str, i: int, workspaces: list[str], rng: random.Random) -> dict[str, object]:
    ws = rng.choice(workspaces)
    name = f"{kind.lower()}-{i}"
    spec: dict[str, object]
    if kind == "Workspace":
        name = workspaces[i % len(workspaces)]
        spec = {
            "environment": "dev",
            "location": "westeurope",
            "resourceGroup": f"rg-{name}",
            "publicNetworkAccess": "Enabled",
            "storage": {"allowSharedKeyAccess": False},
            "tags": TAGS,
        }
    elif kind == "ComputeCluster":
        spec = {
            "workspace": ws,
            "vmSize": rng.choice(["Standard_NC4as_T4_v3", "Standard_NC24ads_A100_v4"]),
            "tier": "LowPriority",
            "minInstances": 0,
            "maxInstances": rng.randint(1, 4),
            "idleTimeBeforeScaleDown": 900,
            "tags": TAGS,
        }
    elif kind == "RoleAssignment":
        spec = {
            "principal": {"type": "Group", "objectId": f"6f1c2a3e-8d4b-4c1e-9a7f-{i:012d}"},
            "role": "AzureML Data Scientist",
            "scope": {"workspace": ws},
        }
    elif kind == "Model":
        spec = {
            "workspace": ws,
            "model": {
                "name": f"model-{i}",
                "version": str(rng.randint(1, 9)),
                "type": "custom_model",
                "path": "artifacts",
                "tags": {"team": "nlp"},
            },
        }
    elif kind == "Environment":
        spec = {
            "workspace": ws,
            "environment": {
                "name": f"env-{i}",
                "version": "1",
                "image": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240701.v1",
            },
        }
    elif kind == "Endpoint":
        deployment = {
            "model": "azureml://registries/azureml/models/phi-3-mini/versions/3",
            "code_configuration": {"code": "score", "scoring_script": "score.py"},
            "environment": "azureml://registries/azureml/environments/minimal-py311/versions/1",
            "instance_type": "Standard_DS3_v2",
            "instance_count": 1,
        }
        spec = {
            "workspace": ws,
            "endpoint": {"name": name, "auth_mode": "key", "traffic": {"blue": 90, "green": 10}},
            "deployments": [{"name": "blue", **deployment}, {"name": "green", **deployment}],
        }
    else:  # Pipeline
        step = {
            "type": "command",
            "code": "score",
            "environment": "azureml://registries/azureml/environments/minimal-py311/versions/1",
        }
        spec = {
            "workspace": ws,
            "job": {
                "type": "pipeline",
                "settings": {"default_compute": "serverless"},
                "inputs": {"data": {"type": "uri_folder", "path": "artifacts"}},
                "jobs": {
                    "prep": {
                        **step,
                        "command": "python prep.py --in ${{inputs.raw}} --out ${{outputs.out}}",
                        "inputs": {"raw": "${{parent.inputs.data}}"},
                        "outputs": {"out": {"type": "uri_folder"}},
                    },
                    "train": {
                        **step,
                        "command": "python train.py --in ${{inputs.data}}",
                        "inputs": {"data": "${{parent.jobs.prep.outputs.out}}"},
                    },
                },
            },
        }
    return {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def generate(root: Path, n: int, seed: int = 7) -> dict[str, list[Path]]:
    rng = random.Random(seed)
    (root / "artifacts").mkdir(parents=True)
    (root / "artifacts" / "weights.bin").write_bytes(b"\0" * 16)
    (root / "score").mkdir()
    (root / "score" / "score.py").write_text("def init():\n    pass\n")
    counts = {kind: max(1, round(n * share)) for kind, share in MIX.items()}
    counts["RoleAssignment"] += n - sum(counts.values())
    workspaces = [f"mlw-{i}" for i in range(counts["Workspace"])]
    files: dict[str, list[Path]] = {}
    for kind, count in counts.items():
        for i in range(count):
            path = root / f"{kind.lower()}-{i:05d}.yaml"
            path.write_text(yaml.safe_dump(_doc(kind, i, workspaces, rng), sort_keys=False))
            files.setdefault(kind, []).append(path)
    return files


T = TypeVar("T")


def best(repeat: int, fn: Callable[[], T]) -> tuple[float, T]:
    """The fastest of ``repeat`` runs: the least disturbed by whatever else the machine does."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def run_check_jsonschema(files: dict[str, list[Path]]) -> int:
    from check_jsonschema import main as cj_main

    failures = 0
    for kind, paths in files.items():
        schema = schemas_dir() / f"{kind.lower()}.schema.json"
        argv = ["--schemafile", str(schema), *map(str, paths)]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            try:
                cj_main(argv)
            except SystemExit as exc:
                failures += int(exc.code != 0)
    return failures


def parse_only(files: dict[str, list[Path]]) -> int:
    loaded = 0
    for paths in files.values():
        for path in paths:
            with path.open("rb") as fh:
                yaml.load(fh, Loader=yaml.CSafeLoader)
            loaded += 1
    return loaded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--keep", type=Path, help="write the generated manifests here")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender; best counts")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="amlops-bench-"))
    try:
        if args.keep and root.exists():
            shutil.rmtree(root)
        files = generate(root, args.n)
        mix = Counter({k: len(v) for k, v in files.items()})
        print(f"{sum(mix.values())} manifests in {root}: {dict(mix)}")
        # Pay one-time import costs before any clock starts, for every contender alike.
        azureml._loader("load_model")
        import check_jsonschema  # noqa: F401

        parse_s, parsed = best(args.repeat, lambda: parse_only(files))
        cj_s, cj_failures = best(args.repeat, lambda: run_check_jsonschema(files))
        caches = iter(range(1_000_000))

        def cold(sdk: bool) -> Report:
            # A fresh cache directory: nothing compiled or remembered yet (a new CI machine).
            os.environ["AMLOPS_CACHE_DIR"] = str(root / ".cache" / str(next(caches)))
            load_schemas.cache_clear()
            load_policies.cache_clear()
            azureml._verdicts.cache_clear()
            return validate_paths([root], sdk=sdk)

        cold_s, _ = best(args.repeat, lambda: cold(False))
        amlops_s, report = best(args.repeat, lambda: validate_paths([root], sdk=False))
        sdk_s, sdk_report = best(args.repeat, lambda: cold(True))
        sdk_warm_s, _ = best(args.repeat, lambda: validate_paths([root]))
        assert parsed == args.n
        for label, seconds, rep in (
            ("amlops validate --no-sdk", amlops_s, report),
            ("  same, validators cold", cold_s, report),
            ("amlops validate (+ SDK)", sdk_s, sdk_report),
            ("  same, SDK verdicts warm", sdk_warm_s, sdk_report),
        ):
            errors = getattr(rep, "errors", [])
            assert not errors, errors[0]
            print(f"{label:26} {seconds:8.3f} s   errors: {len(errors)}")
        print(f"parse (CSafeLoader)        {parse_s:8.3f} s")
        print(f"check-jsonschema (schema)  {cj_s:8.3f} s   failing kinds: {cj_failures}")
        speedup = cj_s / amlops_s
        ratio = amlops_s / parse_s
        print(f"amlops is {speedup:.2f}x faster than check-jsonschema (target >= 2)")
        print(f"amlops takes {ratio:.2f}x the time of bare parsing (target <= 2)")
        print(
            f"RESULT n={args.n} amlops_s={amlops_s:.3f} checkjsonschema_s={cj_s:.3f} "
            f"parse_s={parse_s:.3f} speedup_vs_checkjsonschema={speedup:.2f} "
            f"ratio_to_parse={ratio:.2f} amlops_cold_s={cold_s:.3f} "
            f"cold_ratio_to_parse={cold_s / parse_s:.2f} amlops_with_sdk_s={sdk_s:.3f} "
            f"amlops_with_sdk_warm_s={sdk_warm_s:.3f}"
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
