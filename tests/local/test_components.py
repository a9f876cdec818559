"""Pipelines of components run on the local backend as their steps would written out: a
component file's command, code and interface, a pipeline component's inner jobs with its
inputs and outputs mapped, a command job as one step; a registry component is refused."""

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
from amlops.core.manifests import load_tree
from amlops.reconcile import pipeline
from amlops.reconcile.conditions import Phase
from amlops.reconcile.inputs import Inputs, Source
from amlops.reconcile.registry import RECONCILERS

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


def _desired(repo: Path, name: str) -> pipeline.PipelineDesired:
    loaded = load_tree([repo], root=repo)
    m = next(m for m in loaded.manifests if m.kind == "Pipeline" and m.name == name)
    return pipeline.desired(Inputs(WS, name, m.spec, 1, Source.of(m)))


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
    assert result.outcome.reason == "BackendRefused"
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
