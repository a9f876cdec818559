"""Policy at admission, on the real API server: the operator serves Kopf's webhooks over HTTPS
on loopback with the certificate it made itself, and Kopf registers them (``url:`` client
config, the self-made CA as the bundle) in the webhook configurations it manages.

The module runs its own operator (webhooks on, behind its own counting proxy, with a checkout
that holds a prod Workspace and an ``amlops.yaml`` re-grading one rule to a warning); the
suite's operator is stopped meanwhile, so only this one handles the objects."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from cryptography import x509
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from amlops import API_GROUP
from amlops.crds import VERSION, WEBHOOK_CONFIGURATION
from amlops.handlers.admission import (
    Checkout,
    Service,
    add_finalizer,
    describe,
    from_source,
    protect,
    review,
    self_signed,
    serving_endpoints,
    validate,
)
from amlops.handlers.objects import Resource
from amlops.handlers.options import FINALIZER, Settings
from amlops.kinds import KINDS
from amlops.reconcile.registry import RECONCILERS
from tests.envtest.apiserver import Cluster
from tests.operator.harness import (
    AMLOPS,
    DEPLOY,
    PLURALS,
    Kube,
    OperatorProcess,
    body,
    dry_run_apply,
    is_ready,
    model_spec,
    object_path,
    refuses,
    wait_for,
    wait_for_webhooks,
    webhook_configurations,
    write_checkout,
)
from tests.operator.proxy import Proxy, about, rbac_rules
from tests.operator.test_endpoint import endpoint_spec
from tests.operator.test_rbac import granted
from tests.operator.test_write_economy import quiet, shape

pytestmark = [pytest.mark.envtest, pytest.mark.slow]
ADMISSION = "admissionregistration.k8s.io"
PROD = "ws-prod"


def create(
    kube: Kube, namespace: str, kind: str, name: str, spec: dict[str, Any], dry_run: bool = False
) -> tuple[dict[str, Any], str]:
    """Create as a user would; returns the stored object and the Warning headers."""
    extra = {"dry_run": "All"} if dry_run else {}
    data, _, headers = kube.custom.create_namespaced_custom_object_with_http_info(
        API_GROUP, VERSION, namespace, PLURALS[kind], body(kind, name, spec), **extra
    )
    return data, str(headers.get("Warning", ""))


def denial(call: Any) -> ApiException:
    with pytest.raises(ApiException) as err:
        call()
    return err.value


@pytest.fixture(scope="module")
def webhook_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``webhooks`` operator's checkout: a prod Workspace, and model.prod-retain re-graded
    to a warning."""
    root = write_checkout(tmp_path_factory.mktemp("admission-source"))
    workspace = body("Workspace", PROD, {"environment": "prod", "location": "westeurope"})
    (root / "workspaces.yaml").write_text(yaml.safe_dump(workspace))
    config = {"policies": {"severity": {"model.prod-retain": "warning"}}}
    (root / "amlops.yaml").write_text(yaml.safe_dump(config))
    return root


def test_the_webhooks_are_registered_with_the_self_made_ca(
    webhooks: tuple[OperatorProcess, Proxy], kube: Kube
) -> None:
    op, _ = webhooks
    validating, mutating = webhook_configurations(kube)
    ca = (Path(op.env["AMLOPS_STATE_DIR"]) / "webhook" / "ca.crt").read_bytes()
    for config in (validating, mutating):
        for hook in config.webhooks:
            assert hook.client_config.url.startswith("https://127.0.0.1:")
            assert base64.b64decode(hook.client_config.ca_bundle) == ca
    checked = {h.rules[0].resources[0] for h in validating.webhooks}
    registry = {crd.plural for k in RECONCILERS if (crd := KINDS[k].crd) is not None}
    assert checked == registry  # every kind of the operator's registry
    protect = [h for h in validating.webhooks if h.rules[0].operations == ["DELETE"]]
    assert [h.rules[0].resources for h in protect] == [["models"]]
    assert {h.failure_policy for h in mutating.webhooks} == {"Ignore"}
    # only a CREATE fails closed: an UPDATE (a finalizer's release) and a DELETE never wait
    # for a replica to answer
    policies = {(h.rules[0].operations[0], h.failure_policy) for h in validating.webhooks}
    assert policies == {("CREATE", "Fail"), ("UPDATE", "Ignore"), ("DELETE", "Ignore")}
    assert all(h.rules[0].operations != ["*"] for h in validating.webhooks)
    key = Path(op.env["AMLOPS_STATE_DIR"]) / "webhook" / "tls.key"
    assert key.stat().st_mode & 0o077 == 0


def test_a_policy_violation_is_denied_with_its_rule(
    webhooks: tuple[OperatorProcess, Proxy], kube: Kube, namespace: str
) -> None:
    err = denial(lambda: create(kube, namespace, "Model", "loose", model_spec(version=None)))
    assert err.status == 422
    assert "model.version-pinned at spec.model" in str(err.body)
    assert kube.get(namespace, "Model", "loose") is None
    # every finding names its rule and field; the first error is the message
    bad = model_spec(name="bad name!")
    err = denial(lambda: create(kube, namespace, "Model", "bad", bad))
    assert err.status == 422 and "azureml.name at spec.model.name" in str(err.body)


def test_a_warning_comes_back_as_an_admission_warning(
    webhooks: tuple[OperatorProcess, Proxy], kube: Kube, namespace: str
) -> None:
    # model.prod-retain applies in the prod workspace of the checkout; amlops.yaml re-grades it
    spec = {**model_spec(name=f"{namespace}-prod"), "workspace": PROD}
    created, warning = create(kube, namespace, "Model", "prod", spec)
    assert "model.prod-retain at spec.deletionPolicy" in warning  # the CRD defaults it
    assert created["metadata"]["name"] == "prod"
    kube.wait(namespace, "Model", "prod", is_ready, what="Ready")
    # a metadata-only update is not re-checked: no warning, no denial
    _, _, headers = kube.custom.patch_namespaced_custom_object_with_http_info(
        API_GROUP, VERSION, namespace, "models", "prod", {"metadata": {"labels": {"a": "b"}}}
    )
    assert not headers.get("Warning")


def test_a_create_costs_one_status_write_and_one_event(
    webhooks: tuple[OperatorProcess, Proxy], kube: Kube, namespace: str
) -> None:
    _, proxy = webhooks
    since = proxy.mark()
    created, warning = create(kube, namespace, "Model", "tiny", model_spec(name=namespace))
    assert warning == ""
    assert FINALIZER in created["metadata"]["finalizers"]  # from the mutating webhook
    kube.wait(namespace, "Model", "tiny", is_ready, what="Ready")
    writes = quiet(proxy, since, about(namespace, "tiny"))
    assert shape(writes) == [("create", "event"), ("patch", "status")]


def test_deleting_a_served_model_needs_the_force_annotation(
    webhooks: tuple[OperatorProcess, Proxy], kube: Kube, namespace: str
) -> None:
    model = f"{namespace}-served"
    create(kube, namespace, "Model", "served", model_spec(name=model))
    create(kube, namespace, "Model", "spare", model_spec(name=f"{namespace}-spare"))
    kube.wait(namespace, "Model", "served", is_ready)
    create(kube, namespace, "Endpoint", "ep", endpoint_spec(f"{namespace}-ep", model))
    kube.wait(namespace, "Endpoint", "ep", is_ready, timeout=90, what="Ready")

    err = denial(lambda: kube.delete(namespace, "Model", "served"))
    assert err.status == 409
    assert "admission.model-in-use" in str(err.body) and "ep" in str(err.body)
    assert kube.get(namespace, "Model", "served") is not None
    kube.delete(namespace, "Model", "spare")  # a model no endpoint serves goes as usual
    kube.wait_gone(namespace, "Model", "spare")

    kube.patch(
        namespace,
        "Model",
        "served",
        {"metadata": {"annotations": {"amlops.io/force-delete": "true"}}},
    )
    kube.delete(namespace, "Model", "served")
    kube.wait_gone(namespace, "Model", "served")


def test_a_mounted_certificate_is_served_with_webhook_cert_dir(
    webhooks: tuple[OperatorProcess, Proxy], kube: Kube, tmp_path: Path
) -> None:
    """``amlops operator --webhook-cert-dir DIR`` (what the cert-manager Component runs):
    the flag alone turns the webhooks on, and DIR's certificate and CA are what the API
    server is given and trusts."""
    op, _ = webhooks
    mounted = self_signed(tmp_path / "mounted", ["127.0.0.1"])  # stands in for the Secret
    ca = mounted.ca.read_bytes()
    op.stop()
    enabled = op.env.pop("AMLOPS_WEBHOOKS")
    try:
        op.start(
            argv=[
                *AMLOPS,
                "operator",
                "--log-format=json",
                f"--webhook-cert-dir={tmp_path / 'mounted'}",
            ]
        )
    finally:
        op.env["AMLOPS_WEBHOOKS"] = enabled

    def bundles() -> set[bytes]:
        validating, _ = webhook_configurations(kube)
        return {base64.b64decode(h.client_config.ca_bundle) for h in validating.webhooks or []}

    wait_for(lambda: bundles() == {ca}, what="the mounted CA in the webhook configuration")
    wait_for(lambda: refuses(kube), timeout=30, what="the webhook to answer with the mounted cert")


def test_the_cert_manager_component_wires_certificate_service_and_operator(
    cluster: Cluster, tmp_path: Path
) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (kustomize) is not installed")
    deploy = os.path.relpath(DEPLOY, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [deploy], "components": [f"{deploy}/components/cert-manager"]})
    )
    out = subprocess.run(
        [kubectl, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    docs: list[dict[str, Any]] = [d for d in yaml.safe_load_all(out.stdout) if d]

    def one(kind: str, name: str | None = None) -> dict[str, Any]:
        (doc,) = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
        return doc

    cert = one("Certificate")
    service = one("Service", "amlops-operator-webhook")
    svc_ns, svc_name = service["metadata"]["namespace"], service["metadata"]["name"]
    assert f"{svc_name}.{svc_ns}.svc" in cert["spec"]["dnsNames"]
    cert_ref = f"{cert['metadata']['namespace']}/{cert['metadata']['name']}"
    configs = [one("ValidatingWebhookConfiguration"), one("MutatingWebhookConfiguration")]
    for config in configs:
        assert config["metadata"]["name"] == WEBHOOK_CONFIGURATION
        assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == cert_ref
        assert "webhooks" not in config  # Kopf's to write; a re-apply must not take them

    pod = one("Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "operator"]
    (flag,) = [a for a in container["args"] if a.startswith("--webhook-cert-dir=")]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    secrets = {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}
    (volume,) = [name for name, path in mounts.items() if path == flag.partition("=")[2]]
    assert secrets[volume] == cert["spec"]["secretName"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = Settings.from_env(env)
    target = Service.parse(settings.webhook_service)
    assert (target.namespace, target.name) == (svc_ns, svc_name)
    assert target.port == service["spec"]["ports"][0]["port"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports[service["spec"]["ports"][0]["targetPort"]] == settings.webhook_port

    # the API server accepts what it knows (cert-manager's kinds need cert-manager)
    paths = {
        "Service": f"/api/v1/namespaces/{svc_ns}/services/{svc_name}",
        "ValidatingWebhookConfiguration": "/apis/admissionregistration.k8s.io/v1/"
        f"validatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}",
        "MutatingWebhookConfiguration": "/apis/admissionregistration.k8s.io/v1/"
        f"mutatingwebhookconfigurations/{WEBHOOK_CONFIGURATION}",
        "Deployment": object_path(one("Deployment")),
    }
    with cluster.api_client() as api:
        for kind, path in paths.items():
            dry_run_apply(api, path, one(kind, path.rsplit("/", 1)[-1]))


def apply_dry_run(api: Any, namespace: str, name: str, spec: dict[str, Any], **meta: Any) -> str:
    """A dry-run server-side apply of a Model as the field manager a GitSource applies with;
    returns the Warning headers, raises ``ApiException`` on a denial."""
    doc = body("Model", name, spec, namespace=namespace, **meta)
    path = f"/apis/{API_GROUP}/{VERSION}/namespaces/{namespace}/models/{name}"
    resp = dry_run_apply(api, path, doc, manager="amlops-gitsource")
    return str(resp.getheader("Warning") or "")


def test_an_object_a_gitsource_applies_is_checked_against_its_schema_only(
    webhooks: tuple[OperatorProcess, Proxy], cluster: Cluster, kube: Kube, namespace: str
) -> None:
    """A GitSource validated its revision with that revision's amlops.yaml (here: one that
    excepts model.version-pinned), so the webhook does not re-judge it by the checkout's: what
    the operator applies as the GitSource is let through a policy the checkout would deny,
    while its schema is still checked, and nobody else gets the exemption."""
    unpinned = model_spec(name=f"{namespace}-unpinned", version=None)
    stamped = {"annotations": {"amlops.io/source": f"{namespace}/platform"}}
    sa = cluster.service_account_kubeconfig("amlops-system", "amlops-operator")
    with cluster.api_client(sa) as as_operator:
        assert "version-pinned" not in apply_dry_run(
            as_operator, namespace, "unpinned", unpinned, **stamped
        )
        # the schema still holds: a model without its path is denied, annotation or not
        pathless = {"workspace": "ws", "model": {"name": "p", "version": "1"}}
        err = denial(lambda: apply_dry_run(as_operator, namespace, "p", pathless, **stamped))
        assert err.status == 422 and "schema at spec.model" in str(err.body)
        # the operator's identity without the source's stamp: the full check
        err = denial(lambda: apply_dry_run(as_operator, namespace, "unpinned", unpinned))
        assert err.status == 422 and "model.version-pinned" in str(err.body)
    # anyone else writing the stamp and the field manager: the full check
    with cluster.api_client() as admin:
        err = denial(lambda: apply_dry_run(admin, namespace, "unpinned", unpinned, **stamped))
    assert err.status == 422 and "model.version-pinned" in str(err.body)


def test_a_left_behind_configuration_blocks_no_finalizer_release_nor_delete(
    webhooks: tuple[OperatorProcess, Proxy], kube: Kube, namespace: str
) -> None:
    """With no replica answering (a crashed or uninstalled operator), the webhooks stay
    registered, a Model with the operator's finalizer can still be deleted and its finalizer
    released (what a namespace being deleted needs); only a CREATE is refused."""
    op, _ = webhooks
    create(kube, namespace, "Model", "held", model_spec(name=f"{namespace}-held"))
    kube.wait(namespace, "Model", "held", is_ready, what="Ready")
    op.stop()
    try:
        validating, _ = webhook_configurations(kube)
        assert validating.webhooks, "a graceful stop took the webhooks away"
        kube.delete(namespace, "Model", "held")  # the DELETE check fails open
        held = kube.get(namespace, "Model", "held")
        assert held is not None and FINALIZER in held["metadata"]["finalizers"]
        kube.patch(namespace, "Model", "held", {"metadata": {"finalizers": None}})
        kube.wait_gone(namespace, "Model", "held")
        err = denial(lambda: create(kube, namespace, "Model", "new", model_spec(name="n")))
        assert "failed calling webhook" in str(err.body)  # fails closed, not denied
        assert kube.get(namespace, "Model", "new") is None
    finally:
        op.start()
        wait_for_webhooks(kube)


def test_the_webhook_operator_uses_exactly_its_admission_grants(
    webhooks: tuple[OperatorProcess, Proxy],
) -> None:
    _, proxy = webhooks
    records = proxy.records()
    assert not [r for r in records if r.status == 403]
    used = {rule for r in records for rule in rbac_rules(r) if rule[0] == ADMISSION}
    assert used == {rule for rule in granted(optional=True) if rule[0] == ADMISSION}


# -- the pieces, without a cluster ----------------------------------------------------------------


def endpoint_object(model: str, *, ready: bool = True, workspace: str = "ws") -> dict[str, Any]:
    spec = {**endpoint_spec("ep", model), "workspace": workspace}
    status = "True" if ready else "False"
    return {
        **body("Endpoint", "ep", spec),
        "status": {"conditions": [{"type": "Ready", "status": status}]},
    }


def test_serves_matches_name_version_workspace_and_readiness() -> None:
    model = Resource.of(body("Model", "m", model_spec(name="tiny")))
    assert serving_endpoints(model, [endpoint_object("tiny")]) == ["ep"]
    assert serving_endpoints(model, [endpoint_object("tiny", ready=False)]) == []
    assert serving_endpoints(model, [endpoint_object("other")]) == []
    assert serving_endpoints(model, [endpoint_object("tiny", workspace="ws2")]) == []
    going = endpoint_object("tiny")
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert serving_endpoints(model, [going]) == []
    v2 = Resource.of(body("Model", "m", model_spec(name="tiny", version="2")))
    assert serving_endpoints(v2, [endpoint_object("tiny")]) == []  # the endpoint serves :1


def test_a_secret_in_the_spec_never_reaches_the_denial(tmp_path: Path) -> None:
    secret = "Sup3rS3cretValue-" + "x" * 20
    # a value the spec holds as a secret (a password tag), quoted by a schema message
    spec = model_spec(deletionPolicy=secret)
    spec["model"]["tags"] = {"password": secret}
    obj = Resource.of(body("Model", "m", spec, namespace="n"))
    warnings: list[str] = []
    with pytest.raises(kopf.AdmissionError) as err:
        validate(body("Model", "m", spec), "CREATE", None, warnings, tmp_path)
    assert "schema at spec.deletionPolicy" in str(err.value)
    assert all(secret not in describe(f) for f in review(obj, Checkout.read(tmp_path)))
    assert secret not in str(err.value) + "".join(warnings)


def test_only_the_operator_applying_as_a_gitsource_skips_the_policies() -> None:
    stamp = {"annotations": {"amlops.io/source": "team/platform"}}
    managed = {"managedFields": [{"manager": "amlops-gitsource", "operation": "Apply"}]}
    obj = body("Model", "m", model_spec(version=None), **stamp, **managed)
    me = "system:serviceaccount:amlops-system:amlops-operator"
    asked: list[bool] = []

    def operator() -> str:
        asked.append(True)
        return me

    assert from_source(obj, {"username": me}, operator)
    assert not from_source(obj, {"username": "alice"}, operator)
    assert not from_source(obj, {"username": me}, lambda: None)  # identity unknown: full check
    assert not from_source(obj, None, operator)
    unstamped = body("Model", "m", model_spec(version=None), **managed)
    by_kubectl = body("Model", "m", model_spec(version=None), **stamp)
    asked.clear()
    assert not from_source(unstamped, {"username": me}, operator)
    assert not from_source(by_kubectl, {"username": me}, operator)
    assert not asked  # the API server is asked who the operator is only for a stamped apply


def test_a_gitsource_object_breaking_a_policy_passes_with_its_schema_checked(
    tmp_path: Path,
) -> None:
    warnings: list[str] = []
    unpinned = body("Model", "m", model_spec(version=None), namespace="n")
    with pytest.raises(kopf.AdmissionError) as err:
        validate(unpinned, "CREATE", None, warnings, tmp_path)
    assert "model.version-pinned at spec.model" in str(err.value)
    validate(unpinned, "CREATE", None, warnings, tmp_path, applied_by_source=True)
    pathless = body("Model", "m", {"workspace": "ws", "model": {"name": "m"}}, namespace="n")
    with pytest.raises(kopf.AdmissionError) as err:
        validate(pathless, "CREATE", None, warnings, tmp_path, applied_by_source=True)
    assert "schema at spec.model" in str(err.value)


def test_an_update_releasing_a_finalizer_is_never_validated(tmp_path: Path) -> None:
    broken = body("Model", "m", model_spec(version=None), namespace="n", finalizers=[FINALIZER])
    released = {**broken, "metadata": {**broken["metadata"], "finalizers": []}}
    validate(released, "UPDATE", broken, [], tmp_path)  # no AdmissionError
    with pytest.raises(kopf.AdmissionError):
        validate(released, "CREATE", None, [], tmp_path)


def test_the_model_delete_check_fails_open_when_endpoints_cannot_be_listed() -> None:
    class Unreachable(k8s.ApiClient):  # type: ignore[misc]
        def call_api(self, *_: Any, **__: Any) -> Any:
            raise ApiException(status=503)

    warnings: list[str] = []
    protect(body("Model", "m", model_spec(), namespace="n"), Unreachable(), warnings)
    assert warnings and "admission.model-in-use" in warnings[0]


def test_the_finalizer_is_added_once_and_others_are_kept() -> None:
    patch = kopf.Patch()
    add_finalizer({"metadata": {"finalizers": ["other/x"]}}, patch)
    assert patch["metadata"]["finalizers"] == ["other/x", FINALIZER]
    again = kopf.Patch()
    add_finalizer({"metadata": {"finalizers": [FINALIZER]}}, again)
    assert not again


def test_the_certificate_is_reused_and_remade_for_new_names(tmp_path: Path) -> None:
    first = self_signed(tmp_path, ["127.0.0.1"])
    cert = first.cert.read_bytes()
    assert self_signed(tmp_path, ["127.0.0.1"]).cert.read_bytes() == cert  # kept
    remade = self_signed(tmp_path, ["svc.ns.svc", "127.0.0.1"])
    assert remade.cert.read_bytes() != cert
    leaf = x509.load_pem_x509_certificate(remade.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(remade.ca.read_bytes())
    assert leaf.issuer == ca.subject
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["svc.ns.svc"]
    assert remade.key.stat().st_mode & 0o777 == 0o600
