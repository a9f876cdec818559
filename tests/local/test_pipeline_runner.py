"""The subprocess pipeline runner: Azure ML pipeline-job semantics on local processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import (
    BackendError,
    ComputeInfo,
    JobStatus,
    ModelVersionSpec,
    PipelineRun,
    PipelineRunSpec,
)
from amlops.backends.local.backend import LocalBackend
from amlops.backends.local.runner import render_command
from amlops.kinds.pipeline import JobSpecError, parse_job

from .conftest import WS, script

STEP = """
    import argparse, pathlib, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--name"); p.add_argument("--timeline"); p.add_argument("--out")
    p.add_argument("--sleep", type=float, default=0); p.add_argument("--fail", type=int, default=0)
    p.add_argument("--inp", action="append", default=[])
    a = p.parse_args()
    def mark(what):
        with open(a.timeline, "a") as f:
            f.write(f"{what} {a.name} {time.time()}\\n")
    mark("start")
    time.sleep(a.sleep)
    if a.fail:
        print(f"{a.name}: giving up on purpose")
        sys.exit(a.fail)
    # a model input is an Azure ML model folder: the files sit one level down
    seen = "".join(sorted(pathlib.Path(i).rglob("value.txt"))[0].read_text() for i in a.inp)
    pathlib.Path(a.out, "value.txt").write_text(seen + a.name)
    mark("end")
"""


def _step(
    code: Path,
    name: str,
    *,
    inputs: dict[str, Any] | None = None,
    sleep: float = 0.0,
    fail: int = 0,
    out: Any = None,
) -> dict[str, Any]:
    ins = dict(inputs or {})
    command = (
        f"python step.py --name {name} --timeline ${{{{inputs.timeline}}}} "
        f"--out ${{{{outputs.out}}}} --sleep {sleep} --fail {fail}"
    )
    for key in ins:
        if key.startswith("up_"):
            command += f" --inp ${{{{inputs.{key}}}}}"
    ins["timeline"] = "${{parent.inputs.timeline}}"
    return {
        "type": "command",
        "code": str(code),
        "command": command,
        "inputs": ins,
        "outputs": {"out": out if out is not None else {"type": "uri_folder"}},
    }


def _job(code: Path, timeline: Path, jobs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "inputs": {"timeline": str(timeline), **extra.get("inputs", {})},
        "outputs": extra.get("outputs", {}),
        "jobs": jobs,
    }


def _run(backend: LocalBackend, job: dict[str, Any]) -> PipelineRun:
    run = backend.submit_pipeline_run(PipelineRunSpec(WS, "p", job, "fp", "change"))
    done = backend.wait_for_run(run.run_id, timeout=60)
    assert done is not None and done.status.terminal
    return done


def _timeline(path: Path) -> dict[tuple[str, str], float]:
    out = {}
    for line in path.read_text().splitlines():
        what, name, t = line.split()
        out[(what, name)] = float(t)
    return out


@pytest.fixture
def code(tmp_path: Path) -> Path:
    script(tmp_path / "code", "step.py", STEP)
    return tmp_path / "code"


def _diamond(code: Path, timeline: Path, **b_kwargs: Any) -> dict[str, Any]:
    up = "${{parent.jobs.a.outputs.out}}"
    return _job(
        code,
        timeline,
        {
            "a": _step(code, "a"),
            "b": _step(code, "b", inputs={"up_a": up}, sleep=0.8, **b_kwargs),
            "c": _step(code, "c", inputs={"up_a": up}, sleep=0.8),
            "d": _step(
                code,
                "d",
                inputs={
                    "up_b": "${{parent.jobs.b.outputs.out}}",
                    "up_c": "${{parent.jobs.c.outputs.out}}",
                },
            ),
        },
    )


@pytest.mark.slow
def test_steps_run_in_dependency_order_and_independent_ones_in_parallel(
    backend: LocalBackend, code: Path, tmp_path: Path
) -> None:
    timeline = tmp_path / "timeline"
    run = _run(backend, _diamond(code, timeline))
    assert run.status is JobStatus.COMPLETED, run.message
    t = _timeline(timeline)
    assert t[("end", "a")] <= min(t[("start", "b")], t[("start", "c")])
    assert max(t[("end", "b")], t[("end", "c")]) <= t[("start", "d")]
    # cpu has maxInstances 2: b and c overlap
    assert t[("start", "c")] < t[("end", "b")] and t[("start", "b")] < t[("end", "c")]
    assert [s.name for s in run.steps] == ["a", "b", "c", "d"]
    # outputs flowed along the bindings: d read b's and c's, which read a's
    d_out = next(s for s in run.steps if s.name == "d")
    assert d_out.status is JobStatus.COMPLETED
    value = (backend.runner.run_dir(run.run_id) / "d" / "outputs" / "out" / "value.txt").read_text()
    assert value == "abacd"


@pytest.mark.slow
def test_parallelism_is_capped_by_the_compute_max_instances(
    backend: LocalBackend, code: Path, tmp_path: Path
) -> None:
    backend.put_compute(ComputeInfo(WS, "cpu", 1))
    timeline = tmp_path / "timeline"
    run = _run(backend, _diamond(code, timeline))
    assert run.status is JobStatus.COMPLETED, run.message
    t = _timeline(timeline)
    first, second = sorted(("b", "c"), key=lambda n: t[("start", n)])
    assert t[("end", first)] <= t[("start", second)]


@pytest.mark.slow
def test_a_failing_step_fails_the_run_and_later_steps_never_start(
    backend: LocalBackend, code: Path, tmp_path: Path
) -> None:
    timeline = tmp_path / "timeline"
    run = _run(backend, _diamond(code, timeline, fail=3))
    assert run.status is JobStatus.FAILED
    assert "step b failed: exited with code 3: b: giving up on purpose" in run.message
    states = {s.name: s for s in run.steps}
    assert states["b"].exit_code == 3
    assert states["d"].status is JobStatus.NOT_STARTED
    assert ("start", "d") not in _timeline(timeline)
    assert "giving up on purpose" in Path(states["b"].log).read_text()


@pytest.mark.slow
def test_model_inputs_and_registered_outputs(
    backend: LocalBackend, code: Path, tmp_path: Path
) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "value.txt").write_text("BASE")
    backend.create_or_update_model_version(WS, ModelVersionSpec("base", "1", base))
    job = _job(
        code,
        tmp_path / "timeline",
        {
            "train": _step(
                code,
                "train",
                inputs={"up_model": "${{parent.inputs.base_model}}"},
                out="${{parent.outputs.trained}}",
            )
        },
        inputs={"base_model": {"type": "custom_model", "path": "azureml:base:1"}},
        outputs={"trained": {"type": "custom_model", "name": "trained", "version": "3"}},
    )
    run = _run(backend, job)
    assert run.status is JobStatus.COMPLETED, run.message
    assert run.outputs == {"trained": "trained:3"}
    version = backend.get_model_version(WS, "trained", "3")
    assert version is not None
    files = list(Path(version.location).rglob("value.txt"))
    assert [f.read_text() for f in files] == ["BASEtrain"]


@pytest.mark.slow
def test_a_missing_input_path_fails_the_run_by_name(
    backend: LocalBackend, code: Path, tmp_path: Path
) -> None:
    job = _job(
        code,
        tmp_path / "timeline",
        {"a": _step(code, "a", inputs={"up_data": "${{parent.inputs.data}}"})},
        inputs={"data": {"type": "uri_folder", "path": str(tmp_path / "nowhere")}},
    )
    run = _run(backend, job)
    assert run.status is JobStatus.FAILED
    assert run.message == f"inputs: input data: {tmp_path / 'nowhere'} does not exist"


def test_bindings_are_quoted_and_optional_blocks_dropped() -> None:
    command = "python t.py --data ${{inputs.data}} $[[--lr ${{inputs.lr}}]] --out ${{outputs.o}}"
    rendered = render_command(command, {"data": "/a b/c", "lr": None}, {"o": "/out"})
    assert rendered == "python t.py --data '/a b/c' --out /out"


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (
            lambda j: j["jobs"]["b"]["inputs"].update(x="${{parent.jobs.nope.outputs.out}}"),
            ("jobs", "b", "inputs", "x"),
            "there is no job 'nope'",
        ),
        (
            lambda j: j["jobs"]["a"]["inputs"].update(x="${{parent.jobs.d.outputs.out}}"),
            ("jobs",),
            "cycle: a -> d -> b -> a",
        ),
        (
            lambda j: j["jobs"]["a"].update(command="python x.py ${{inputs.missing}}"),
            ("jobs", "a", "command"),
            "the step declares no input 'missing'",
        ),
    ],
)
def test_spec_errors_name_the_field(
    code: Path, tmp_path: Path, change: Any, field: tuple[str, ...], message: str
) -> None:
    job = _diamond(code, tmp_path / "t")
    change(job)
    with pytest.raises(JobSpecError) as info:
        parse_job(job)
    assert info.value.field == field
    assert message in info.value.message


def test_submitting_an_invalid_job_is_refused(backend: LocalBackend) -> None:
    with pytest.raises(BackendError, match=r"job\.jobs"):
        backend.submit_pipeline_run(PipelineRunSpec(WS, "p", {"jobs": {}}, "fp", "change"))
