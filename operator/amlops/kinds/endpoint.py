"""Endpoint: an Azure ML online endpoint, its deployments, and the traffic split between them.

Azure ML's traffic rules live here once: the policy engine reports them on a pull request
(``endpoint.traffic`` / ``endpoint.mirror``) and the endpoint reconciler refuses a spec that
breaks them, both with these messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amlops.core.source import FieldPath
from amlops.kinds.base import Crd, Declared, Kind, Part, check_assets, check_workspace, items

if TYPE_CHECKING:
    from amlops.core.findings import Finding
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
        for d in items(spec.get("deployments"))
        if isinstance(d, dict) and "name" in d
    }
    yield from traffic_problems(
        traffic if isinstance(traffic, Mapping) else {},
        mirror if isinstance(mirror, Mapping) else {},
        names,
    )


def _models(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    for i, dep in enumerate(items(spec.get("deployments"))):
        if isinstance(dep, dict) and isinstance(dep.get("model"), str):
            yield ("spec", "deployments", i, "model"), dep["model"]


def _environments(spec: Mapping[str, Any]) -> Iterator[tuple[FieldPath, Any]]:
    for i, dep in enumerate(items(spec.get("deployments"))):
        if isinstance(dep, dict) and "environment" in dep:
            yield ("spec", "deployments", i, "environment"), dep["environment"]


def _references(m: Manifest, declared: Declared) -> Iterator[Finding]:
    yield from check_workspace(m, declared)
    yield from check_assets(m, declared, KIND)


KIND = Kind(
    name="Endpoint",
    engine="operator",
    crd=Crd(
        plural="endpoints",
        short_names=("amlendpoint", "amlep"),
        columns=(
            {"name": "URI", "type": "string", "jsonPath": ".status.scoringUri", "priority": 1},
        ),
    ),
    parts=(
        Part("endpoint", "load_online_endpoint", cli_type="online_endpoint"),
        Part("deployments", "load_online_deployment", many=True),
    ),
    references=_references,
    models=_models,
    environments=_environments,
)
