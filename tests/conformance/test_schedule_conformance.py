"""Pipeline schedules, as the reconciler relies on them: a backend that fires schedules itself
keeps what it is given and reads it back as given; one that does not keeps none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amlops.backends.base import Backend, BackendError, PipelineScheduleSpec
from tests.azure.pipeline_jobs import ENV, one_step
from tests.conformance.conftest import WS

pytestmark = pytest.mark.slow


def _spec(tmp_path: Path, **changes: Any) -> PipelineScheduleSpec:
    code = tmp_path / "src"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text("print('train')\n")
    job = one_step("train", code=str(code), command="python train.py", environment=ENV)
    values: dict[str, Any] = {
        "workspace": WS,
        "pipeline": "nightly",
        "cron": "0 3 * * *",
        "time_zone": "Europe/Paris",
        "enabled": True,
        "job": job,
        "fingerprint": "sha256:one",
        "tags": {"amlops-pipeline": "nightly", "amlops-trigger": "schedule"},
        **changes,
    }
    return PipelineScheduleSpec(**values)


def test_a_backend_without_native_schedules_keeps_none(backend: Backend, tmp_path: Path) -> None:
    if backend.native_schedules:
        pytest.skip("this backend fires schedules itself")
    assert backend.get_pipeline_schedule(WS, "nightly") is None
    with pytest.raises(BackendError):
        backend.create_or_update_pipeline_schedule(_spec(tmp_path))
    backend.disable_pipeline_schedule(WS, "nightly")  # nothing to disable or delete
    backend.delete_pipeline_schedule(WS, "nightly")


def test_a_native_schedule_reads_back_as_given_until_deleted(
    backend: Backend, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if not backend.native_schedules:
        pytest.skip("the reconciler is this backend's timer")
    request.getfixturevalue("azure_env").fake.jobs.add_compute("cpu")
    assert backend.get_pipeline_schedule(WS, "nightly") is None
    backend.create_or_update_pipeline_schedule(_spec(tmp_path))
    got = backend.get_pipeline_schedule(WS, "nightly")
    assert got is not None
    assert (got.cron, got.time_zone, got.enabled, got.fingerprint) == (
        "0 3 * * *",
        "Europe/Paris",
        True,
        "sha256:one",
    )

    backend.create_or_update_pipeline_schedule(
        _spec(tmp_path, cron="30 4 * * 1", fingerprint="sha256:two")
    )
    changed = backend.get_pipeline_schedule(WS, "nightly")
    assert changed is not None
    assert (changed.cron, changed.fingerprint) == ("30 4 * * 1", "sha256:two")

    backend.disable_pipeline_schedule(WS, "nightly")
    disabled = backend.get_pipeline_schedule(WS, "nightly")
    assert disabled is not None and disabled.enabled is False

    backend.delete_pipeline_schedule(WS, "nightly")
    assert backend.get_pipeline_schedule(WS, "nightly") is None
    backend.delete_pipeline_schedule(WS, "nightly")  # gone already: nothing to do
