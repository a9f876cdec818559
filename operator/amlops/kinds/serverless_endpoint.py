"""ServerlessEndpoint: a model-catalog model served as a service (Models as a Service).

``spec.endpoint`` is the Azure ML CLI v2 serverless endpoint YAML (``name``, ``model_id``,
``auth_mode``), as ``az ml serverless-endpoint create -f`` takes it. A model published by
Microsoft (registry ``azureml``) is billed through Azure; any other publisher's
(``azureml-meta``, ``azureml-mistral``, ...) is a Marketplace offer the workspace subscribes to
first, so the reconciler knows from the model id alone whether a subscription is needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amlops.core.assets import ModelRef, parse_registry_model_id
from amlops.core.findings import Finding
from amlops.core.locator import Locator
from amlops.core.source import FieldPath
from amlops.kinds import base

if TYPE_CHECKING:
    from amlops.core.manifests import Manifest

ENDPOINT: FieldPath = ("spec", "endpoint")
MODEL_ID: FieldPath = (*ENDPOINT, "model_id")
# Microsoft's model catalog registry: its models need no Marketplace subscription.
MICROSOFT_REGISTRY = "azureml"
AUTH_MODES = ("key",)  # what Azure ML's serverless endpoints offer

_MODEL_ID_MESSAGE = (
    "a serverless endpoint serves a model-catalog model: write "
    "model_id: azureml://registries/REGISTRY/models/NAME"
)


@dataclass(frozen=True)
class ServerlessEndpoint:
    """A ServerlessEndpoint spec as the reconcilers read it."""

    name: str | None  # ``spec.endpoint.name``; None: the object's name
    model: ModelRef  # a registry model (``registry`` is set), its latest version
    model_id: str  # as written
    auth_mode: str = "key"
    tags: Mapping[str, str] = field(default_factory=dict)
    lifecycle: base.Lifecycle = field(default_factory=base.Lifecycle)

    @property
    def needs_subscription(self) -> bool:
        """Non-Microsoft models are Marketplace offers: the workspace subscribes first."""
        return self.model.registry != MICROSOFT_REGISTRY


def _model_problem(endpoint: Mapping[str, Any]) -> str | None:
    value = endpoint.get("model_id")
    ref = parse_registry_model_id(value) if isinstance(value, str) else None
    if ref is None:
        return _MODEL_ID_MESSAGE
    if value != f"azureml://registries/{ref.registry}/models/{ref.name}":
        # the SDK's loader takes it, its create refuses it: validate says so first
        return (
            "a serverless endpoint serves the model's latest version, and Azure ML refuses a "
            f"model_id naming a version or label: write azureml://registries/{ref.registry}/"
            f"models/{ref.name}"
        )
    return None


def parse(
    spec: Mapping[str, Any], locator: Locator
) -> tuple[ServerlessEndpoint | None, list[Finding]]:
    """Read a ServerlessEndpoint spec once; one that cannot be served is None with findings."""
    endpoint = spec.get("endpoint")
    kind = "ServerlessEndpoint"
    if not isinstance(endpoint, Mapping):
        return None, [base.spec_finding(locator, kind, ENDPOINT, "write the endpoint here")]
    findings = []
    problem = _model_problem(endpoint)
    if problem is not None:
        findings.append(base.spec_finding(locator, kind, MODEL_ID, problem))
    auth_mode = str(endpoint.get("auth_mode", "key"))
    if auth_mode not in AUTH_MODES:
        findings.append(
            base.spec_finding(
                locator,
                kind,
                (*ENDPOINT, "auth_mode"),
                f"serverless endpoints authenticate with keys: write auth_mode: key, not "
                f"{auth_mode!r}",
            )
        )
    if findings:
        return None, findings
    model = parse_registry_model_id(str(endpoint["model_id"]))
    assert model is not None  # checked above
    name, tags = endpoint.get("name"), endpoint.get("tags")
    return ServerlessEndpoint(
        name=str(name) if name is not None else None,
        model=model,
        model_id=str(endpoint["model_id"]),
        auth_mode=auth_mode,
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {},
        lifecycle=base.Lifecycle.of(spec),
    ), []


def _references(m: Manifest, declared: base.Declared) -> Iterator[Finding]:
    yield from base.check_workspace(m, declared)
    endpoint = m.spec.get("endpoint")
    # what ``parse`` refuses, validate reports: whatever validate accepts, ``up`` runs (a
    # model_id that is not even a string is the SDK loader's to report, at the same line)
    if isinstance(endpoint, Mapping) and isinstance(endpoint.get("model_id"), str):
        problem = _model_problem(endpoint)
        if problem is not None:
            yield m.finding(MODEL_ID, base.RULE_SPEC, problem)


KIND = base.Kind(
    name="ServerlessEndpoint",
    engine="operator",
    crd=base.Crd(
        short_names=("amlserverless", "amlsep"),
        columns=(
            base.Column("Model", ".status.modelId"),
            base.Column("URI", ".status.scoringUri", priority=1),
        ),
    ),
    parts=(base.Part("endpoint", "load_serverless_endpoint", cli_type="serverless_endpoint"),),
    references=_references,
)
