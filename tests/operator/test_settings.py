"""Settings from the environment and the Kopf settings they turn into - pure."""

from __future__ import annotations

import os
import subprocess
import sys

import kopf
import pytest

from amlops.handlers.options import FINALIZER, Settings, SettingsError
from amlops.handlers.settings import configure_kopf


def test_environment_overrides_defaults_and_bad_values_name_the_variable() -> None:
    s = Settings.from_env({"AMLOPS_DRIFT_INTERVAL": "60", "AMLOPS_WORKERS": "3", "OTHER": "x"})
    assert (s.drift_interval_s, s.workers, s.backend) == (60.0, 3, "local")
    with pytest.raises(SettingsError, match="AMLOPS_WORKERS"):
        Settings.from_env({"AMLOPS_WORKERS": "many"})
    with pytest.raises(SettingsError, match="AMLOPS_BACKEND"):
        Settings.from_env({"AMLOPS_BACKEND": "nosuch"})
    assert Settings.from_env({"AMLOPS_BACKEND": "azureml"}).backend == "azureml"
    with pytest.raises(SettingsError, match="AMLOPS_RETRY_MAX"):
        Settings.from_env({"AMLOPS_RETRY_MAX": "0"})


def test_retry_delay_doubles_from_the_hint_and_is_capped() -> None:
    s = Settings(retry_base_s=5, retry_max_s=60)
    assert [s.retry_delay(0.5, n) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert [s.retry_delay(None, n) for n in range(5)] == [5, 10, 20, 40, 60]
    assert s.retry_delay(1.0, 10_000) == 60


def test_drift_checks_are_spread_over_the_interval() -> None:
    s = Settings(drift_interval_s=300)
    delays = [s.drift_delay() for _ in range(200)]
    assert all(0 <= d <= 300 for d in delays) and max(delays) - min(delays) > 100
    options = s.timer_options()
    assert options["interval"] == 300 and options["idle"] == s.drift_idle_s
    assert 0 <= options["initial_delay"](body={}, name="x") <= 300  # Kopf passes kwargs


def test_kopf_keeps_its_bookkeeping_in_status_so_one_patch_carries_a_reconcile() -> None:
    k = kopf.OperatorSettings()
    configure_kopf(k, Settings(workers=5))
    assert isinstance(k.persistence.progress_storage, kopf.StatusProgressStorage)
    assert isinstance(k.persistence.diffbase_storage, kopf.StatusDiffBaseStorage)
    assert k.persistence.progress_storage.field == ("status", "kopf", "progress")
    assert k.persistence.finalizer == FINALIZER
    assert k.posting.loggers is False  # log lines never become Events
    assert k.execution.max_workers == 5
    assert k.peering.standalone is True
    assert isinstance(k.watching.server_timeout, int)


def test_peering_with_random_priorities_when_named() -> None:
    a, b = kopf.OperatorSettings(), kopf.OperatorSettings()
    configure_kopf(a, Settings(peering="amlops"))
    configure_kopf(b, Settings(peering="amlops"))
    assert a.peering.standalone is False and a.peering.mandatory and a.peering.clusterwide
    assert a.peering.name == "amlops"
    assert a.peering.priority != b.peering.priority  # equal priorities would freeze both


@pytest.mark.slow
def test_amlops_operator_refuses_bad_settings_naming_the_variable() -> None:
    env = {**os.environ, "AMLOPS_WORKERS": "several", "KUBECONFIG": "/nonexistent"}
    main = "import sys; from amlops.cli import main; sys.exit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", main, "operator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "AMLOPS_WORKERS='several'" in proc.stderr
