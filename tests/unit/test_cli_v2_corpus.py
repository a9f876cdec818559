"""A repository of plain Azure ML CLI v2 files, judged by the ``azure-ai-ml`` loaders.

``tests/fixtures/cli-v2-corpus`` is a repository of nothing but what ``az ml ... -f`` takes, plus
a five-line ``amlops.yaml``: every file loads with its SDK loader, the repository validates
clean, each file validates clean alone (as a pre-commit hook runs it) and ``amlops up`` runs it.
``tests/fixtures/cli-v2-broken`` holds one small repository per mistake, each with an
``expected.yaml`` (file, line, rule, the loader and its verdict): amlops must reject each one
at that line, as the loader (or, for what only Azure ML's service checks, the service) does.
The probes below are files the loaders accept in forms the corpus does not use (defaults left
out, other documented shapes): amlops must not reject them either.

A false reject or a miss whose fix lies outside this test's reach is ``xfail(strict=True)``
with its cause, so the fix turns it into a failure to remove the mark.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from amlops.cli import targets
from amlops.core.findings import Finding
from amlops.core.validate import Report, validate_paths

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "cli-v2-corpus"
BROKEN = ROOT / "tests" / "fixtures" / "cli-v2-broken"

# Every plain CLI v2 file of the corpus and the loader `az ml` reads it with.
VALID: dict[str, str] = {
    "workspace.yml": "load_workspace",
    "compute/cpu-cluster.yml": "load_compute",
    "compute/gpu-cluster.yml": "load_compute",
    "environments/sklearn-env.yml": "load_environment",
    "environments/docker-env.yml": "load_environment",
    "models/sklearn-model.yml": "load_model",
    "models/nemo-model.yml": "load_model",
    "endpoints/endpoint.yml": "load_online_endpoint",
    "endpoints/blue.yml": "load_online_deployment",
    "endpoints/green.yml": "load_online_deployment",
    "jobs/command-job.yml": "load_job",
    "jobs/pipeline-job.yml": "load_job",
    "data/iris-data.yml": "load_data",
    "datastores/blob-datastore.yml": "load_datastore",
    "serverless/llama-serverless.yml": "load_serverless_endpoint",
    # a pipeline of two command components, each a file of its own
    "components/prep-component.yml": "load_component",
    "components/train-component.yml": "load_component",
    "components/component-pipeline.yml": "load_job",
}
# YAML in the corpus that is no CLI v2 document: the conda file an environment names.
NOT_CLI_V2 = {"environments/conda.yml"}
# Types amlops leaves alone, by design: a warning at the `$schema` line (or the first line of
# a file recognised by its shape), and the SDK loader still checks them.
UNMANAGED = {
    "data/iris-data.yml",
    "datastores/blob-datastore.yml",
}
UNRECOGNISED: set[str] = set()
RULE_UNMANAGED = "load.unsupported-cli-type"

KINDS = {
    "Component": 2,
    "ComputeCluster": 2,
    "Endpoint": 1,
    "Environment": 2,
    "Model": 2,
    "Pipeline": 3,
    "ServerlessEndpoint": 1,
    "Workspace": 1,
}


def sdk_load(loader: str, path: Path) -> None:
    """Load ``path`` as ``az ml`` does (offline); raises what the SDK raises."""
    import azure.ai.ml as sdk

    logging.getLogger("azure.ai.ml").setLevel(logging.ERROR)
    getattr(sdk, loader)(source=str(path))


def sdk_rejects(loader: str, path: Path) -> bool:
    try:
        sdk_load(loader, path)
    except Exception:  # the SDK raises many types (ValidationError, ValidationException...)
        return True
    return False


@functools.cache
def _validated(read: tuple[str, ...]) -> Report:
    """One validation per set of paths: every file of a repository reads the same ones."""
    return validate_paths(list(read))


def validate_file(path: Path) -> Report:
    """``amlops validate FILE``: the whole repository around it, its findings only."""
    scope = targets.targets([str(path)])
    return scope.report(_validated(tuple(scope.read)))


def _is(finding: Finding, path: Path) -> bool:
    return os.path.abspath(finding.file) == os.path.abspath(path)


def _where(findings: list[Finding], root: Path) -> list[tuple[str, int, str]]:
    return [
        (Path(os.path.abspath(f.file)).relative_to(root).as_posix(), f.line, f.rule)
        for f in findings
    ]


# -- the corpus ------------------------------------------------------------------------------


def test_the_corpus_is_what_the_tests_say() -> None:
    found = {
        p.relative_to(CORPUS).as_posix()
        for p in CORPUS.rglob("*")
        if p.suffix in (".yml", ".yaml") and p.name != "amlops.yaml"
    }
    assert found == set(VALID) | NOT_CLI_V2
    config = (CORPUS / "amlops.yaml").read_text()
    assert len(config.splitlines()) == 5
    assert yaml.safe_load(config)["workspace"]["name"] == "mlw-corpus"


@pytest.mark.parametrize(("file", "loader"), sorted(VALID.items()))
def test_the_sdk_loads_each_corpus_file(file: str, loader: str) -> None:
    sdk_load(loader, CORPUS / file)


def test_the_corpus_validates_clean() -> None:
    report = _validated((str(CORPUS),))
    assert [(f.file, f.line, f.rule, f.message) for f in report.errors] == []
    assert sorted(_where(report.warnings, CORPUS)) == [
        (f, 1, RULE_UNMANAGED) for f in sorted(UNMANAGED)
    ]
    assert report.kinds() == KINDS
    (endpoint,) = report.of_kind("Endpoint")
    assert [d["name"] for d in endpoint.spec["deployments"]] == ["blue", "green"]
    skipped = {Path(os.path.abspath(p)).relative_to(CORPUS).as_posix() for p in report.skipped}
    assert skipped == NOT_CLI_V2 | UNRECOGNISED
    # plain files keep Azure ML's names, which need not be DNS labels; a versioned asset is
    # one object per version
    assert {m.name for m in report.manifests} >= {"SKLearnEnv-1", "SKLearnModel-1", "nemo_model-3"}
    # the casing Azure's own samples use is the size, not a typo
    cpu = next(m for m in report.of_kind("ComputeCluster") if m.name == "cpu-cluster")
    assert cpu.spec["vmSize"] == "STANDARD_DS3_v2"


@pytest.mark.parametrize("file", sorted(VALID))
def test_each_corpus_file_validates_alone(file: str) -> None:
    path = CORPUS / file
    scope = targets.targets([str(path)])
    assert scope.read == [str(CORPUS)]  # references resolve against the whole repository
    report = validate_file(path)
    assert all(_is(f, path) for f in report.findings)
    expected = [(file, 1, RULE_UNMANAGED)] if file in UNMANAGED else []
    assert _where(report.findings, CORPUS) == expected
    assert report.ok


# -- files the loaders accept in other shapes: no false rejects ------------------------------

ENDPOINT = (
    "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\n"
)
DEPLOYMENT = (
    "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"
)
COMMAND_JOB = "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
PIPELINE_JOB = "$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json\n"
COMPUTE = "$schema: https://azuremlschemas.azureedge.net/latest/amlCompute.schema.json\n"
WORKSPACE = "$schema: https://azuremlschemas.azureedge.net/latest/workspace.schema.json\n"
TAGS = 'tags:\n  owner: ml-team@contoso.com\n  cost-center: "1234"\n'


@dataclass(frozen=True)
class Probe:
    """``files`` (name -> text) in a folder of their own in a copy of the corpus (``alone``:
    next to the corpus's amlops.yaml only); ``judged`` is the file the loader reads."""

    files: dict[str, str]
    judged: str
    loader: str
    alone: bool = False


PROBES = {
    # policies/rules/endpoint-auth.yaml required the field; Azure ML and amlops default to key
    "endpoint-without-auth-mode": Probe(
        {"endpoint.yml": ENDPOINT + "name: default-auth-online\n"},
        "endpoint.yml",
        "load_online_endpoint",
    ),
    "deployment-with-inline-model-and-environment": Probe(
        {
            "endpoint.yml": ENDPOINT + "name: inline-online\nauth_mode: aml_token\n"
            "traffic:\n  inline: 100\n",
            "deployment.yml": DEPLOYMENT + "name: inline\nendpoint_name: inline-online\n"
            "model:\n  path: ../../models/sklearn-model\n"
            "code_configuration:\n  code: ../../endpoints/score\n  scoring_script: score.py\n"
            "environment:\n"
            "  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:20240701.v1\n"
            "  conda_file: ../../environments/conda.yml\n"
            "instance_type: STANDARD_DS3_v2\ninstance_count: 1\n",
        },
        "deployment.yml",
        "load_online_deployment",
    ),
    "pipeline-job-without-name": Probe(
        {
            "unnamed-pipeline.yml": PIPELINE_JOB + "type: pipeline\ndisplay_name: unnamed\n"
            "jobs:\n  hello:\n    type: command\n    command: echo hello\n"
            "    environment: azureml:SKLearnEnv:1\n    compute: azureml:cpu-cluster\n"
        },
        "unnamed-pipeline.yml",
        "load_job",
    ),
    "compute-tier-in-title-case": Probe(
        {
            "compute.yml": COMPUTE + "name: dedicated-cpu\ntype: amlcompute\n"
            "size: Standard_DS3_v2\nmin_instances: 0\nmax_instances: 1\ntier: Dedicated\n"
            "idle_time_before_scale_down: 120\n" + TAGS
        },
        "compute.yml",
        "load_compute",
    ),
    "mlflow-deployment-without-code": Probe(
        {
            "endpoint.yml": ENDPOINT + "name: mlflow-online\nauth_mode: key\n"
            "traffic:\n  mlflow: 100\n",
            "deployment.yml": DEPLOYMENT + "name: mlflow\nendpoint_name: mlflow-online\n"
            "model: azureml:nemo_model:3\ninstance_type: Standard_DS3_v2\n"
            "instance_count: 1\n",
        },
        "deployment.yml",
        "load_online_deployment",
    ),
    # Azure ML runs a job that names no compute on serverless compute
    "command-job-on-serverless-compute": Probe(
        {
            "job.yml": COMMAND_JOB + "type: command\nname: serverless_job\n"
            "code: ../../jobs/src\ncommand: python train.py --data ${{inputs.iris}} "
            "--model ${{outputs.model}}\n"
            "inputs:\n  iris:\n    type: uri_folder\n    path: ../../data/iris\n"
            "outputs:\n  model:\n    type: uri_folder\n"
            "environment: azureml:SKLearnEnv:1\nresources:\n  instance_type: Standard_DS3_v2\n"
        },
        "job.yml",
        "load_job",
    ),
    # load_job defaults `type` to command
    "command-job-without-type": Probe(
        {
            "job.yml": COMMAND_JOB + "name: untyped_job\ncommand: echo hi\n"
            "environment: azureml:SKLearnEnv:1\ncompute: azureml:cpu-cluster\n"
        },
        "job.yml",
        "load_job",
    ),
    "compute-with-azure-ml-defaults": Probe(
        {
            "compute.yml": COMPUTE + "name: default-cluster\ntype: amlcompute\n"
            "idle_time_before_scale_down: 120\n" + TAGS
        },
        "compute.yml",
        "load_compute",
    ),
    "workspace-with-az-ml-group-and-region": Probe(
        {
            "workspace.yml": WORKSPACE + "name: mlw-defaults\n"
            "tags:\n  environment: dev\n  owner: ml-team@contoso.com\n"
            '  cost-center: "1234"\n'
        },
        "workspace.yml",
        "load_workspace",
        alone=True,
    ),
    "serverless-endpoint-with-auth-mode": Probe(
        {
            "serverless.yml": "name: llama-serverless-key\n"
            "model_id: azureml://registries/azureml-meta/models/Meta-Llama-3-8B-Instruct\n"
            "auth_mode: key\n"
        },
        "serverless.yml",
        "load_serverless_endpoint",
    ),
    "second-version-of-a-model": Probe(
        {
            "model.yml": 'name: SKLearnModel\nversion: "2"\n'
            "path: ../../models/sklearn-model\ntype: custom_model\n"
        },
        "model.yml",
        "load_model",
    ),
}
# name -> the exact cause, for the lead to fix (outside this test's files).
FALSE_REJECTS: dict[str, tuple[Probe, str]] = {}


def _all_probes() -> list[Any]:
    return [
        *(pytest.param(probe, id=name) for name, probe in PROBES.items()),
        *(
            pytest.param(
                probe,
                id=name,
                marks=pytest.mark.xfail(strict=True, reason=f"false reject: {cause}"),
            )
            for name, (probe, cause) in FALSE_REJECTS.items()
        ),
    ]


@pytest.fixture(scope="module")
def probe_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Probe name -> its folder: ``probes/<name>/`` in one copy of the corpus, or (``alone``)
    a repository of the corpus's amlops.yaml and the probe."""
    repo = tmp_path_factory.mktemp("probes") / "repo"
    shutil.copytree(CORPUS, repo)
    folders: dict[str, Path] = {}
    probes = {**PROBES, **{n: p for n, (p, _) in FALSE_REJECTS.items()}}
    for name, probe in probes.items():
        folder = repo / "probes" / name
        if probe.alone:
            folder = tmp_path_factory.mktemp("alone")
            shutil.copy(CORPUS / "amlops.yaml", folder / "amlops.yaml")
        folder.mkdir(parents=True, exist_ok=True)
        for file, text in probe.files.items():
            (folder / file).write_text(text)
        folders[name] = folder
    return folders


@pytest.mark.parametrize("probe", _all_probes())
def test_files_the_sdk_accepts_are_not_rejected(
    probe: Probe, probe_folders: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    path = probe_folders[request.node.callspec.id] / probe.judged
    sdk_load(probe.loader, path)  # valid: the loader accepts it
    report = validate_file(path)
    assert [(f.line, f.rule, f.message) for f in report.errors] == []


def test_a_model_without_version_is_refused_by_policy_only(tmp_path: Path) -> None:
    """The loader accepts a model without version (Azure ML numbers it); amlops refuses it by a
    policy it documents (model.version-pinned: applying twice must be a no-op), never by
    a schema or SDK rule, and amlops.yaml can disable that policy."""
    folder = tmp_path
    (folder / "amlops.yaml").write_text((CORPUS / "amlops.yaml").read_text())
    shutil.copytree(CORPUS / "models" / "sklearn-model", folder / "sklearn-model")
    (folder / "model.yml").write_text("name: SKLearnModel\npath: sklearn-model\n")
    sdk_load("load_model", folder / "model.yml")
    assert _where(validate_paths([folder]).errors, folder) == [
        ("model.yml", 1, "model.version-pinned")
    ]
    with (folder / "amlops.yaml").open("a") as fh:
        fh.write("policies:\n  disable: [model.version-pinned]\n")
    assert validate_paths([folder]).errors == []


# -- the broken variants ---------------------------------------------------------------------


@dataclass(frozen=True)
class Broken:
    name: str
    folder: Path
    file: str
    line: int
    rule: str
    loader: str
    sdk_rejects: bool
    service: str | None
    xfail: str | None

    @classmethod
    def read(cls, folder: Path) -> Broken:
        data: dict[str, Any] = yaml.safe_load((folder / "expected.yaml").read_text())
        return cls(
            folder.name,
            folder,
            str(data["file"]),
            int(data["line"]),
            str(data["rule"]),
            str(data["loader"]),
            {"rejects": True, "accepts": False}[data["sdk"]],
            data.get("service"),
            data.get("xfail"),
        )


VARIANTS = [Broken.read(folder) for folder in sorted(BROKEN.iterdir()) if folder.is_dir()]


def _variants(*, with_xfail: bool) -> list[Any]:
    return [
        pytest.param(
            v,
            id=v.name,
            marks=[pytest.mark.xfail(strict=True, reason=f"miss: {v.xfail}")]
            if with_xfail and v.xfail
            else [],
        )
        for v in VARIANTS
    ]


def test_each_variant_says_what_it_expects() -> None:
    assert len(VARIANTS) >= 25
    for v in VARIANTS:
        lines = (v.folder / v.file).read_text().splitlines()
        assert 1 <= v.line <= len(lines), v.name
        assert (v.folder / "amlops.yaml").is_file(), v.name
        # a mistake the loader does not see is one Azure ML's service refuses: say which
        assert v.sdk_rejects or v.service, v.name


@pytest.mark.parametrize("variant", _variants(with_xfail=False))
def test_the_sdk_verdict_on_each_variant(variant: Broken) -> None:
    assert sdk_rejects(variant.loader, variant.folder / variant.file) is variant.sdk_rejects


@pytest.mark.parametrize("variant", _variants(with_xfail=True))
def test_each_variant_is_rejected_at_its_line(variant: Broken) -> None:
    report = _validated((str(variant.folder),))
    found = _where(report.errors, variant.folder)
    assert (variant.file, variant.line, variant.rule) in found
    # one mistake, in one file: nothing else in the repository is blamed for it
    assert {file for file, _, _ in found} == {variant.file}
    # a pre-commit hook naming only that file sees the same finding
    alone = validate_file(variant.folder / variant.file)
    assert (variant.file, variant.line, variant.rule) in _where(alone.errors, variant.folder)


# -- the CLI, in a child process -------------------------------------------------------------

FINDING_LINE = re.compile(
    r"^(?P<path>[^:\s]+):(?P<line>\d+):(?P<col>\d+): (?P<severity>error|warning) "
    r"(?P<rule>[a-z0-9]+(?:\.[a-z0-9-]+)+) (?P<message>\S.*)$"
)


def _amlops(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The CLI in a child process whose stdout is a pipe (as in CI and pre-commit)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    return subprocess.run(
        [sys.executable, "-c", "import sys; from amlops.cli import main; sys.exit(main())", *args],
        cwd=cwd,
        capture_output=True,  # stdout is a pipe: no terminal, so no table
        text=True,
        timeout=timeout,
        env={**env, "COLUMNS": "80"},
    )


@pytest.mark.slow
def test_validate_prints_one_line_per_finding_in_a_pipe() -> None:
    variant = next(v for v in VARIANTS if v.name == "endpoint-traffic-not-100")
    proc = _amlops("validate", variant.file, cwd=variant.folder)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    *lines, summary = proc.stdout.splitlines()
    assert summary.startswith("validation failed: 1 errors, 0 warnings")
    parsed = [FINDING_LINE.match(line) for line in lines]
    assert all(parsed) and len(parsed) == 1, lines
    (match,) = parsed
    assert match is not None
    assert (match["path"], int(match["line"]), match["severity"], match["rule"]) == (
        variant.file,
        variant.line,
        "error",
        variant.rule,
    )
    assert "\x1b" not in proc.stdout and "┃" not in proc.stdout  # no table, no colours


@pytest.mark.slow
def test_validate_passes_the_corpus_and_each_file_in_it() -> None:
    whole = _amlops("validate", cwd=CORPUS)  # no path: the folder of amlops.yaml
    assert whole.returncode == 0, whole.stdout + whole.stderr
    assert whole.stdout.splitlines()[-1].startswith(
        f"validation passed: 0 errors, {len(UNMANAGED)} warnings"
    )
    one = _amlops("validate", "endpoints/green.yml", cwd=CORPUS)
    assert one.returncode == 0, one.stdout + one.stderr
    assert one.stdout.splitlines() == [
        "validation passed: 0 errors, 0 warnings (1 manifests in 1 files: 1 Endpoint)"
    ]


@pytest.mark.slow
def test_up_runs_the_corpus(tmp_path: Path) -> None:
    """``amlops up --once --smoke``: the models are registered, the three jobs run their real
    scripts, the endpoint serves 80/20 through azmlinfsrv and answers one scoring request.
    ``up`` does not run the rest, by design: Workspace and ComputeCluster are Pulumi's
    (``amlops plan --infra``), environments are referenced, not reconciled, and data assets
    and datastores are left alone. The serverless endpoint is left out of the copy: its Meta
    model is in no local registry, so the local backend refuses it (naming the model; pinned
    in tests/local/test_serverless_endpoint.py) and ``--once`` would exit 1."""
    repo = tmp_path / "repo"
    shutil.copytree(CORPUS, repo)
    (repo / "serverless" / "llama-serverless.yml").unlink()
    state = tmp_path / "state"
    proc = _amlops("up", str(repo), "--once", "--smoke", "--state-dir", str(state), cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    # 0.5 * 1.0 - 0.25 * 2.0 + 0.1 from models/sklearn-model/model.json, by endpoints/score
    assert re.search(r"smoke sklearn-online: 200 from deployment (blue|green): \[0\.1\]", out), out
    status = _amlops("status", "--state-dir", str(state), "-o", "json", cwd=tmp_path)
    objects = yaml.safe_load(status.stdout)["objects"]
    ready = {
        (o["kind"], o["name"]): next(
            c["status"] for c in o["status"]["conditions"] if c["type"] == "Ready"
        )
        for o in objects
    }
    assert ready == {
        ("Model", "SKLearnModel-1"): "True",
        ("Model", "nemo_model-3"): "True",
        ("Pipeline", "sklearn_train_job"): "True",
        ("Pipeline", "sklearn_pipeline_job"): "True",
        ("Pipeline", "component_pipeline_job"): "True",
        ("Endpoint", "sklearn-online"): "True",
    }
    endpoint = next(o for o in objects if o["kind"] == "Endpoint")
    assert endpoint["status"]["traffic"] == {"blue": 80, "green": 20}
