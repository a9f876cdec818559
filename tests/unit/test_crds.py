"""The CRDs in operator/deploy/crds/ are generated from policies/schemas/ and must not drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from amlops import API_GROUP
from amlops.crds import render, structural
from amlops.kinds import CRD_KINDS, KINDS, ORDER

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "operator" / "deploy" / "crds"


def test_checked_in_crds_match_a_fresh_generation() -> None:
    generated = render()
    on_disk = {p.name: p.read_text() for p in CRD_DIR.glob("*.yaml")}
    assert set(on_disk) == set(generated), "run `make crds`"
    for name, text in generated.items():
        assert on_disk[name] == text, f"{name} drifted from its schema: run `make crds`"


def _walk(node: Any) -> list[dict[str, Any]]:
    out = []
    if isinstance(node, dict):
        out.append(node)
        for value in node.values():
            out.extend(_walk(value))
    elif isinstance(node, list):
        for value in node:
            out.extend(_walk(value))
    return out


def _crds() -> list[dict[str, Any]]:
    docs = [yaml.safe_load(text) for text in render().values()]
    # the amlops kinds' (Kopf's peering CRD, kopf.dev, is shipped alongside)
    return [
        d
        for d in docs
        if d["kind"] == "CustomResourceDefinition" and d["spec"]["group"] == API_GROUP
    ]


def test_crds_are_structural_and_list_the_amlops_category() -> None:
    crds = _crds()
    assert len(crds) == len(CRD_KINDS)
    for crd in crds:
        version = crd["spec"]["versions"][0]
        assert crd["spec"]["names"]["categories"] == ["amlops"]
        assert crd["spec"]["names"]["shortNames"]
        assert version["subresources"] == {"status": {}}
        schema = version["schema"]["openAPIV3Schema"]
        for node in _walk(schema["properties"]["spec"]):
            # keywords a structural schema may not carry
            assert not {"$schema", "$id", "const", "oneOf", "not"} & set(node), node
            if isinstance(node.get("type"), list):
                raise AssertionError(f"type union in {node}")
        columns = [c["name"] for c in version["additionalPrinterColumns"]]
        # a GitSource has no workspace; a WorkspaceBinding names the one it binds
        in_workspace = crd["spec"]["names"]["kind"] in (*ORDER, "WorkspaceBinding")
        assert (columns[0] == "Workspace") == in_workspace
        assert "Ready" in columns and columns[-1] == "Age"


def test_a_kinds_plural_and_columns_come_from_the_kind() -> None:
    for crd in _crds():
        names = crd["spec"]["names"]
        declared = KINDS[names["kind"]].crd
        assert declared is not None and declared.plural == names["plural"]
    endpoint = yaml.safe_load(render()["amlops.io_endpoints.yaml"])
    printer = {c["name"]: c for c in endpoint["spec"]["versions"][0]["additionalPrinterColumns"]}
    # `kubectl get -o wide` only: a column with a priority; the others carry none
    assert printer["URI"]["priority"] == 1 and "priority" not in printer["Ready"]
    assert printer["Age"]["type"] == "date" and printer["Workspace"]["type"] == "string"


def test_embedded_azure_ml_parts_keep_unknown_fields() -> None:
    crd = yaml.safe_load(render()["amlops.io_endpoints.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["endpoint"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["properties"]["deployments"]["items"]["x-kubernetes-preserve-unknown-fields"]
    assert set(ORDER) == {"Model", "Pipeline", "Endpoint", "ServerlessEndpoint"}


def test_structural_translates_json_schema_only_keywords() -> None:
    out = structural(
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "a": {"const": "x"},
                "b": {"type": ["string", "integer"]},
                "c": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "oneOf": [{"required": ["a"]}],
        }
    )
    assert out == {
        "type": "object",
        "properties": {
            "a": {"enum": ["x"], "type": "string"},
            "b": {"x-kubernetes-int-or-string": True},
            "c": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }


def test_the_cluster_role_grants_exactly_the_operator_kinds() -> None:
    """A new operator kind is granted by regenerating, never by a hand edit: the role names
    each kind's resource and status, and nothing else of the group."""
    role = yaml.safe_load(render()["clusterrole.yaml"])
    ours = [r for r in role["rules"] if r["apiGroups"] == [API_GROUP]]
    plurals = [crd.plural for k in CRD_KINDS if (crd := KINDS[k].crd) is not None]
    applied = [crd.plural for k in ORDER if (crd := KINDS[k].crd) is not None]
    # WorkspaceBindings are only read (listed and watched into an index), never patched
    plurals.remove("workspacebindings")
    statuses = [f"{p}/status" for p in plurals]
    expected = [plurals, statuses, ["workspacebindings"], applied]
    assert [r["resources"] for r in ours[:4]] == expected
    assert ours[2]["verbs"] == ["list", "watch"]
    # anything more of the group only reads one of its kinds (the push receiver's get)
    assert all(set(r["resources"]) <= set(plurals) and r["verbs"] == ["get"] for r in ours[4:])
    listed = yaml.safe_load(render()["kustomization.yaml"])["resources"]
    assert set(listed) == set(render()) - {"kustomization.yaml"}
