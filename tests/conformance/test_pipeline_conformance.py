"""Pipeline runs, as the Pipeline reconciler relies on them: one test body per behaviour on
every backend. Where the backends legitimately differ, a small :class:`Driver` says how: the
local backend runs the steps' scripts in subprocesses (``settle`` waits for them, a failing
step is a script that exits 1), the azureml backend's steps move on the fake's clock
(``settle`` advances it, a failing step is a ``jobSteps`` fault)."""

from __future__ import annotations

import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import (
    Backend,
    ComputeInfo,
    JobStatus,
    PipelineRun,
    PipelineRunSpec,
)
from amlops.backends.local.backend import LocalBackend
from amlops.core.provenance import TAG_COMMIT, TAG_MANIFEST, TAG_RUN
from tests.conformance.conftest import WS

pytestmark = pytest.mark.slow

PIPELINE = "conf-tune"
MODEL = "conf-tuned"
FINGERPRINT = "sha256:" + "cd" * 32
TAGS = {TAG_COMMIT: "c0ffee", TAG_MANIFEST: "pipelines/conf-tune.yaml"}
ENV = "azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest"

PREP = """\
    import pathlib, sys
    out = pathlib.Path(sys.argv[1])
    (out / "rows.txt").write_text("a\\nb\\n")
"""
TRAIN = """\
    import pathlib, sys
    data, model = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    rows = (data / "rows.txt").read_text().split()
    (model / "weights.txt").write_text(f"trained on {len(rows)} rows\\n")
"""


def _script(folder: Path, body: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{folder.name}.py").write_text(textwrap.dedent(body))


def two_steps(root: Path) -> dict[str, Any]:
    """prep -> train, each with its own local code folder; train writes the pipeline's model
    output, registered as ``conf-tuned``. The steps are written dependent-first: the order a
    run reports them in is the graph's, not the file's."""
    _script(root / "prep", PREP)
    _script(root / "train", TRAIN)
    return {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "outputs": {"model": {"type": "custom_model", "name": MODEL}},
        "jobs": {
            "train": {
                "type": "command",
                "code": str(root / "train"),
                "command": "python train.py ${{inputs.data}} ${{outputs.model}}",
                "environment": ENV,
                "inputs": {"data": "${{parent.jobs.prep.outputs.data}}"},
                "outputs": {"model": "${{parent.outputs.model}}"},
            },
            "prep": {
                "type": "command",
                "code": str(root / "prep"),
                "command": "python prep.py ${{outputs.data}}",
                "environment": ENV,
                "outputs": {"data": {"type": "uri_folder"}},
            },
        },
    }


def _spec(job: dict[str, Any], trigger: str = "change") -> PipelineRunSpec:
    return PipelineRunSpec(WS, PIPELINE, job, FINGERPRINT, trigger, tags=TAGS)


class Driver:
    """How a test moves a backend's run along; one subclass per backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def latest(self) -> PipelineRun:
        run = self.backend.latest_pipeline_run(WS, PIPELINE)
        assert run is not None
        return run

    def settle(self, run_id: str) -> PipelineRun:
        """Until the run has ended; returns it as ``latest_pipeline_run`` reads it."""
        raise NotImplementedError

    def start(self, run_id: str) -> PipelineRun:
        """Until the run's first step is running (and would keep running)."""
        raise NotImplementedError

    def fail(self, root: Path, step: str, message: str) -> None:
        """Make ``step`` fail with ``message`` in runs submitted from now on."""
        raise NotImplementedError

    def slow(self, root: Path, step: str) -> None:
        """Make ``step`` take long enough for a test to act while it runs."""


class LocalDriver(Driver):
    backend: LocalBackend

    def settle(self, run_id: str) -> PipelineRun:
        done = self.backend.wait_for_run(run_id, timeout=60)
        assert done is not None and done.status.terminal, done
        return self.latest()

    def start(self, run_id: str) -> PipelineRun:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run = self.latest()
            if run.steps[0].status is JobStatus.RUNNING:
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} never started: {self.latest()}")

    def fail(self, root: Path, step: str, message: str) -> None:
        _script(root / step, f"import sys\nprint({message!r})\nsys.exit(1)\n")

    def slow(self, root: Path, step: str) -> None:
        _script(root / step, "import time\ntime.sleep(60)\n")


class AzureDriver(Driver):
    def __init__(self, backend: Backend, fake: Any) -> None:
        super().__init__(backend)
        self.fake = fake

    def settle(self, run_id: str) -> PipelineRun:
        for _ in range(50):
            run = self.latest()
            if run.run_id == run_id and run.status.terminal:
                return run
            self.fake.clock.advance(30)
        raise AssertionError(f"run {run_id} never ended: {self.latest()}")

    def start(self, run_id: str) -> PipelineRun:
        self.fake.clock.advance(self.fake.durations["jobQueued"] + 1)
        return self.latest()

    def fail(self, root: Path, step: str, message: str) -> None:
        self.fake.faults.fail_provisioning(step, kind="jobSteps", code="UserError", message=message)


@pytest.fixture
def driver(backend: Backend, request: pytest.FixtureRequest) -> Iterator[Driver]:
    if isinstance(backend, LocalBackend):
        backend.put_compute(ComputeInfo(WS, "cpu", 2))  # Pulumi's cluster, as amlops up seeds it
        yield LocalDriver(backend)
        return
    fake = request.getfixturevalue("azure_env").fake
    fake.jobs.add_compute("cpu")
    yield AzureDriver(backend, fake)


def _names_and_statuses(run: PipelineRun) -> list[tuple[str, JobStatus]]:
    return [(s.name, s.status) for s in run.steps]


def test_a_run_completes_in_order_and_registers_its_model_with_provenance(
    backend: Backend, driver: Driver, tmp_path: Path
) -> None:
    submitted = backend.submit_pipeline_run(_spec(two_steps(tmp_path / "src")))
    assert submitted.pipeline == PIPELINE and not submitted.status.terminal
    assert {s.name for s in submitted.steps} == {"prep", "train"}

    done = driver.settle(submitted.run_id)
    assert done.run_id == submitted.run_id
    assert done.status is JobStatus.COMPLETED, done.message
    assert _names_and_statuses(done) == [
        ("prep", JobStatus.COMPLETED),
        ("train", JobStatus.COMPLETED),
    ]
    assert (done.workspace, done.pipeline) == (WS, PIPELINE)
    assert (done.fingerprint, done.trigger) == (FINGERPRINT, "change")
    assert done.tags[TAG_COMMIT] == "c0ffee"

    assert set(done.outputs) == {"model"}
    name, _, version = done.outputs["model"].partition(":")
    assert name == MODEL and version
    model = backend.get_model_version(WS, MODEL, version)
    assert model is not None
    assert model.tags[TAG_RUN] == done.run_id
    assert model.tags[TAG_COMMIT] == "c0ffee" and model.tags[TAG_MANIFEST] == TAGS[TAG_MANIFEST]
    latest = backend.latest_model_version(WS, MODEL)
    assert latest is not None and latest.version == version

    # nothing changed: reading again is the same run, and registers nothing more
    again = backend.latest_pipeline_run(WS, PIPELINE)
    assert again is not None and again.run_id == done.run_id
    assert again.status is JobStatus.COMPLETED and again.outputs == done.outputs
    latest = backend.latest_model_version(WS, MODEL)
    assert latest is not None and latest.version == version


def test_a_failing_step_fails_the_run_naming_the_step(
    backend: Backend, driver: Driver, tmp_path: Path
) -> None:
    job = two_steps(tmp_path / "src")
    driver.fail(tmp_path / "src", "train", "train: CUDA out of memory")
    submitted = backend.submit_pipeline_run(_spec(job, trigger="manual"))

    run = driver.settle(submitted.run_id)
    assert run.status is JobStatus.FAILED
    assert re.search(r"\btrain\b", run.message) and "prep" not in run.message, run.message
    assert "out of memory" in run.message
    assert _names_and_statuses(run) == [("prep", JobStatus.COMPLETED), ("train", JobStatus.FAILED)]
    assert run.trigger == "manual" and run.outputs == {}
    assert backend.latest_model_version(WS, MODEL) is None


def test_cancelling_a_running_run_ends_it_canceled(
    backend: Backend, driver: Driver, tmp_path: Path
) -> None:
    job = two_steps(tmp_path / "src")
    driver.slow(tmp_path / "src", "prep")
    submitted = backend.submit_pipeline_run(_spec(job))
    running = driver.start(submitted.run_id)
    assert running.run_id == submitted.run_id and running.status is JobStatus.RUNNING
    assert running.steps[0].name == "prep" and running.steps[0].status is JobStatus.RUNNING

    backend.cancel_pipeline_run(WS, submitted.run_id)
    backend.cancel_pipeline_run(WS, submitted.run_id)  # asked already: fine
    run = driver.settle(submitted.run_id)
    assert run.status is JobStatus.CANCELED
    assert [s.name for s in run.steps] == ["prep", "train"]
    assert run.steps[0].status is JobStatus.CANCELED
    assert run.steps[1].status in (JobStatus.NOT_STARTED, JobStatus.CANCELED)
    assert run.outputs == {} and backend.latest_model_version(WS, MODEL) is None

    again = backend.latest_pipeline_run(WS, PIPELINE)
    assert again is not None and again.run_id == submitted.run_id
    assert again.status is JobStatus.CANCELED
