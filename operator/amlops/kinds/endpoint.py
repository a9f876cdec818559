"""Endpoint: an Azure ML online endpoint, its deployments, and the traffic split between them.

Azure ML's traffic rules live here once: the policy engine reports them on a pull request
(``endpoint.traffic`` / ``endpoint.mirror``) and ``parse`` reports them to the endpoint
reconciler, which refuses a spec that breaks them, both with these messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amlops.core.assets import ModelRef, parse_model_ref
from amlops.core.findings import Finding
from amlops.core.locator import Locator
from amlops.core.source import FieldPath
from amlops.kinds import base
from amlops.kinds.model import REMOTE_PATH, remote_path

if TYPE_CHECKING:
    from amlops.core.manifests import Manifest

MAX_MIRROR_PERCENT = 50  # Azure ML's limit for mirrored (shadow) traffic
_ENDPOINT: FieldPath = ("spec", "endpoint")


@dataclass(frozen=True)
class TrafficProblem:
    """One broken traffic rule: ``split`` is "traffic" (live) or "mirror_traffic"."""

    split: str
    path: FieldPath
    message: str


def traffic_problems(
    traffic: Mapping[str, Any], mirror: Mapping[str, Any], deployments: set[str]
) -> Iterator[TrafficProblem]:
    """Azure ML's rules for an endpoint's live and mirrored traffic, in the order written."""
    declared = ", ".join(sorted(deployments)) or "none"
    for name in traffic:
        if name not in deployments:
            yield TrafficProblem(
                "traffic",
                (*_ENDPOINT, "traffic", name),
                f"there is no deployment {name!r} (declared: {declared}); add it to "
                "spec.deployments or remove it here",
            )
    total = sum(v for v in traffic.values() if type(v) is int)  # bool is an int subclass
    if total not in (0, 100):
        yield TrafficProblem(
            "traffic",
            (*_ENDPOINT, "traffic"),
            f"the traffic adds up to {total}%; make it 100 (or 0 while no deployment is ready)",
        )
    if len([v for v in mirror.values() if v]) > 1:
        yield TrafficProblem(
            "mirror_traffic",
            (*_ENDPOINT, "mirror_traffic"),
            "only one deployment can receive mirrored traffic",
        )
    for name, percent in mirror.items():
        path: FieldPath = (*_ENDPOINT, "mirror_traffic", name)
        if name not in deployments:
            yield TrafficProblem(
                "mirror_traffic",
                path,
                f"there is no deployment {name!r} (declared: {declared}); add it to "
                "spec.deployments or remove it here",
            )
        elif traffic.get(name):
            yield TrafficProblem(
                "mirror_traffic",
                path,
                f"deployment {name!r} takes live traffic and cannot also be mirrored",
            )
        if type(percent) is int and percent > MAX_MIRROR_PERCENT:
            yield TrafficProblem(
                "mirror_traffic",
                path,
                f"{percent}% is above Azure ML's limit of {MAX_MIRROR_PERCENT}% for mirrored "
                "traffic",
            )


def spec_traffic_problems(spec: Mapping[str, Any]) -> Iterator[TrafficProblem]:
    """``traffic_problems`` of an Endpoint spec as written."""
    endpoint = spec.get("endpoint")
    if not isinstance(endpoint, Mapping):
        return
    traffic, mirror = endpoint.get("traffic"), endpoint.get("mirror_traffic")
    names = {
        str(d["name"])
        for d in base.items(spec.get("deployments"))
        if isinstance(d, dict) and "name" in d
    }
    yield from traffic_problems(
        traffic if isinstance(traffic, Mapping) else {},
        mirror if isinstance(mirror, Mapping) else {},
        names,
    )


@dataclass(frozen=True)
class InlineModel:
    """A model written out in a deployment (``model: {path: ./model}``). Azure ML registers it
    as a model version of its own before the deployment serves it; so does the reconciler."""

    path: str  # as written: relative to the manifest's file
    name: str | None = None  # None: named after the endpoint and the deployment
    version: str | None = None  # None: changed files become the next version
    type: str = "custom_model"


@dataclass(frozen=True)
class Deployment:
    """One of ``spec.deployments``: what the Backend protocol deploys, a model version (a
    registered one, or one written out to register first) and a scoring script in a code
    folder."""

    name: str
    written: Mapping[str, Any]  # the CLI v2 deployment YAML as written (its fingerprint)
    model: ModelRef | InlineModel | None  # None: no model it can serve (a finding says so)
    code: str | None  # as written: relative to the manifest's file
    scoring_script: str = "score.py"
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    instance_count: int = 1


@dataclass(frozen=True)
class Endpoint:
    """An Endpoint spec as the reconcilers read it."""

    name: str | None  # ``spec.endpoint.name``; None: the object's name
    auth_mode: str
    traffic: Mapping[str, int]
    mirror_traffic: Mapping[str, int]
    description: str
    deployments: tuple[Deployment, ...]
    lifecycle: base.Lifecycle = field(default_factory=base.Lifecycle)


def _percentages(
    value: Any, where: FieldPath, locator: Locator, findings: list[Finding]
) -> dict[str, int]:
    out: dict[str, int] = {}
    for name, percent in (value if isinstance(value, Mapping) else {}).items():
        try:
            out[str(name)] = int(percent)
        except (TypeError, ValueError):
            findings.append(
                base.spec_finding(locator, "Endpoint", (*where, name), "write a whole percentage")
            )
    return out


def _model(value: Any) -> ModelRef | InlineModel | None:
    if isinstance(value, str):
        return parse_model_ref(value)
    if not isinstance(value, Mapping) or not isinstance(value.get("path"), str):
        return None
    if remote_path(value["path"]):
        return None  # not files amlops can register (``_unservable`` says so)
    name, version = value.get("name"), value.get("version")
    return InlineModel(
        path=value["path"],
        name=str(name) if name is not None else None,
        version=str(version) if version is not None else None,
        type=str(value.get("type", "custom_model")),
    )


def _unservable(body: Mapping[str, Any]) -> tuple[FieldPath, str] | None:
    """The first thing that keeps a deployment from being deployed (one finding per
    deployment): the field under the deployment and what to write there."""
    model = body.get("model")
    if isinstance(model, Mapping) and remote_path(model.get("path")):
        return ("model", "path"), REMOTE_PATH
    if _model(model) is None:
        return (
            ("model",),
            "a deployment serves a registered model (model: azureml:NAME:VERSION) or one "
            "written out with its files (model: {path: ./folder})",
        )
    config = body.get("code_configuration")
    if config is None:
        # Azure ML's no-code deployment: an MLflow model served by Azure's MLflow server.
        inline_type = model.get("type") if isinstance(model, Mapping) else None
        if inline_type is None or inline_type == "mlflow_model":
            return None
        return (
            ("code_configuration",),
            f"a {inline_type} is served by a scoring script: set code_configuration.code and "
            "scoring_script (only an mlflow_model deploys without code)",
        )
    if not isinstance(config, Mapping) or not isinstance(config.get("code"), str):
        return (
            ("code_configuration",),
            "set code_configuration.code and scoring_script (the deployment runs a scoring script)",
        )
    return None


def _deployment(
    body: Any, where: FieldPath, locator: Locator, fatal: list[Finding], unusable: list[Finding]
) -> Deployment | None:
    if not isinstance(body, Mapping) or body.get("name") is None:
        fatal.append(base.spec_finding(locator, "Endpoint", where, "a deployment needs a name"))
        return None
    model = _model(body.get("model"))
    config = body.get("code_configuration")
    config = config if isinstance(config, Mapping) else {}
    code = config.get("code")
    problem = _unservable(body)
    if problem is not None:
        unusable.append(base.spec_finding(locator, "Endpoint", (*where, *problem[0]), problem[1]))
    env = body.get("environment_variables")
    try:
        instances = int(body.get("instance_count", 1))
    except (TypeError, ValueError):
        fatal.append(
            base.spec_finding(locator, "Endpoint", (*where, "instance_count"), "write a number")
        )
        return None
    return Deployment(
        name=str(body["name"]),
        written=body,
        model=model,
        code=code if isinstance(code, str) else None,
        scoring_script=str(config.get("scoring_script", "score.py")),
        environment_variables={str(k): str(v) for k, v in env.items()}
        if isinstance(env, Mapping)
        else {},
        instance_count=instances,
    )


def parse(spec: Mapping[str, Any], locator: Locator) -> tuple[Endpoint | None, list[Finding]]:
    """Read an Endpoint spec once. A spec that cannot be read is None with its findings; one
    that reads but cannot be served as written (a deployment with no registered model or code,
    broken traffic rules) comes with its findings, so the endpoint still reports its status."""
    endpoint = spec.get("endpoint")
    if not isinstance(endpoint, Mapping):
        return None, [base.spec_finding(locator, "Endpoint", _ENDPOINT, "write the endpoint here")]
    fatal: list[Finding] = []
    unusable: list[Finding] = []
    deployments = []
    for i, body in enumerate(base.items(spec.get("deployments"))):
        dep = _deployment(body, ("spec", "deployments", i), locator, fatal, unusable)
        if dep is not None:
            deployments.append(dep)
    traffic = _percentages(endpoint.get("traffic"), (*_ENDPOINT, "traffic"), locator, fatal)
    mirror = _percentages(
        endpoint.get("mirror_traffic"), (*_ENDPOINT, "mirror_traffic"), locator, fatal
    )
    if fatal:
        return None, fatal
    names = {d.name for d in deployments}
    unusable += [
        base.spec_finding(locator, "Endpoint", problem.path, problem.message)
        for problem in traffic_problems(traffic, mirror, names)
    ]
    name = endpoint.get("name")
    return Endpoint(
        name=str(name) if name is not None else None,
        auth_mode=str(endpoint.get("auth_mode", "key")),
        traffic=traffic,
        mirror_traffic=mirror,
        description=str(endpoint.get("description", "")),
        deployments=tuple(deployments),
        lifecycle=base.Lifecycle.of(spec),
    ), unusable


def _models(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    for i, dep in enumerate(base.items(spec.get("deployments"))):
        if isinstance(dep, dict) and isinstance(dep.get("model"), str):
            yield ("spec", "deployments", i, "model"), dep["model"]


def _environments(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    for i, dep in enumerate(base.items(spec.get("deployments"))):
        if isinstance(dep, dict) and "environment" in dep:
            yield ("spec", "deployments", i, "environment"), dep["environment"]


def _references(m: Manifest, declared: base.Declared) -> Iterator[Finding]:
    yield from base.check_workspace(m, declared)
    yield from base.check_assets(m, declared, KIND)
    # What the reconciler refuses, validate reports (the traffic rules have a policy rule):
    # whatever validate accepts, ``up`` runs.
    for i, body in enumerate(base.items(m.spec.get("deployments"))):
        problem = _unservable(body) if isinstance(body, Mapping) else None
        if problem is not None:
            yield m.finding(("spec", "deployments", i, *problem[0]), base.RULE_SPEC, problem[1])


KIND = base.Kind(
    name="Endpoint",
    engine="operator",
    crd=base.Crd(
        short_names=("amlendpoint", "amlep"),
        columns=(base.Column("URI", ".status.scoringUri", priority=1),),
    ),
    parts=(
        base.Part("endpoint", "load_online_endpoint", cli_type="online_endpoint"),
        base.Part("deployments", "load_online_deployment", many=True),
    ),
    references=_references,
    models=_models,
    environments=_environments,
)
