"""The pure reconcilers: decisions from (desired, observed), no backend involved."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from amlops.backends.base import (
    ComputeInfo,
    DeploymentState,
    EndpointState,
    JobStatus,
    ModelVersion,
    PipelineRun,
    ProvisioningState,
)
from amlops.core.source import FieldPath, Position
from amlops.kinds.endpoint import parse as parse_endpoint
from amlops.reconcile import endpoint, model, pipeline
from amlops.reconcile.conditions import Phase
from amlops.reconcile.endpoint import CreateOrUpdateDeployment, CreateOrUpdateEndpoint
from amlops.reconcile.inputs import Inputs, Source
from amlops.reconcile.model import RegisterModel
from amlops.reconcile.pipeline import SubmitPipelineRun

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday


class _Line7:
    """Every field written on line 7 of m.yaml."""

    def locate(self, path: FieldPath, /) -> Position:
        return Position("m.yaml", 7, 1)


SOURCE = Source(_Line7(), lambda path, value: Path("/repo") / value)


def _version(name: str, version: str, digest: str = "sha256:aa") -> ModelVersion:
    return ModelVersion(
        "ws", name, version, f"id-{name}", digest, "custom_model", "", {}, "t", "/m"
    )


# -- Model ------------------------------------------------------------------------------------


def _model(version: str | None = "1") -> model.ModelDesired:
    spec: dict[str, Any] = {"model": {"name": "m", "path": "assets/m"}}
    if version:
        spec["model"]["version"] = version
    return model.desired(Inputs("ws", "m", spec, 1, SOURCE))


def test_model_missing_files_stall_naming_the_field() -> None:
    result = model.reconcile_model(_model(), model.ModelObserved(None, None), None, NOW)
    assert result.outcome.phase is Phase.STALLED
    assert result.outcome.message.startswith("m.yaml:7 spec.model.path: /repo/assets/m does not")
    assert result.actions == ()


def test_model_is_registered_once() -> None:
    first = model.reconcile_model(_model(), model.ModelObserved("sha256:aa", None), None, NOW)
    assert [type(a) for a in first.actions] == [RegisterModel]
    done = model.reconcile_model(
        _model(), model.ModelObserved("sha256:aa", _version("m", "1")), None, NOW
    )
    assert done.outcome.phase is Phase.READY and done.actions == ()


def test_changed_files_under_a_pinned_version_are_reported_not_registered() -> None:
    observed = model.ModelObserved("sha256:bb", _version("m", "1"))
    result = model.reconcile_model(_model("1"), observed, None, NOW)
    assert result.actions == ()
    assert result.outcome.reason == "NewFilesNotRegistered"
    assert "bump spec.model.version" in result.outcome.message
    unpinned = model.reconcile_model(_model(None), observed, None, NOW)
    assert [type(a) for a in unpinned.actions] == [RegisterModel]


# -- Pipeline ---------------------------------------------------------------------------------


def _pipeline(**spec: Any) -> pipeline.PipelineDesired:
    job = {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "inputs": {"base": {"type": "custom_model", "path": "azureml:base:1"}},
        "jobs": {"train": {"command": "python t.py", "code": "src", "compute": "azureml:gpu"}},
    }
    requested = spec.pop("requested", None)
    return pipeline.desired(Inputs("ws", "p", {"job": job, **spec}, 1, SOURCE, {}, requested))


def _observed(
    run: PipelineRun | None = None, computes: tuple[str, ...] = ("gpu",), base: bool = True
) -> pipeline.PipelineObserved:
    return pipeline.PipelineObserved(
        computes={"gpu": ComputeInfo("ws", "gpu", 2) if "gpu" in computes else None},
        models={"base": _version("base", "1") if base else None},
        local_digests={"spec.job.jobs.train.code": "sha256:code"},
        latest_run=run,
    )


def _run(desired: pipeline.PipelineDesired, status: JobStatus, **kw: Any) -> PipelineRun:
    fp = pipeline.fingerprint(desired, _observed())
    return PipelineRun("r1", "ws", "p", kw.pop("fp", fp), "change", status, (), "t", **kw)


def test_pipeline_waits_for_its_compute_and_models() -> None:
    result = pipeline.reconcile_pipeline(_pipeline(), _observed(computes=(), base=False), None, NOW)
    assert result.outcome.phase is Phase.RECONCILING
    assert result.outcome.reason == "DependencyNotReady"
    assert "ComputeCluster gpu" in result.outcome.message
    assert "model base:1" in result.outcome.message
    assert result.actions == ()


def test_pipeline_runs_when_new_and_not_again() -> None:
    desired = _pipeline()
    first = pipeline.reconcile_pipeline(desired, _observed(), None, NOW)
    assert [type(a) for a in first.actions] == [SubmitPipelineRun]
    assert first.actions[0].spec.job["jobs"]["train"]["code"] == "/repo/src"  # type: ignore[attr-defined]
    done = pipeline.reconcile_pipeline(
        desired, _observed(_run(desired, JobStatus.COMPLETED)), first.status, NOW
    )
    assert done.actions == () and done.outcome.phase is Phase.READY


def test_pipeline_runs_again_when_code_changes() -> None:
    desired = _pipeline()
    old = _run(desired, JobStatus.COMPLETED, fp="sha256:old")
    result = pipeline.reconcile_pipeline(desired, _observed(old), None, NOW)
    assert result.actions[0].spec.trigger == "change"  # type: ignore[attr-defined]


def test_a_failed_run_stalls_until_asked_again() -> None:
    desired = _pipeline()
    failed = _run(desired, JobStatus.FAILED, message="step train failed: exited with code 2")
    result = pipeline.reconcile_pipeline(desired, _observed(failed), None, NOW)
    assert result.outcome.phase is Phase.STALLED
    assert "step train failed: exited with code 2" in result.outcome.message
    assert result.actions == ()
    asked = _pipeline(requested="2026-03-02T12:00:00")
    again = pipeline.reconcile_pipeline(asked, _observed(failed), result.status, NOW)
    assert again.actions[0].spec.trigger == "manual"  # type: ignore[attr-defined]
    handled = pipeline.reconcile_pipeline(
        asked, _observed(_run(asked, JobStatus.COMPLETED)), again.status, NOW
    )
    assert handled.actions == ()


def test_an_interrupted_run_is_retried() -> None:
    desired = _pipeline()
    interrupted = _run(desired, JobStatus.CANCELED, interrupted=True)
    result = pipeline.reconcile_pipeline(desired, _observed(interrupted), None, NOW)
    assert result.actions[0].spec.trigger == "retry"  # type: ignore[attr-defined]


def test_the_schedule_fires_when_due() -> None:
    desired = _pipeline(schedule={"cron": "0 3 * * 1", "timeZone": "UTC"})
    done = _run(desired, JobStatus.COMPLETED)
    first = pipeline.reconcile_pipeline(desired, _observed(done), None, NOW)
    assert first.actions == ()
    assert first.status["nextScheduleTime"] == "2026-03-09T03:00:00Z"
    later = NOW + timedelta(days=7)
    due = pipeline.reconcile_pipeline(desired, _observed(done), first.status, later)
    assert due.actions[0].spec.trigger == "schedule"  # type: ignore[attr-defined]
    assert due.status["nextScheduleTime"] == "2026-03-16T03:00:00Z"


def test_a_bad_cron_stalls_naming_the_field() -> None:
    desired = _pipeline(schedule={"cron": "every monday"})
    result = pipeline.reconcile_pipeline(desired, _observed(), None, NOW)
    assert result.outcome.phase is Phase.STALLED
    assert "m.yaml:7 spec.schedule" in result.outcome.message


# -- Endpoint ---------------------------------------------------------------------------------


def _endpoint(traffic: dict[str, int] | None = None) -> endpoint.EndpointDesired:
    deployment = {
        "model": "azureml:m:1",
        "code_configuration": {"code": "score", "scoring_script": "score.py"},
    }
    spec = {
        "endpoint": {"name": "e", "auth_mode": "key", "traffic": traffic or {"a": 90, "b": 10}},
        "deployments": [{"name": "a", **deployment}, {"name": "b", **deployment}],
    }
    return endpoint.desired(Inputs("ws", "e", spec, 1, SOURCE))


def _deployed(
    desired: endpoint.EndpointDesired, states: dict[str, ProvisioningState]
) -> dict[str, DeploymentState]:
    out = {}
    for dep in desired.deployments:
        fp = endpoint.deployment_fingerprint(dep, "sha256:c", _version("m", "1"))
        if dep.name in states:
            out[dep.name] = DeploymentState(
                "ws", "e", dep.name, "m:1", states[dep.name], fp, message="boom"
            )
    return out


def _ep(traffic: dict[str, int]) -> EndpointState:
    return EndpointState(
        "ws", "e", "http://x/score", "key", ProvisioningState.SUCCEEDED, traffic, {}
    )


def test_endpoint_waits_for_its_model() -> None:
    desired = _endpoint()
    observed = endpoint.EndpointObserved(
        None, {}, {"a": None, "b": None}, {"a": "sha256:c", "b": "sha256:c"}
    )
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    assert result.outcome.reason == "DependencyNotReady"
    assert "model m:1" in result.outcome.message
    assert [type(a) for a in result.actions] == [CreateOrUpdateEndpoint]


def test_a_failed_deployment_keeps_zero_traffic_and_stalls_with_the_reason() -> None:
    desired = _endpoint()
    deployed = _deployed(desired, {"a": ProvisioningState.FAILED, "b": ProvisioningState.SUCCEEDED})
    models = {"a": _version("m", "1"), "b": _version("m", "1")}
    digests = {"a": "sha256:c", "b": "sha256:c"}
    observed = endpoint.EndpointObserved(_ep({"a": 90, "b": 10}), deployed, models, digests)
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    assert result.outcome.phase is Phase.STALLED
    assert result.outcome.message == "deployment a: boom; serving from b"
    (action,) = result.actions
    assert isinstance(action, CreateOrUpdateEndpoint)
    assert action.spec.traffic == {"a": 0, "b": 100}
    assert result.status["traffic"] == {"a": 0, "b": 100}


def test_the_endpoint_stalls_naming_every_failed_deployment_once_none_is_starting() -> None:
    desired = _endpoint()
    models = {"a": _version("m", "1"), "b": _version("m", "1")}
    digests = {"a": "sha256:c", "b": "sha256:c"}

    # a failed while b is still starting: b may fail too, so it is too early to stall
    deployed = _deployed(desired, {"a": ProvisioningState.FAILED, "b": ProvisioningState.CREATING})
    observed = endpoint.EndpointObserved(_ep({"a": 0, "b": 0}), deployed, models, digests)
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    assert result.outcome.phase is Phase.RECONCILING
    assert result.outcome.message == "deployment a: boom; deployment b: boom"

    deployed = _deployed(desired, {"a": ProvisioningState.FAILED, "b": ProvisioningState.FAILED})
    observed = endpoint.EndpointObserved(_ep({"a": 0, "b": 0}), deployed, models, digests)
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    assert result.outcome.phase is Phase.STALLED
    assert result.outcome.message == "deployment a: boom; deployment b: boom; nothing is serving"


def test_a_ready_endpoint_takes_no_action() -> None:
    desired = _endpoint()
    deployed = _deployed(
        desired, {"a": ProvisioningState.SUCCEEDED, "b": ProvisioningState.SUCCEEDED}
    )
    models = {"a": _version("m", "1"), "b": _version("m", "1")}
    observed = endpoint.EndpointObserved(
        _ep({"a": 90, "b": 10}), deployed, models, {"a": "sha256:c", "b": "sha256:c"}
    )
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    assert result.actions == ()
    assert result.outcome.message == "serving at http://x/score: a 90%, b 10%"


def test_a_stopped_or_changed_deployment_is_redeployed() -> None:
    desired = _endpoint()
    deployed = _deployed(
        desired, {"a": ProvisioningState.STOPPED, "b": ProvisioningState.SUCCEEDED}
    )
    models = {"a": _version("m", "1"), "b": _version("m", "1", digest="sha256:new")}
    observed = endpoint.EndpointObserved(
        _ep({"a": 90, "b": 10}), deployed, models, {"a": "sha256:c", "b": "sha256:c"}
    )
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    redeployed = [a.spec.name for a in result.actions if isinstance(a, CreateOrUpdateDeployment)]
    assert redeployed == ["a", "b"]


def test_a_new_commit_alone_changes_nothing_and_a_restart_keeps_the_first_tags() -> None:
    first = {"amlops-commit": "c1", "amlops-manifest": "e.yaml"}
    desired = replace(_endpoint(), tags={"amlops-commit": "c2", "amlops-manifest": "e.yaml"})
    deployed = {
        name: replace(state, tags=first)
        for name, state in _deployed(
            desired, {"a": ProvisioningState.SUCCEEDED, "b": ProvisioningState.STOPPED}
        ).items()
    }
    models = {"a": _version("m", "1"), "b": _version("m", "1", digest="sha256:new")}
    digests = {"a": "sha256:c", "b": "sha256:c"}
    observed = endpoint.EndpointObserved(
        replace(_ep({"a": 90, "b": 10}), tags=first), deployed, models, digests
    )
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    # b's model changed: a new fingerprint is a new deployment, made by the current commit
    (b,) = [a.spec for a in result.actions if isinstance(a, CreateOrUpdateDeployment)]
    assert b.name == "b" and b.tags == desired.tags
    # the endpoint is re-sent for its traffic (b's share moves to a) with its first tags
    (ep,) = [a.spec for a in result.actions if isinstance(a, CreateOrUpdateEndpoint)]
    assert ep.tags == first

    # b stopped but unchanged: started again under the tags of the commit that produced it
    models["b"] = _version("m", "1")
    deployed = {
        name: replace(state, tags=first)
        for name, state in _deployed(
            desired, {"a": ProvisioningState.SUCCEEDED, "b": ProvisioningState.STOPPED}
        ).items()
    }
    observed = endpoint.EndpointObserved(
        replace(_ep({"a": 100, "b": 0}), tags=first), deployed, models, digests
    )
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    (b,) = [a.spec for a in result.actions if isinstance(a, CreateOrUpdateDeployment)]
    assert b.tags == first


def test_an_endpoint_missing_provenance_tags_gets_them_back_keeping_those_it_kept() -> None:
    """Tags stripped from the endpoint alone (traffic as wanted) are drift; a new commit is not."""
    tags = {"amlops-commit": "c2", "amlops-manifest": "e.yaml", "amlops-object": "ns/e"}
    desired = replace(_endpoint(), tags=tags)
    deployed = _deployed(
        desired, {"a": ProvisioningState.SUCCEEDED, "b": ProvisioningState.SUCCEEDED}
    )
    models = {"a": _version("m", "1"), "b": _version("m", "1")}
    digests = {"a": "sha256:c", "b": "sha256:c"}

    def run(current: dict[str, str]) -> list[CreateOrUpdateEndpoint]:
        observed = endpoint.EndpointObserved(
            replace(_ep({"a": 90, "b": 10}), tags=current), deployed, models, digests
        )
        result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
        return [a for a in result.actions if isinstance(a, CreateOrUpdateEndpoint)]

    # every tag stripped: written again with the current provenance (traffic unchanged)
    (action,) = run({})
    assert action.spec.tags == tags and action.spec.traffic == {"a": 90, "b": 10}
    # one stripped: the ones it kept keep the values it was made with (commit c1)
    kept = {"amlops-commit": "c1", "amlops-manifest": "e.yaml", "team": "search"}
    (action,) = run(kept)
    assert action.spec.tags == {**kept, "amlops-object": "ns/e"}
    # all there, made by an older commit: nothing to do
    assert run({**kept, "amlops-object": "ns/e"}) == []


def test_traffic_to_an_unknown_deployment_is_a_spec_error() -> None:
    desired = _endpoint({"a": 50, "purple": 50})
    observed = endpoint.EndpointObserved(None, {}, {}, {})
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    assert result.outcome.phase is Phase.STALLED
    assert "m.yaml:7 spec.endpoint.traffic.purple: there is no deployment 'purple'" in (
        result.outcome.message
    )


def test_a_deployment_without_a_model_stalls_the_endpoint_naming_the_field() -> None:
    spec = {
        "endpoint": {"name": "e", "auth_mode": "key", "traffic": {"a": 50, "b": 50}},
        "deployments": [
            {"name": "a", "code_configuration": {"code": "score", "scoring_script": "s.py"}},
            {"name": "b", "model": "azureml:m:1", "code_configuration": {"code": "score"}},
        ],
    }
    desired = endpoint.desired(Inputs("ws", "e", spec, 1, SOURCE))
    # only what can be deployed is desired (and observed); the spec error says why
    assert [d.name for d in desired.deployments] == ["b"]
    # "a" is live (deployed by an earlier generation): stalled, it is neither deleted nor changed
    live = {"a": DeploymentState("ws", "e", "a", "m:1", ProvisioningState.SUCCEEDED, "fp")}
    observed = endpoint.EndpointObserved(
        _ep({"a": 50, "b": 50}), live, {"b": _version("m", "1")}, {"b": "sha256:c"}
    )
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    assert (result.outcome.phase, result.outcome.reason) == (Phase.STALLED, "InvalidSpec")
    assert "m.yaml:7 spec.deployments[0].model:" in result.outcome.message
    assert result.actions == ()
    # the reconciler does not rely on the parse for it: without its finding, it is a problem too
    parsed, _ = parse_endpoint(spec, SOURCE.locator)
    assert parsed is not None
    bare = endpoint.desired_endpoint(Inputs("ws", "e", spec, 1, SOURCE), parsed, findings=())
    assert [d.name for d in bare.deployments] == ["b"]
    assert any("spec.deployments[0].model" in p for p in bare.problems)


def test_schedule_times_are_kept_in_utc_whatever_the_time_zone() -> None:
    desired = _pipeline(schedule={"cron": "0 3 * * 1", "timeZone": "Europe/Berlin"})
    done = _run(desired, JobStatus.COMPLETED)
    result = pipeline.reconcile_pipeline(desired, _observed(done), None, NOW)
    assert result.status["nextScheduleTime"] == "2026-03-09T02:00:00Z"  # 03:00 CET


def _inline_endpoint(model: dict[str, str]) -> endpoint.EndpointDesired:
    spec = {
        "endpoint": {"name": "e", "auth_mode": "key", "traffic": {"a": 100}},
        "deployments": [
            {
                "name": "a",
                "model": model,
                "code_configuration": {"code": "score", "scoring_script": "score.py"},
            }
        ],
    }
    return endpoint.desired(Inputs("ws", "e", spec, 1, SOURCE))


def _inline_observed(
    desired: endpoint.EndpointDesired,
    registered: ModelVersion | None,
    local: str | None,
    state: ProvisioningState | None = None,
) -> endpoint.EndpointObserved:
    deployed = {}
    if state is not None and registered is not None:
        (dep,) = desired.deployments
        fp = endpoint.deployment_fingerprint(dep, "sha256:c", registered)
        deployed["a"] = DeploymentState("ws", "e", "a", registered.name, state, fp)
    return endpoint.EndpointObserved(
        _ep({"a": 100}), deployed, {"a": registered}, {"a": "sha256:c"}, {"a": local}
    )


def test_an_inline_model_is_registered_under_the_deployments_name_before_it_is_deployed() -> None:
    desired = _inline_endpoint({"path": "model"})
    (dep,) = desired.deployments
    assert dep.register is not None
    assert (dep.register.name, dep.register.version) == ("e-a", None)
    assert dep.register.path == Path("/repo/model")
    result = endpoint.reconcile_endpoint(
        desired, _inline_observed(desired, None, "sha256:m"), None, NOW
    )
    assert [type(a) for a in result.actions] == [CreateOrUpdateEndpoint, RegisterModel]
    assert result.outcome.phase is Phase.RECONCILING
    assert "registering model e-a:next" in result.outcome.message


def test_an_inline_model_with_changed_files_keeps_serving_while_its_next_version_registers() -> (
    None
):
    desired = _inline_endpoint({"name": "mine", "path": "model"})
    served = _version("mine", "1", digest="sha256:old")
    observed = _inline_observed(desired, served, "sha256:new", ProvisioningState.SUCCEEDED)
    result = endpoint.reconcile_endpoint(desired, observed, None, NOW)
    assert [type(a) for a in result.actions] == [RegisterModel]
    assert result.status["traffic"] == {"a": 100}

    # registered: the deployment moves to it; unchanged files then take no action
    fresh = _version("mine", "2", digest="sha256:new")
    result = endpoint.reconcile_endpoint(
        desired, _inline_observed(desired, fresh, "sha256:new"), None, NOW
    )
    assert [type(a) for a in result.actions] == [CreateOrUpdateEndpoint, CreateOrUpdateDeployment]
    observed = _inline_observed(desired, fresh, "sha256:new", ProvisioningState.SUCCEEDED)
    assert endpoint.reconcile_endpoint(desired, observed, None, NOW).actions == ()


def test_an_inline_model_whose_files_are_missing_stalls_naming_the_path() -> None:
    desired = _inline_endpoint({"path": "gone"})
    result = endpoint.reconcile_endpoint(desired, _inline_observed(desired, None, None), None, NOW)
    assert result.outcome.phase is Phase.STALLED
    assert "m.yaml:7 spec.deployments[0].model.path: /repo/gone does not exist" in (
        result.outcome.message
    )
