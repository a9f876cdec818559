"""Tenancy: a WorkspaceBinding lets its namespace manage a workspace; any other namespace is
refused - at admission (``tenancy.namespace-not-bound`` at ``spec.workspace``) and by the
operator (``NamespaceNotBound``, nothing written to the backend).

The rule and the flow without a cluster first, then the real operator on the real API server:
with webhooks off (the suite's operator), then with its own operator serving the webhooks.
Every test binds a workspace of its own, so the suite's other objects (workspace ``ws``)
are never affected."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from amlops.backends import BACKENDS, BackendOptions, Backends, OpenedBackend
from amlops.core.validate import validate_paths
from amlops.handlers import admission, flow, tenancy
from amlops.handlers.admission import Checkout
from amlops.kinds import KINDS, ORDER
from amlops.kinds.workspace_binding import Binding, Identity, parse
from amlops.reconcile.conditions import Outcome, Phase
from tests.envtest.apiserver import unique_name
from tests.operator.harness import (
    BackendView,
    Kube,
    OperatorProcess,
    body,
    condition,
    is_ready,
    model_spec,
    phase,
    reason_is,
    wait_for,
)
from tests.operator.proxy import Proxy
from tests.operator.test_admission import create
from tests.operator.test_flow import LOG, backend, events, kind, memo  # noqa: F401 (fixtures)
from tests.operator.test_flow import body as model_body

NOT_BOUND = "NamespaceNotBound"
RULE = "tenancy.namespace-not-bound"
CLIENT_A = "11111111-1111-1111-1111-111111111111"
PLURAL = "workspacebindings"


def index(*bindings: Binding) -> dict[str, list[Binding]]:
    out: dict[str, list[Binding]] = {}
    for b in bindings:
        out.setdefault(b.workspace, []).append(b)
    return out


def binding(namespace: str, workspace: str, client: str = CLIENT_A) -> Binding:
    found = parse(namespace, "bind", {"workspace": workspace, "identity": {"clientId": client}})
    assert found is not None
    return found


# -- the rule ---------------------------------------------------------------------------------


def test_a_claimed_workspace_admits_only_its_bound_namespaces() -> None:
    bound = index(binding("team-a", "mlw-a"))
    assert tenancy.refusal(bound, "team-a", "mlw-a", enforced=False) is None
    refused = tenancy.refusal(bound, "team-b", "mlw-a", enforced=False)
    assert refused is not None and "team-b" in refused and "mlw-a" in refused
    # a workspace nobody bound is open unless tenancy is switched on for every workspace
    assert tenancy.refusal(bound, "team-b", "mlw-free", enforced=False) is None
    assert tenancy.refusal(bound, "team-b", "mlw-free", enforced=True) is not None
    assert tenancy.refusal({}, "team-a", "", enforced=True) is not None


def test_the_identity_is_the_bindings_and_holds_no_secret() -> None:
    spec = {
        "workspace": "mlw-a",
        "identity": {"clientId": CLIENT_A, "secretRef": {"name": "team-a-sp"}},
    }
    found = parse("team-a", "bind", spec)
    assert found == Binding(
        "team-a", "bind", "mlw-a", Identity(CLIENT_A, "", "team-a-sp", "team-a")
    )
    assert found.identity.key != binding("team-a", "mlw-a").identity.key  # secret vs workload
    assert Identity().key == ""  # the operator's own identity
    assert parse("team-a", "bind", {"identity": {}}) is None  # no workspace: binds nothing


def test_a_binding_in_a_repository_is_checked_like_any_manifest(tmp_path: Path) -> None:
    docs = [
        body("Workspace", "mlw-a", {"location": "westeurope"}),
        body("WorkspaceBinding", "a", {"workspace": "mlw-a", "identity": {"clientId": CLIENT_A}}),
        body("WorkspaceBinding", "b", {"workspace": "mlw-x", "identity": {"clientId": CLIENT_A}}),
        body("WorkspaceBinding", "c", {"workspace": "mlw-a", "identity": {"clientId": "me"}}),
    ]
    texts = {f"b{i}.yaml": yaml.safe_dump(d) for i, d in enumerate(docs)}
    report = validate_paths([tmp_path], texts=texts, sdk=False, root=tmp_path)
    errors = {(Path(f.file).name, f.rule, f.field) for f in report.errors}
    assert ("b2.yaml", "ref.workspace", "spec.workspace") in errors  # not declared
    assert any(name == "b3.yaml" and "clientId" in field for name, _, field in errors)
    assert not [e for e in errors if e[0] == "b1.yaml"]  # a declared workspace, a GUID


def test_admission_denies_an_unbound_namespace_naming_rule_and_field(tmp_path: Path) -> None:
    raw = body("Model", "m", {**model_spec(), "workspace": "mlw-a"}, namespace="team-b")
    admission._cache = (float("inf"), tmp_path, Checkout.read(tmp_path))  # no checkout needed
    try:
        with pytest.raises(kopf.AdmissionError) as err:
            admission.validate(raw, "CREATE", None, [], tmp_path, index(binding("team-a", "mlw-a")))
        assert str(err.value).startswith(f"{RULE} at spec.workspace:")
        assert err.value.code == 403
        assert "team-a" not in str(err.value)  # another tenant is not named
        # the bound namespace's object goes on to the usual checks (and passes them)
        raw["metadata"]["namespace"] = "team-a"
        admission.validate(raw, "CREATE", None, [], tmp_path, index(binding("team-a", "mlw-a")))
    finally:
        admission._cache = None


def test_the_flow_stalls_an_unbound_object_without_touching_the_backend(
    memo: kopf.Memo,  # noqa: F811
    backend: Any,  # noqa: F811
    events: list[Any],  # noqa: F811
) -> None:
    ready = Outcome(Phase.READY, "Registered", "m:1 registered")
    claimed = index(binding("elsewhere", "ws"))
    patch = kopf.Patch()
    with pytest.raises(kopf.PermanentError):
        flow.reconcile(kind(ready), flow.Call(model_body(), memo, 0, LOG, patch, claimed))
    assert backend.calls == []
    ready_cond = next(c for c in patch["status"]["conditions"] if c["type"] == "Ready")
    assert ready_cond["reason"] == NOT_BOUND
    # deleting it leaves the backend alone too: the namespace may no longer act on the workspace
    flow.finalize(kind(ready), flow.Call(model_body(), memo, 0, LOG, kopf.Patch(), claimed))
    assert backend.calls == [] and events[-1][1] == NOT_BOUND
    # bound: reconciled as usual
    mine = index(binding("ns", "ws"))
    flow.reconcile(kind(ready), flow.Call(model_body(), memo, 0, LOG, kopf.Patch(), mine))
    assert backend.calls == ["observe"]


def test_the_flow_acts_as_the_namespaces_identity(
    memo: kopf.Memo,  # noqa: F811
    backend: Any,  # noqa: F811
    events: list[Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a backend that has identities, a bound namespace's object is reconciled (and
    deleted) by the backend opened with its binding's credential, not the operator's."""
    opened: dict[str, Any] = {}
    learnt: list[Any] = []

    def fake_azureml(options: BackendOptions) -> OpenedBackend:
        tenant = type(backend)()  # the test_flow fake, recording its calls
        opened[options.credential] = tenant
        return OpenedBackend(tenant, learnt.append, lambda: None)

    monkeypatch.setitem(BACKENDS, "azureml", fake_azureml)
    rt = memo.runtime
    default = OpenedBackend(backend, lambda _m: None, lambda: None)
    rt.backends = Backends("azureml", BackendOptions(), default, lambda i: f"cred:{i.client_id}")
    checkout = ("a Workspace manifest",)
    rt.backends.learn(checkout)  # what the checkout declares, before the binding is used
    ready = Outcome(Phase.READY, "Registered", "m:1 registered")
    mine = index(binding("ns", "ws"))
    flow.reconcile(kind(ready), flow.Call(model_body(), memo, 0, LOG, kopf.Patch(), mine))
    flow.finalize(kind(ready), flow.Call(model_body(), memo, 0, LOG, kopf.Patch(), mine))
    assert list(opened) == [f"cred:{CLIENT_A}"]  # opened once, with the binding's identity
    assert opened[f"cred:{CLIENT_A}"].calls == ["observe", "delete_model_version"]
    assert backend.calls == []  # the operator's own identity did nothing
    assert learnt == [checkout]  # the new backend was taught what the operator's learnt


# -- on the API server --------------------------------------------------------------------------


def bind(kube: Kube, namespace: str, workspace: str, name: str = "bind") -> None:
    spec = {"workspace": workspace, "identity": {"clientId": CLIENT_A}}
    kube.create(namespace, "WorkspaceBinding", name, spec)


def unbind(kube: Kube, namespace: str, name: str = "bind") -> None:
    kube.delete(namespace, "WorkspaceBinding", name)


def test_a_binding_is_never_applied_from_git() -> None:
    crd = KINDS["WorkspaceBinding"].crd
    assert crd is not None and crd.plural == PLURAL
    assert "WorkspaceBinding" not in ORDER  # a GitSource or `amlops apply` never applies one


@pytest.mark.envtest
@pytest.mark.slow
def test_without_webhooks_an_unbound_object_stalls_and_writes_nothing(
    op: OperatorProcess, kube: Kube, namespace: str, view: BackendView
) -> None:
    ws, model = f"ws-{namespace}", f"m-{namespace}"
    other = kube.new_namespace("tenant")
    bind(kube, other, ws)  # the workspace is claimed by another namespace
    kube.create(namespace, "Model", "m", {**model_spec(name=model), "workspace": ws})
    obj = kube.wait(namespace, "Model", "m", reason_is(NOT_BOUND), what=NOT_BOUND)
    assert phase(obj)[0] == "False" and condition(obj, "Stalled").get("status") == "True"
    assert CLIENT_A not in str(obj.get("status"))  # no identity in status
    assert view.versions(model, ws) == []
    time.sleep(3)  # a drift check or two later: still nothing in the backend
    assert view.versions(model, ws) == []

    bind(kube, namespace, ws)  # bound now: the next drift check reconciles it
    kube.wait(namespace, "Model", "m", is_ready, timeout=60, what="Ready once bound")
    assert view.versions(model, ws) == ["1"]


@pytest.mark.envtest
@pytest.mark.slow
def test_removing_a_binding_stalls_existing_objects(
    op: OperatorProcess, kube: Kube, namespace: str, view: BackendView
) -> None:
    ws, model = f"ws-{namespace}", f"m-{namespace}"
    bind(kube, namespace, ws)
    # a workspace shared by two tenants: removing one binding leaves the workspace claimed
    # (removing its last one opens it again, unless AMLOPS_TENANCY=true)
    bind(kube, kube.new_namespace("tenant"), ws)
    kube.create(namespace, "Model", "m", {**model_spec(name=model), "workspace": ws})
    kube.wait(namespace, "Model", "m", is_ready, timeout=60, what="Ready")

    unbind(kube, namespace)
    kube.wait(namespace, "Model", "m", reason_is(NOT_BOUND), timeout=30, what=NOT_BOUND)
    # deleting it now leaves its asset: the namespace may no longer act on the workspace
    kube.delete(namespace, "Model", "m")
    kube.wait_gone(namespace, "Model", "m")
    assert view.versions(model, ws) == ["1"]
    assert NOT_BOUND in [e.reason for e in kube.events(namespace, "m")]


@pytest.mark.envtest
@pytest.mark.slow
def test_with_tenancy_on_every_workspace_needs_a_binding(
    op: OperatorProcess, kube: Kube, namespace: str, view: BackendView
) -> None:
    """``AMLOPS_TENANCY=true``: a workspace nobody bound is closed too."""
    ws, model = unique_name("mlw"), f"m-{namespace}"
    op.stop()
    op.env["AMLOPS_TENANCY"] = "true"
    try:
        op.start()
        kube.create(namespace, "Model", "m", {**model_spec(name=model), "workspace": ws})
        kube.wait(namespace, "Model", "m", reason_is(NOT_BOUND), what=NOT_BOUND)
        assert view.versions(model, ws) == []
        bind(kube, namespace, ws)
        kube.wait(namespace, "Model", "m", is_ready, timeout=60, what="Ready once bound")
        assert view.versions(model, ws) == ["1"]
    finally:
        op.stop()
        del op.env["AMLOPS_TENANCY"]
        op.start()


@pytest.mark.envtest
@pytest.mark.slow
def test_a_client_secret_identity_is_read_from_its_bindings_namespace(
    kube: Kube, namespace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

    secret = "s3cr3t-value-never-logged"
    kube.core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="sp"), string_data={"clientSecret": secret}),
    )
    kube.core.create_namespaced_secret(
        namespace, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="empty"), string_data={"x": "y"})
    )
    who = {"clientId": CLIENT_A, "tenantId": CLIENT_A}
    spec: dict[str, Any] = {"workspace": "w", "identity": who}
    with_secret = {**spec, "identity": {**who, "secretRef": {"name": "sp"}}}
    found = parse(namespace, "bind", with_secret)
    assert found is not None
    assert isinstance(tenancy.credential(found.identity, kube.api), ClientSecretCredential)
    missing = parse(
        namespace,
        "bind",
        {**spec, "identity": {**who, "secretRef": {"name": "empty"}}},
    )
    assert missing is not None
    with pytest.raises(ValueError, match="clientSecret"):
        tenancy.credential(missing.identity, kube.api)
    # another namespace's binding naming "sp" does not read this one's Secret
    elsewhere = parse(kube.new_namespace("tenant"), "bind", with_secret)
    assert elsewhere is not None
    with pytest.raises(ApiException) as err:
        tenancy.credential(elsewhere.identity, kube.api)
    assert err.value.status == 404 and secret not in str(err.value)
    # clientId alone: workload identity with the operator's federated token
    token = tmp_path / "token"
    token.write_text("federated")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token))
    workload = parse(namespace, "bind", spec)
    assert workload is not None
    assert isinstance(tenancy.credential(workload.identity, kube.api), WorkloadIdentityCredential)


# -- with the webhooks -------------------------------------------------------------------------


def denied_by_tenancy(kube: Kube, namespace: str, spec: dict[str, Any]) -> ApiException | None:
    try:
        create(kube, namespace, "Model", "probe", spec, dry_run=True)
    except ApiException as exc:
        return exc if RULE in str(exc.body) else None
    return None


@pytest.mark.envtest
@pytest.mark.slow
def test_an_unbound_namespace_is_denied_and_a_bound_one_admitted_and_reconciled(
    webhooks: tuple[OperatorProcess, Proxy], kube: Kube, namespace: str
) -> None:
    op, proxy = webhooks
    ws, model = unique_name("mlw"), f"m-{namespace}"
    intruder = kube.new_namespace("tenant")
    spec = {**model_spec(name=model), "workspace": ws}
    create(kube, intruder, "Model", "m", {**spec, "model": {**spec["model"], "name": "free"}})

    bind(kube, namespace, ws)
    err = wait_for(lambda: denied_by_tenancy(kube, intruder, spec), what="the binding indexed")
    assert err.status == 403 and f"{RULE} at spec.workspace" in str(err.body)
    assert namespace not in str(err.body)  # the tenant holding it is not told
    with pytest.raises(ApiException):
        create(kube, intruder, "Model", "taken", spec)
    assert kube.get(intruder, "Model", "taken") is None

    # the bound namespace's object is admitted and reconciled
    create(kube, namespace, "Model", "m", spec)
    kube.wait(namespace, "Model", "m", is_ready, timeout=60, what="Ready")
    # what got in before the binding (intruder's "m") stalls at its next drift check
    kube.wait(intruder, "Model", "m", reason_is(NOT_BOUND), timeout=30, what=NOT_BOUND)
    # the operator only lists and watches bindings: no write to one, and no 403
    since_all = proxy.records(0)
    assert not [r for r in since_all if PLURAL in r.path and r.method != "GET"]
    assert not [r for r in since_all if r.status == 403]
    assert op.running
