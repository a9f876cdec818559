"""Processes and pipeline inputs under hostile conditions: children never outlive `amlops`, even
a `kill -9` of it, and a step cannot change its inputs, least of all the repository's files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
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

from .conftest import WS, amlops, obj, processes_under, script, start_up, status_json
from .test_up_cli import _wait

pytestmark = pytest.mark.slow


def _gone_within(needle: Path, seconds: float) -> list[int]:
    """Poll until no process mentions ``needle``; what is still there at the deadline."""
    deadline = time.monotonic() + seconds
    while (left := processes_under(needle)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


# -- children die with amlops -----------------------------------------------------------------


def test_kill_9_of_up_takes_its_step_and_scoring_servers_with_it(
    platform: Path, tmp_path: Path
) -> None:
    pipeline = platform / "pipelines" / "finetune-support-slm.yaml"
    text = pipeline.read_text()
    assert "python finetune.py" in text
    pipeline.write_text(text.replace("python finetune.py", "sleep 300 && python finetune.py"))
    state = tmp_path / "state"
    up = start_up(platform, state)

    def step_and_server_running() -> bool:
        record = obj(status_json(tmp_path, state), "Pipeline", "finetune-support-slm")
        running = record["status"]["steps"]["finetune"]["state"] == "Running"
        return bool(running and processes_under(state / "deployments"))

    try:
        _wait(step_and_server_running, up, "the finetune step and a scoring server to run")
        children = set(processes_under(state)) - {up.pid}
        assert len(children) >= 2, children  # the step's shell and the blue scoring server
    finally:
        up.kill()  # SIGKILL: amlops runs no cleanup at all
        up.communicate(timeout=10)
    assert _gone_within(state, 10) == []


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and int(stat[stat.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def test_with_its_watchdog_killed_too_the_next_up_cleans_up_from_the_pid_files(
    platform: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    up = start_up(platform, state)
    try:
        _wait(lambda: bool(processes_under(state / "deployments")), up, "a scoring server")
        servers = set(processes_under(state / "deployments"))
        watchdogs = [
            pid
            for pid in _children_of(up.pid)
            if b"_watchdog_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(watchdogs) == 1, watchdogs
        os.kill(watchdogs[0], signal.SIGKILL)
    finally:
        up.kill()
        up.communicate(timeout=10)
    time.sleep(1)
    assert servers & set(processes_under(state)), "nothing was left to clean up"

    result = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # what this `up --once` started itself is stopped as it exits (SIGTERM, then SIGKILL
    # after a grace period): poll, on a loaded machine that takes a moment
    assert _gone_within(state, 10) == []


def test_a_child_group_dies_with_the_process_that_spawned_it(tmp_path: Path) -> None:
    """The mechanism alone: a process spawns a shell that forks a grandchild, then is killed
    with SIGKILL; the whole group goes, the grandchild too."""
    marker = tmp_path / "marker"
    sleeper = f"{sys.executable} -c 'import time; time.sleep(300)' {marker}"
    parent = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from amlops.backends.local import procs
        procs.spawn(
            ["/bin/sh", "-c", "{sleeper} & {sleeper}; wait"],
            cwd=Path({str(tmp_path)!r}),
            env=procs.base_environment(),
            log=Path({str(tmp_path / "log")!r}),
        )
        print("spawned", flush=True)
        time.sleep(300)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "spawned"
        deadline = time.monotonic() + 10
        while len(processes_under(marker)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(processes_under(marker)) >= 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert _gone_within(marker, 10) == []


# -- inputs are read-only, and never the repository's files ------------------------------------

STEP = """
    import os, pathlib, sys
    action, data, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    (out / "seen.txt").write_text(str(data))
    if action == "clean":  # tidy up the input after reading it
        for f in list(data.iterdir()):
            f.unlink()
    elif action == "append":
        with open(data / "train.csv", "a") as f:
            f.write("poisoned\\n")
    elif action == "read":
        (out / "copy.csv").write_text((data / "train.csv").read_text())
"""


def _run(backend: LocalBackend, job: dict[str, Any]) -> PipelineRun:
    run = backend.submit_pipeline_run(PipelineRunSpec(WS, "p", job, "fp", "change"))
    done = backend.wait_for_run(run.run_id, timeout=60)
    assert done is not None and done.status.terminal
    return done


def _repository(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    script(repo / "src", "step.py", STEP)
    data = repo / "jobs" / "data"
    data.mkdir(parents=True)
    (data / "train.csv").write_text("a,b\n1,2\n")
    return repo, data


def _job(repo: Path, data: Path, *steps: tuple[str, str, str]) -> dict[str, Any]:
    """Steps (name, action, input binding): each gets ``data`` or an earlier step's output."""
    return {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "inputs": {"data": {"type": "uri_folder", "path": str(data)}},
        "jobs": {
            name: {
                "type": "command",
                "code": str(repo / "src"),
                "command": f"python step.py {action} ${{{{inputs.data}}}} ${{{{outputs.out}}}}",
                "inputs": {"data": binding},
                "outputs": {"out": {"type": "uri_folder"}},
            }
            for name, action, binding in steps
        },
    }


@pytest.mark.parametrize("action", ["clean", "append"])
def test_a_step_that_changes_its_input_fails_and_the_repository_is_untouched(
    backend: LocalBackend, tmp_path: Path, action: str
) -> None:
    repo, data = _repository(tmp_path)
    run = _run(backend, _job(repo, data, ("prep", action, "${{parent.inputs.data}}")))
    assert (data / "train.csv").read_text() == "a,b\n1,2\n"
    assert run.status is JobStatus.FAILED
    prep = run.steps[0]
    assert prep.status is JobStatus.FAILED
    assert "read-only" in prep.message, prep.message
    seen = Path(backend.runner.run_dir(run.run_id), "prep", "outputs", "out", "seen.txt")
    assert seen.read_text() in prep.message  # names the path it was given
    assert not seen.read_text().startswith(str(repo))


def test_a_step_reads_a_copy_of_its_input_and_a_later_step_cannot_change_an_output(
    backend: LocalBackend, tmp_path: Path
) -> None:
    repo, data = _repository(tmp_path)
    job = _job(
        repo,
        data,
        ("prep", "read", "${{parent.inputs.data}}"),
        ("spoil", "append", "${{parent.jobs.prep.outputs.out}}"),
    )
    run = _run(backend, job)
    prep, spoil = run.steps
    assert prep.status is JobStatus.COMPLETED, prep.message
    given = Path(backend.runner.run_dir(run.run_id), "prep", "outputs", "out", "seen.txt")
    assert given.read_text().startswith(str(backend.runner.run_dir(run.run_id)))
    assert spoil.status is JobStatus.FAILED
    assert "read-only" in spoil.message, spoil.message
    # the run is over: its folders can be removed again without root
    for folder, _dirs, _files in os.walk(backend.runner.run_dir(run.run_id)):
        assert os.stat(folder).st_mode & 0o200, folder


def test_what_a_step_leaves_running_in_the_background_is_stopped_with_it(
    backend: LocalBackend, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    job = {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "jobs": {
            "a": {
                "type": "command",
                "command": f"python -c 'import time; time.sleep(300)' {marker} & echo started",
                "outputs": {},
            }
        },
    }
    run = _run(backend, job)
    assert run.status is JobStatus.COMPLETED, run.message
    assert _gone_within(marker, 10) == []


def test_files_named_by_manifests_are_contained_again_when_read(tmp_path: Path) -> None:
    """Defence in depth behind the reconcile core's check: a link planted in an input folder
    after validation, or a model path outside the repository, is refused when read."""
    repo, data = _repository(tmp_path)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the repository's")
    (data / "link.txt").symlink_to(outside)
    backend = LocalBackend(tmp_path / "state", source_root=repo)
    backend.start()
    try:
        backend.put_compute(ComputeInfo(WS, "cpu", 1))
        run = _run(backend, _job(repo, data, ("prep", "read", "${{parent.inputs.data}}")))
        assert run.status is JobStatus.FAILED
        assert "outside the source root" in run.message and "link.txt" in run.message
        with pytest.raises(BackendError, match="outside the source root"):
            backend.create_or_update_model_version(WS, ModelVersionSpec("m", "1", outside))
    finally:
        backend.close()
