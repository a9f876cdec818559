"""Bad input and faults: each ends in a clear condition message, never a traceback, and the
next `amlops up` converges without duplicate versions or leaked processes."""

from __future__ import annotations

import shutil
import signal
import socket
import time
from pathlib import Path

import pytest

from amlops.backends.local.backend import LocalBackend
from amlops.backends.local.catalog import AssetCatalog
from amlops.backends.local.db import Database
from amlops.core.manifests import load_tree
from amlops.reconcile.tree import TreeReconciler

from .conftest import amlops, obj, processes_under, ready, start_up, status_json
from .test_up_cli import _all_ready, _wait

pytestmark = pytest.mark.slow


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def _condition(record: dict, kind: str) -> dict:  # type: ignore[type-arg]
    return next(c for c in record["status"]["conditions"] if c["type"] == kind)


def test_init_raising_keeps_the_deployment_at_zero_percent_with_the_reason(
    platform: Path, tmp_path: Path
) -> None:
    broken = platform / "src" / "score-broken"
    shutil.copytree(platform / "src" / "score", broken)
    _edit(
        broken / "score.py",
        "def init():\n",
        "def init():\n    raise RuntimeError('no model here')\n",
    )
    endpoint = platform / "endpoints" / "support-online.yaml"
    text = endpoint.read_text()
    head, tail = text.split("- name: green")
    endpoint.write_text(
        head + "- name: green" + tail.replace("../src/score", "../src/score-broken")
    )

    state = tmp_path / "state"
    result = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    record = obj(status_json(tmp_path, state), "Endpoint", "support-online")
    stalled = _condition(record, "Stalled")
    assert stalled["reason"] == "DeploymentFailed"
    assert (
        "deployment green: the scoring server exited: init() raised RuntimeError: no model here"
        in (stalled["message"])
    )
    assert stalled["message"].endswith("serving from blue")
    assert record["status"]["traffic"] == {"blue": 100, "green": 0}
    assert processes_under(state) == []


def test_init_raising_in_every_deployment_names_each_with_its_reason_and_log(
    platform: Path, tmp_path: Path
) -> None:
    _edit(
        platform / "src" / "score" / "score.py",
        "def init():\n",
        "def init():\n    raise RuntimeError('no model here')\n",
    )
    state = tmp_path / "state"
    result = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 1
    record = obj(status_json(tmp_path, state), "Endpoint", "support-online")
    stalled = _condition(record, "Stalled")
    assert stalled["reason"] == "DeploymentFailed"
    logs = state / "deployments" / "mlw-platform-dev" / "support-online"
    for name in ("blue", "green"):
        assert (
            f"deployment {name}: the scoring server exited: init() raised RuntimeError: no model "
            f"here (log: {logs / name / 'server.log'})" in stalled["message"]
        )
    assert stalled["message"].endswith("nothing is serving")


def test_step_output_that_looks_like_markup_is_shown_verbatim(
    platform: Path, tmp_path: Path
) -> None:
    _edit(
        platform / "src" / "prep" / "prep.py",
        "def main():\n",
        "def main():\n    raise SystemExit('error: bad-[/x]-dir')\n",
    )
    state = tmp_path / "state"
    result = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "internal error" not in result.stderr
    assert "exited with code 1: error: bad-[/x]-dir" in result.stdout
    record = obj(status_json(tmp_path, state), "Pipeline", "finetune-support-slm")
    assert "error: bad-[/x]-dir" in _condition(record, "Stalled")["message"]


def test_a_failing_step_stalls_the_pipeline_and_the_fixed_spec_converges(
    platform: Path, tmp_path: Path
) -> None:
    pipeline = platform / "pipelines" / "finetune-support-slm.yaml"
    _edit(pipeline, "max_perplexity: 80", "max_perplexity: 5")
    state = tmp_path / "state"
    started = time.monotonic()
    result = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 1
    assert time.monotonic() - started < 60  # an endpoint waiting on the failed model gives up
    assert "Traceback" not in result.stdout + result.stderr
    status = status_json(tmp_path, state)
    record = obj(status, "Pipeline", "finetune-support-slm")
    message = _condition(record, "Stalled")["message"]
    assert "step evaluate failed: exited with code 1: perplexity" in message
    assert "is above --max-perplexity 5.0" in message
    assert record["status"]["steps"]["register"] == {"state": "NotStarted"}
    assert _condition(obj(status, "Endpoint", "support-online"), "Reconciling")["reason"] == (
        "DependencyNotReady"
    )

    _edit(pipeline, "max_perplexity: 5", "max_perplexity: 80")
    fixed = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    backend = LocalBackend(state)
    try:
        versions = [
            v.version for v in backend.list_model_versions("mlw-platform-dev", "support-slm")
        ]
    finally:
        backend.close()
    assert versions == ["1"]


def test_a_missing_model_path_is_named_with_file_and_line(platform: Path, tmp_path: Path) -> None:
    _edit(
        platform / "models" / "slm-base.yaml",
        "../assets/slm-base\n    description",
        "../assets/nope\n    description",
    )
    result = amlops("up", str(platform), "--once", "--state-dir", str(tmp_path / "s"), cwd=tmp_path)
    assert result.returncode == 1
    assert "slm-base.yaml:" in result.stderr and "nope" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_model_files_deleted_after_validation_stall_the_model(
    platform: Path, tmp_path: Path
) -> None:
    manifests = [m for m in load_tree([platform]).manifests if m.kind in ("Model", "Workspace")]
    shutil.rmtree(platform / "assets" / "slm-base")
    with LocalBackend(tmp_path / "state") as backend:
        backend.start()
        reports = TreeReconciler(backend, backend.objects).reconcile(manifests)
    model = next(r for r in reports if r.kind == "Model")
    assert model.outcome.reason == "ArtifactsNotFound"
    assert "models/slm-base.yaml:" in model.outcome.message
    assert "spec.model.path" in model.outcome.message and "does not exist" in model.outcome.message


def test_a_taken_endpoint_port_moves_the_endpoint(platform: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path, check=0)
    uri = obj(status_json(tmp_path, state), "Endpoint", "support-online")["status"]["scoringUri"]
    port = int(uri.split(":")[2].split("/")[0])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    record = obj(status_json(tmp_path, state), "Endpoint", "support-online")
    assert record["status"]["scoringUri"] != uri
    assert f"port {port} was taken" in _condition(record, "Ready")["message"]


def test_the_state_directory_deleted_while_running_is_rebuilt(
    platform: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    up = start_up(platform, state)
    try:
        _wait(lambda: _all_ready(tmp_path, state), up, "everything Ready")
        before = set(processes_under(state)) - {up.pid}
        assert before  # the scoring servers
        shutil.rmtree(state)
        time.sleep(1.5)
        _wait(lambda: _all_ready(tmp_path, state), up, "everything Ready again")
        assert not before & set(processes_under(state))  # the old servers were stopped
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=30)
    assert up.returncode == 0, out
    assert "was deleted while running" in out
    assert "Traceback" not in out
    assert processes_under(state) == []


def test_kill_9_mid_pipeline_then_up_converges_without_duplicates_or_leaks(
    platform: Path, tmp_path: Path
) -> None:
    _edit(
        platform / "pipelines" / "finetune-support-slm.yaml",
        "python finetune.py",
        "sleep 5 && python finetune.py",
    )
    state = tmp_path / "state"
    up = start_up(platform, state)

    def finetune_running() -> bool:
        record = obj(status_json(tmp_path, state), "Pipeline", "finetune-support-slm")
        return bool(record["status"]["steps"]["finetune"]["state"] == "Running")

    try:
        _wait(finetune_running, up, "the finetune step to run")
        children = set(processes_under(state)) - {up.pid}
        assert children  # the step (and the blue scoring server)
    finally:
        up.kill()  # SIGKILL: no cleanup at all
        up.communicate(timeout=10)

    # the next `up` finds the run marked running by a process that is gone (its children
    # are stopped by the watchdog, or by this `up` from their pid files if they were not)
    result = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not children & set(processes_under(state))
    assert processes_under(state) == []
    assert ready(obj(status_json(tmp_path, state), "Pipeline", "finetune-support-slm")) == "True"
    catalog = AssetCatalog(Database(state / "catalog.sqlite"))
    try:
        runs = catalog.list_runs("mlw-platform-dev", "finetune-support-slm")
        versions = catalog.list_model_versions("mlw-platform-dev", "support-slm", state)
    finally:
        catalog.db.close()
    assert [(r.status, r.interrupted, r.trigger) for r in runs] == [
        ("Canceled", True, "change"),
        ("Completed", False, "retry"),
    ]
    assert [v.version for v in versions] == ["1"]
