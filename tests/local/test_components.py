"""Pipelines of components run on the local backend as their steps would written out: a
component file's command, code and interface, a pipeline component's inner jobs with its
inputs and outputs mapped, a command job as one step. Under ``amlops up`` (the tree
reconciler) an ``azureml:NAME:VERSION`` step naming a Component of the repository runs as its
file would; a registry component, an ``azureml:`` name the repository does not declare, and
any ``azureml:`` component in the operator (one object at a time) are refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlops.backends.base import (
    BackendError,
    ComputeInfo,
    JobStatus,
    PipelineRun,
    PipelineRunSpec,
)
from amlops.backends.local.backend import LocalBackend
from amlops.core.manifests import Manifest, load_tree
from amlops.kinds.component import Repository
from amlops.reconcile import pipeline
from amlops.reconcile.conditions import Phase
from amlops.reconcile.inputs import Inputs, Source
from amlops.reconcile.registry import RECONCILERS
from amlops.reconcile.tree import ObjectReport, TreeReconciler

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "components"
WS = "mlw-dev"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    target = tmp_path / "repo"
    shutil.copytree(FIXTURES, target)
    return target


@pytest.fixture
def local(tmp_path: Path, repo: Path) -> Iterator[LocalBackend]:
    b = LocalBackend(tmp_path / "state", source_root=repo)
    b.start()
    b.put_compute(ComputeInfo(WS, "gpu", 2))
    yield b
    b.close()


def _desired(repo: Path, name: str, *, tree: bool = False) -> pipeline.PipelineDesired:
    """The pipeline as the operator reads it (one object), or with ``tree`` as ``amlops up``
    does (the repository's Components to look ``azureml:`` steps up in)."""
    manifests = load_tree([repo], root=repo).manifests
    m = next(m for m in manifests if m.kind == "Pipeline" and m.name == name)
    source = Source.of(m, components=Repository(manifests) if tree else None)
    return pipeline.desired(Inputs(WS, name, m.spec, 1, source))


def _run(backend: LocalBackend, repo: Path, name: str) -> PipelineRun:
    result = RECONCILERS["Pipeline"].reconcile(backend, _desired(repo, name), None)
    assert result.outcome.phase is Phase.RECONCILING, result.outcome  # started
    started = backend.latest_pipeline_run(WS, name)
    assert started is not None
    done = backend.wait_for_run(started.run_id, timeout=60)
    assert done is not None and done.status.terminal
    return done


def _output(backend: LocalBackend, run: PipelineRun, *parts: str) -> str:
    return (backend.runner.run_dir(run.run_id).joinpath(*parts)).read_text()


@pytest.mark.slow
def test_two_component_steps_run_with_their_files_and_interface(
    local: LocalBackend, repo: Path
) -> None:
    run = _run(local, repo, "two_steps")
    assert run.status is JobStatus.COMPLETED, run.message
    assert [s.name for s in run.steps] == ["prep", "train"]
    # train's command came from components/train.yml: epochs as the step set it, the optional
    # note dropped, its output bound to the pipeline's
    assert _output(local, run, "outputs", "model", "model.txt") == "HELLO COMPONENTS x5"
    # the step ran in a snapshot of the component's code folder, relative to the component
    assert (local.runner.run_dir(run.run_id) / "train" / "code" / "train.py").is_file()


@pytest.mark.slow
def test_a_nested_pipeline_component_runs_its_inner_jobs_with_the_parents_bindings(
    local: LocalBackend, repo: Path
) -> None:
    run = _run(local, repo, "nested")
    assert run.status is JobStatus.COMPLETED, run.message
    assert [s.name for s in run.steps] == ["fit.prep", "fit.train", "report"]
    # epochs: 4 given to the pipeline component reached its inner train step; the report
    # read the component's output through ${{parent.jobs.fit.outputs.model}}
    assert _output(local, run, "outputs", "report", "report.txt") == "report: HELLO COMPONENTS x4"


@pytest.mark.slow
def test_a_single_component_pipeline_job_uses_the_components_defaults(
    local: LocalBackend, repo: Path
) -> None:
    run = _run(local, repo, "single")
    assert run.status is JobStatus.COMPLETED, run.message
    assert [s.name for s in run.steps] == ["prep", "train"]
    assert _output(local, run, "outputs", "model", "model.txt") == "HELLO COMPONENTS x3"


@pytest.mark.slow
def test_a_command_job_runs_as_one_step(local: LocalBackend, repo: Path) -> None:
    run = _run(local, repo, "command_job")
    assert run.status is JobStatus.COMPLETED, run.message
    assert [s.name for s in run.steps] == ["main"]
    assert _output(local, run, "outputs", "data", "data.txt") == "HELLO COMPONENTS\n"


def test_a_registry_component_is_refused_naming_it(local: LocalBackend, repo: Path) -> None:
    desired = _desired(repo, "finetune")
    uri = "azureml://registries/azureml/components/text_generation_finetune/labels/latest"
    result = RECONCILERS["Pipeline"].reconcile(local, desired, None)
    assert result.outcome.phase is Phase.STALLED
    assert result.outcome.reason == "UnsupportedByBackend"
    assert uri in result.outcome.message
    assert local.latest_pipeline_run(WS, "finetune") is None
    with pytest.raises(BackendError, match="text_generation_finetune"):
        local.submit_pipeline_run(PipelineRunSpec(WS, "finetune", desired.job, "fp", "change"))


def test_editing_a_component_file_changes_the_pipelines_fingerprint(repo: Path) -> None:
    before = _desired(repo, "two_steps").job_as_written
    train = repo / "components" / "train.yml"
    train.write_text(train.read_text().replace("default: 2", "default: 7"))
    after = _desired(repo, "two_steps").job_as_written
    assert before != after


# -- azureml: components the repository declares, under `amlops up` ---------------------------

# In a folder of its own, so that the components' paths resolve against their files, not it.
BY_NAME = """\
$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
settings:
  default_compute: azureml:gpu
inputs:
  raw:
    type: uri_folder
    path: ../data
outputs:
  model:
    type: uri_folder
  nested:
    type: uri_folder
jobs:
  prep:
    type: command
    component: azureml:prep_data:1
    inputs:
      raw: ${{parent.inputs.raw}}
  train:
    type: command
    component: {train}
    inputs:
      data: ${{parent.jobs.prep.outputs.data}}
      epochs: 5
    outputs:
      model: ${{parent.outputs.model}}
  fit:
    type: pipeline
    component: azureml:prep_and_train@latest
    inputs:
      raw: ${{parent.inputs.raw}}
    outputs:
      model: ${{parent.outputs.nested}}
"""


def _by_name(repo: Path, train: str = "azureml:train_model:1") -> None:
    (repo / "pipelines").mkdir(exist_ok=True)
    (repo / "pipelines" / "by_name.yml").write_text(BY_NAME.replace("{train}", train))


def _up(backend: LocalBackend, repo: Path, name: str, passes: int = 120) -> ObjectReport:
    """``amlops up``'s passes over the tree until the pipeline settles."""
    tree = TreeReconciler(backend, backend.objects, backend.seed_computes)
    for _ in range(passes):
        manifests: list[Manifest] = load_tree([repo], root=repo).manifests
        report = next(r for r in tree.reconcile(manifests) if r.name == name)
        if report.settled:
            return report
        run = backend.latest_pipeline_run(WS, name)
        if run is not None:
            backend.wait_for_run(run.run_id, timeout=60)
    raise AssertionError(f"{name} did not settle: {report.outcome}")


@pytest.mark.slow
def test_up_runs_a_step_naming_a_component_the_repository_declares(
    local: LocalBackend, repo: Path
) -> None:
    _by_name(repo)
    report = _up(local, repo, "by_name")
    assert report.outcome.phase is Phase.READY, report.outcome
    run = local.latest_pipeline_run(WS, "by_name")
    assert run is not None and run.status is JobStatus.COMPLETED, run
    assert [s.name for s in run.steps] == ["prep", "fit.prep", "train", "fit.train"]
    # train_model:1's command, with the step's epochs; its code relative to its own file
    assert _output(local, run, "outputs", "model", "model.txt") == "HELLO COMPONENTS x5"
    assert (local.runner.run_dir(run.run_id) / "train" / "code" / "train.py").is_file()
    # the pipeline component's inner jobs name ./prep.yml and ./train.yml next to it
    assert _output(local, run, "outputs", "nested", "model.txt") == "HELLO COMPONENTS x3"


def _train_version(repo: Path, version: str, epochs: int) -> None:
    text = (repo / "components" / "train.yml").read_text()
    text = text.replace("version: 1", f"version: {version}")
    (repo / "components" / f"train_{version}.yml").write_text(
        text.replace("default: 2", f"default: {epochs}")
    )


def test_latest_is_the_highest_version_declared_compared_as_numbers(repo: Path) -> None:
    _train_version(repo, "2", 20)
    _train_version(repo, "10", 100)  # "10" < "2" as text
    _by_name(repo, "azureml:train_model@latest")
    text = (repo / "pipelines" / "by_name.yml").read_text()
    (repo / "pipelines" / "by_name.yml").write_text(text.replace("      epochs: 5\n", ""))
    desired = _desired(repo, "by_name", tree=True)
    assert desired.graph is not None and desired.problems == ()
    assert desired.graph.step("train").inputs["epochs"] == {"type": "integer", "default": 100}
    assert desired.graph.step("train").component is None
    assert desired.graph.step("train").code == "../components/src"


def test_editing_a_component_the_pipeline_names_changes_its_fingerprint(repo: Path) -> None:
    _by_name(repo)
    before = _desired(repo, "by_name", tree=True).job_as_written
    train = repo / "components" / "train.yml"
    train.write_text(train.read_text().replace("default: 2", "default: 7"))
    after = _desired(repo, "by_name", tree=True).job_as_written
    assert before != after
    # ... also one a pipeline component it names runs (prep_and_train -> ./prep.yml)
    prep = repo / "components" / "prep.yml"
    prep.write_text(prep.read_text().replace("display_name: Prepare", "display_name: Clean"))
    assert _desired(repo, "by_name", tree=True).job_as_written != after


@pytest.mark.parametrize(
    "train",
    [
        "azureml:train_model:9",  # the repository declares version 1 only
        "azureml:shared_train:1",  # nothing declares it (an `external:` one, say)
        "azureml://registries/azureml/components/train_model/versions/1",
    ],
)
def test_up_refuses_a_component_the_repository_does_not_declare_naming_it(
    local: LocalBackend, repo: Path, train: str
) -> None:
    _by_name(repo, train)
    report = _up(local, repo, "by_name")
    assert report.outcome.phase is Phase.STALLED
    assert report.outcome.reason == "UnsupportedByBackend"
    assert f"step train runs component {train}" in report.outcome.message
    assert local.latest_pipeline_run(WS, "by_name") is None


def test_the_operator_still_refuses_an_azureml_component(local: LocalBackend, repo: Path) -> None:
    """The operator gets one object at a time, and Components have no custom resource: no
    repository to look the name up in (Source without components)."""
    _by_name(repo)
    desired = _desired(repo, "by_name")
    assert desired.graph is not None
    assert desired.graph.step("prep").component == "azureml:prep_data:1"
    result = RECONCILERS["Pipeline"].reconcile(local, desired, None)
    assert result.outcome.phase is Phase.STALLED
    assert result.outcome.reason == "UnsupportedByBackend"
    assert "step prep runs component azureml:prep_data:1" in result.outcome.message
    assert local.latest_pipeline_run(WS, "by_name") is None
