"""Azure ML's traffic rules, defined once (amlops.kinds.endpoint) for the policy engine and the
endpoint reconciler alike."""

from __future__ import annotations

from typing import Any

from amlops.core.manifests import Manifest
from amlops.core.policy import BUILTIN_CHECKS, Context
from amlops.kinds.endpoint import traffic_problems

DEPLOYMENTS = {"blue", "green"}


def _problems(traffic: dict[str, Any], mirror: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (".".join(map(str, p.path)), p.message)
        for p in traffic_problems(traffic, mirror, DEPLOYMENTS)
    ]


def test_a_valid_split_has_no_problem() -> None:
    assert _problems({"blue": 90, "green": 10}, {}) == []
    assert _problems({"blue": 100, "green": 0}, {"green": 50}) == []
    assert _problems({"blue": 0, "green": 0}, {}) == []  # nothing ready yet


def test_each_rule_names_its_field() -> None:
    assert [f for f, _ in _problems({"blue": 60, "purple": 40}, {})] == [
        "spec.endpoint.traffic.purple"
    ]
    assert _problems({"blue": 60}, {}) == [
        (
            "spec.endpoint.traffic",
            "the traffic adds up to 60%; make it 100 (or 0 while no deployment is ready)",
        )
    ]
    assert [f for f, _ in _problems({"blue": 100}, {"blue": 10})] == [
        "spec.endpoint.mirror_traffic.blue"
    ]
    assert _problems({"blue": 100}, {"green": 51}) == [
        (
            "spec.endpoint.mirror_traffic.green",
            "51% is above Azure ML's limit of 50% for mirrored traffic",
        )
    ]


def test_the_policy_checks_report_the_same_problems() -> None:
    spec = {
        "endpoint": {"name": "e", "traffic": {"blue": 70}, "mirror_traffic": {"green": 60}},
        "deployments": [{"name": "blue"}, {"name": "green"}],
    }
    body = {"kind": "Endpoint", "metadata": {"name": "e"}, "spec": spec}
    m = Manifest("Endpoint", "e", body, [])
    ctx = Context([m], {})
    found = [
        message
        for check in ("endpoint-traffic", "endpoint-mirror")
        for _, message in BUILTIN_CHECKS[check](m, ctx)
    ]
    assert found == [
        p.message for p in traffic_problems({"blue": 70}, {"green": 60}, {"blue", "green"})
    ]
