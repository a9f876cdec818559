"""The CRDs in operator/deploy/crds/ are generated from policies/schemas/ and must not drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from amlops.crds import render, structural
from amlops.kinds import ORDER

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


def test_crds_are_structural_and_list_the_amlops_category() -> None:
    for text in render().values():
        crd = yaml.safe_load(text)
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
        assert columns[0] == "Workspace" and "Ready" in columns and columns[-1] == "Age"


def test_embedded_azure_ml_parts_keep_unknown_fields() -> None:
    crd = yaml.safe_load(render()["amlops.io_endpoints.yaml"])
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["endpoint"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["properties"]["deployments"]["items"]["x-kubernetes-preserve-unknown-fields"]
    assert set(ORDER) == {"Model", "Pipeline", "Endpoint"}


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
