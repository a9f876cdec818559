"""ServerlessEndpoint: the kind reads the CLI v2 serverless YAML once (a plain file too), the
pure reconciler subscribes a Marketplace model first, creates, waits, serves, and puts back a
changed or deleted endpoint."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from amlops.backends.base import (
    MarketplaceSubscriptionState,
    ProvisioningState,
    ServerlessEndpointState,
)
from amlops.core.assets import ModelRef, parse_model_ref
from amlops.core.locator import ObjectLocator
from amlops.core.manifests import Manifest, load_tree
from amlops.core.validate import validate_paths
from amlops.kinds import serverless_endpoint as kind
from amlops.kinds.base import RULE_SPEC
from amlops.reconcile import serverless_endpoint as rec
from amlops.reconcile.actions import Result
from amlops.reconcile.conditions import Phase
from amlops.reconcile.inputs import Gone, Inputs, Source
from tests.platform_text import workspace

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
META = "azureml://registries/azureml-meta/models/Meta-Llama-3-8B-Instruct"
PHI = "azureml://registries/azureml/models/Phi-3-mini-4k-instruct"

MANIFEST = f"""\
apiVersion: amlops.io/v1alpha1
kind: ServerlessEndpoint
metadata:
  name: llama
spec:
  workspace: mlw-dev
  deletionPolicy: Retain
  endpoint:
    name: llama-chat
    model_id: {META}
    auth_mode: key
    tags: {{team: nlp}}
"""

PLAIN = """\
$schema: https://azuremlschemas.azureedge.net/latest/serverlessEndpoint.schema.json
name: phi-chat
model_id: azureml://registries/azureml/models/Phi-3-mini-4k-instruct
"""


def _load(tmp_path: Path, text: str, name: str = "s.yaml") -> list[Manifest]:
    (tmp_path / "ws.yaml").write_text(workspace())
    (tmp_path / name).write_text(text)
    return load_tree([tmp_path], root=tmp_path).manifests


def _one(manifests: list[Manifest]) -> Manifest:
    (m,) = [m for m in manifests if m.kind == "ServerlessEndpoint"]
    return m


# -- the kind ---------------------------------------------------------------------------------


def test_the_manifest_parses_into_its_typed_spec(tmp_path: Path) -> None:
    m = _one(_load(tmp_path, MANIFEST))
    spec, findings = kind.parse(m.spec, m)
    assert findings == [] and spec is not None
    assert spec.name == "llama-chat"
    assert spec.model == ModelRef("Meta-Llama-3-8B-Instruct", None, "azureml-meta")
    assert spec.needs_subscription
    assert spec.tags == {"team": "nlp"}
    assert spec.lifecycle.deletion_policy == "Retain"


def test_a_plain_cli_v2_file_is_the_kind_and_a_microsoft_model_needs_no_subscription(
    tmp_path: Path,
) -> None:
    m = _one(_load(tmp_path, PLAIN))
    assert (m.name, m.workspace) == ("phi-chat", "mlw-dev")
    spec, findings = kind.parse(m.spec, m)
    assert findings == [] and spec is not None
    assert spec.model == ModelRef("Phi-3-mini-4k-instruct", None, "azureml")
    assert not spec.needs_subscription
    # recognised by its shape too, without $schema
    shape = _one(_load(tmp_path, PLAIN.split("\n", 1)[1], "s.yaml"))
    assert shape.kind == "ServerlessEndpoint"


def test_a_workspace_model_is_a_finding_at_its_line(tmp_path: Path) -> None:
    text = MANIFEST.replace(META, "azureml:llama:1")
    m = _one(_load(tmp_path, text))
    spec, (finding,) = kind.parse(m.spec, m)
    assert spec is None
    assert (finding.rule, finding.field, finding.line) == (
        RULE_SPEC,
        "spec.endpoint.model_id",
        10,
    )
    errors = validate_paths([tmp_path], sdk=False).errors
    assert [(e.rule, e.field, e.line) for e in errors] == [
        (RULE_SPEC, "spec.endpoint.model_id", 10)
    ]


def test_a_versioned_model_id_is_a_finding_as_azure_ml_refuses_it(tmp_path: Path) -> None:
    m = _one(_load(tmp_path, MANIFEST.replace(META, META + "/versions/3")))
    spec, (finding,) = kind.parse(m.spec, m)
    assert spec is None
    assert (finding.field, finding.line) == ("spec.endpoint.model_id", 10)
    assert f"write {META}" in finding.message


def test_a_deployment_still_names_a_registry_model_with_its_version() -> None:
    # the serverless form (no version) is the kind's own: a deployment's model needs one
    assert parse_model_ref(META) is None
    assert parse_model_ref(META + "/versions/3") == ModelRef(
        "Meta-Llama-3-8B-Instruct", "3", "azureml-meta"
    )


def test_only_key_auth(tmp_path: Path) -> None:
    m = _one(_load(tmp_path, MANIFEST.replace("auth_mode: key", "auth_mode: aad_token")))
    spec, (finding,) = kind.parse(m.spec, ObjectLocator("ServerlessEndpoint ns/llama"))
    assert spec is None and finding.field == "spec.endpoint.auth_mode"


# -- the pure reconciler ----------------------------------------------------------------------


def _desired(model_id: str = META) -> rec.ServerlessEndpointDesired:
    spec = {"endpoint": {"name": "llama-chat", "model_id": model_id}}
    source = Source(ObjectLocator("ServerlessEndpoint ns/llama"), lambda p, v: Path(v))
    return rec.desired(Inputs("ws", "llama", spec, 2, source, tags={"amlops-commit": "c1"}))


def _endpoint(
    state: ProvisioningState = ProvisioningState.SUCCEEDED, model_id: str = META
) -> ServerlessEndpointState:
    return ServerlessEndpointState(
        "ws", "llama-chat", model_id, "key", state, "https://llama.example/v1", "", {"a": "b"}
    )


SUBSCRIBED = MarketplaceSubscriptionState(
    "ws", "meta-llama-3-8b-instruct", META, ProvisioningState.SUCCEEDED
)


def _decide(
    endpoint: ServerlessEndpointState | None,
    subscription: MarketplaceSubscriptionState | None = SUBSCRIBED,
    desired: rec.ServerlessEndpointDesired | None = None,
) -> Result:
    observed = rec.ServerlessEndpointObserved(endpoint, subscription)
    return rec.reconcile_serverless_endpoint(desired or _desired(), observed, None, NOW)


def test_a_marketplace_model_is_subscribed_to_first() -> None:
    result = _decide(None, None)
    (action,) = result.actions
    assert isinstance(action, rec.Subscribe)
    assert action.spec.name == "meta-llama-3-8b-instruct"
    assert action.spec.model_id == (
        "azureml://registries/azureml-meta/models/Meta-Llama-3-8B-Instruct"
    )
    assert action.spec.tags == {"amlops-commit": "c1"}
    assert result.outcome.reason == "Subscribing"


def test_a_failed_subscription_stalls_with_azures_reason() -> None:
    failed = replace(SUBSCRIBED, provisioning_state=ProvisioningState.FAILED, message="terms")
    result = _decide(None, failed)
    assert result.actions == ()
    assert (result.outcome.phase, result.outcome.reason) == (Phase.STALLED, "SubscriptionFailed")
    assert "terms" in result.outcome.message


def test_a_subscription_to_another_model_is_never_changed() -> None:
    other = replace(SUBSCRIBED, model_id=PHI)
    result = _decide(None, other)
    assert result.actions == ()
    assert (result.outcome.phase, result.outcome.reason) == (Phase.STALLED, "SubscriptionConflict")


def test_a_microsoft_model_is_created_without_a_subscription() -> None:
    result = _decide(None, None, _desired(PHI))
    (action,) = result.actions
    assert isinstance(action, rec.CreateOrUpdateServerlessEndpoint)
    assert action.spec.model_id == PHI and action.spec.tags == {"amlops-commit": "c1"}
    assert "marketplaceSubscription" not in result.status


def test_creating_waits_then_serves() -> None:
    waiting = _decide(_endpoint(ProvisioningState.CREATING))
    assert waiting.actions == () and waiting.outcome.phase is Phase.RECONCILING
    assert waiting.requeue_after is not None
    ready = _decide(_endpoint())
    assert ready.actions == ()
    assert (ready.outcome.phase, ready.outcome.reason) == (Phase.READY, "Serving")
    assert ready.status["scoringUri"] == "https://llama.example/v1"
    assert ready.status["modelId"] == META and ready.status["endpointName"] == "llama-chat"


def test_drift_a_deleted_endpoint_is_created_again() -> None:
    (action,) = _decide(None).actions
    assert isinstance(action, rec.CreateOrUpdateServerlessEndpoint)


def test_drift_an_endpoint_serving_another_model_is_replaced() -> None:
    other = META.replace("Meta-Llama-3-8B-Instruct", "Llama-2-7b-chat")
    result = _decide(_endpoint(model_id=other))
    (action,) = result.actions
    assert isinstance(action, rec.DeleteServerlessEndpoint)
    assert result.outcome.reason == "Replacing"


def test_the_version_azure_resolved_is_the_model_asked_for() -> None:
    resolved = _endpoint(model_id=META + "/versions/3")
    assert _decide(resolved).outcome.phase is Phase.READY


def test_drift_another_auth_mode_is_put_back_keeping_the_endpoints_tags() -> None:
    result = _decide(replace(_endpoint(), auth_mode="aad_token"))
    (action,) = result.actions
    assert isinstance(action, rec.CreateOrUpdateServerlessEndpoint)
    assert action.spec.auth_mode == "key" and action.spec.tags == {"a": "b"}


def test_a_failed_endpoint_stalls() -> None:
    failed = replace(_endpoint(ProvisioningState.FAILED), message="quota")
    result = _decide(failed)
    assert result.actions == () and result.outcome.phase is Phase.STALLED
    assert "quota" in result.outcome.message


def test_finalize_deletes_the_endpoint_unless_retained() -> None:
    status = {"endpointName": "llama-chat"}
    (action,) = rec.finalize(None, Gone("ws", "llama", status, "Delete"))  # type: ignore[arg-type]
    assert action == rec.DeleteServerlessEndpoint("ws", "llama-chat")
    assert rec.finalize(None, Gone("ws", "llama", status, "Retain")) == ()  # type: ignore[arg-type]
