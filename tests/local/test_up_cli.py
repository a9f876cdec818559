"""`amlops up` end to end on the example platform: the demo, resuming, drift, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import amlops, obj, processes_under, ready, start_up, status_json

pytestmark = pytest.mark.slow


def _wait(
    predicate: Callable[[], bool],
    up: subprocess.Popen[str],
    what: str,
    timeout: float = 60,
) -> None:
    """Poll until ``predicate()``; fail at once, with its output, if ``up`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if up.poll() is not None:
            raise AssertionError(f"amlops up exited ({up.returncode}): {up.communicate()[0]}")
        try:
            if predicate():
                return
        except (AssertionError, KeyError, StopIteration, json.JSONDecodeError):
            pass  # not there yet (or the state directory is being rebuilt)
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


# the example's catalog fine-tuning pipeline: only Azure ML runs it
CATALOG_PIPELINE = "finetune-support-chat"


def _all_ready(cwd: Path, state: Path) -> bool:
    """Every object Ready, but the catalog pipeline, which the local backend cannot run."""
    status = status_json(cwd, state)
    runnable = [o for o in status["objects"] if o["name"] != CATALOG_PIPELINE]
    return len(runnable) == 4 and all(ready(o) == "True" for o in runnable)


def test_the_demo_prints_a_real_prediction_and_a_second_up_resumes(
    platform: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = amlops(
        "up", str(platform), "--once", "--smoke", "--state-dir", str(state), cwd=tmp_path
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "smoke support-online: 200 from deployment blue" in first.stdout
    assert '"completion": "account."' in first.stdout
    assert "What to try next" in first.stdout
    assert "Traceback" not in first.stdout + first.stderr
    # only Azure ML can run the catalog pipeline: listed, and no failure of the exit status
    catalog = obj(status_json(tmp_path, state), "Pipeline", CATALOG_PIPELINE)["status"]
    refused = next(c for c in catalog["conditions"] if c["type"] == "Ready")
    assert (refused["status"], refused["reason"]) == ("False", "UnsupportedByBackend")
    assert "cannot run, left out of the exit status: Pipeline/finetune-support-chat" in " ".join(
        first.stderr.split()
    )
    assert f"run {CATALOG_PIPELINE}" not in first.stdout  # no "retrain now" hint for it
    run_id = obj(status_json(tmp_path, state), "Pipeline", "finetune-support-slm")["status"][
        "runId"
    ]

    again = amlops("up", str(platform), "--once", "--state-dir", str(state), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    status = status_json(tmp_path, state)
    assert obj(status, "Pipeline", "finetune-support-slm")["status"]["runId"] == run_id
    assert all(o["generation"] == 1 for o in status["objects"])
    assert processes_under(state) == []

    # with nobody serving, invoke says so instead of failing with a traceback
    sample = platform / "src" / "score" / "sample-request.json"
    offline = amlops(
        "invoke", "support-online", "--data", str(sample), "--state-dir", str(state), cwd=tmp_path
    )
    assert offline.returncode == 1
    assert "is `amlops up` running?" in offline.stderr and "Traceback" not in offline.stderr

    # `amlops run` without `up`: runs the pipeline itself, from the manifests `up` last used
    rerun = amlops("run", "finetune-support-slm", "--state-dir", str(state), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    status = status_json(tmp_path, state)
    assert obj(status, "Pipeline", "finetune-support-slm")["status"]["runId"] != run_id
    assert processes_under(state) == []


def test_invoke_run_drift_and_ctrl_c_while_up_runs(platform: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    up = start_up(platform, state)
    try:
        _wait(lambda: _all_ready(tmp_path, state), up, "everything Ready")
        sample = platform / "src" / "score" / "sample-request.json"
        answer = amlops(
            "invoke",
            "support-online",
            "--data",
            str(sample),
            "--state-dir",
            str(state),
            cwd=tmp_path,
            check=0,
        )
        assert json.loads(answer.stdout)["text"].startswith("i cannot log in to my")
        green = amlops(
            "invoke",
            "support-online",
            "--data",
            str(sample),
            "--deployment",
            "green",
            "--state-dir",
            str(state),
            cwd=tmp_path,
            check=0,
        )
        assert "from deployment green" in green.stderr

        before = obj(status_json(tmp_path, state), "Pipeline", "finetune-support-slm")
        rerun = amlops("run", "finetune-support-slm", "--state-dir", str(state), cwd=tmp_path)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        after = obj(status_json(tmp_path, state), "Pipeline", "finetune-support-slm")
        assert after["status"]["runId"] != before["status"]["runId"]

        # drift: a scoring server killed by hand is started again
        pid_file = state / "deployments/mlw-platform-dev/support-online/green/server.pid"
        old = json.loads(pid_file.read_text())["pid"]
        os.killpg(old, signal.SIGKILL)
        _wait(
            lambda: json.loads(pid_file.read_text())["pid"] != old and _all_ready(tmp_path, state),
            up,
            "green to be restarted",
        )
        amlops(
            "invoke",
            "support-online",
            "--data",
            str(sample),
            "--deployment",
            "green",
            "--state-dir",
            str(state),
            cwd=tmp_path,
            check=0,
        )
    finally:
        up.send_signal(signal.SIGINT)
        out, _ = up.communicate(timeout=30)
    assert up.returncode == 0, out
    assert "Traceback" not in out
    assert processes_under(state) == []
    assert "is not running" in amlops("status", "--state-dir", str(state), cwd=tmp_path).stdout
