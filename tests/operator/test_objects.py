"""A custom resource as the reconcile core sees it: paths, tags, schema re-validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from amlops.core.locator import NO_LINE
from amlops.core.schemas import load_schemas
from amlops.handlers.objects import Resource, SpecError, schema_problems, source_of


def resource(spec: dict[str, Any], annotations: dict[str, str] | None = None) -> Resource:
    return Resource.of(
        {
            "kind": "Model",
            "metadata": {
                "name": "m",
                "namespace": "team",
                "uid": "u1",
                "generation": 3,
                "annotations": annotations or {},
            },
            "spec": spec,
        }
    )


SPEC = {"workspace": "ws", "model": {"name": "m", "version": "1", "path": "models/m"}}


def test_paths_resolve_against_the_manifest_file_inside_the_checkout(tmp_path: Path) -> None:
    obj = resource(SPEC, {"amlops.io/source-file": "manifests/models/m.yaml"})
    source = source_of(obj, tmp_path)
    target = source.resolve(("spec", "model", "path"), "../../assets/m")
    assert target == (tmp_path / "assets" / "m").resolve()
    assert source.field(("spec", "model", "path")) == "manifests/models/m.yaml spec.model.path"


def test_without_the_annotation_paths_resolve_against_the_root(tmp_path: Path) -> None:
    source = source_of(resource(SPEC), tmp_path)
    assert (
        source.resolve(("spec", "model", "path"), "models/m") == (tmp_path / "models/m").resolve()
    )
    assert source.field(("spec", "model", "path")) == "spec.model.path"


@pytest.mark.parametrize("value", ["../outside", "/etc/passwd", "a/../../x"])
def test_paths_leaving_the_checkout_are_refused_naming_the_field(
    tmp_path: Path, value: str
) -> None:
    source = source_of(resource(SPEC), tmp_path / "root")
    with pytest.raises(SpecError, match=r"^spec\.model\.path: .* outside the source root"):
        source.resolve(("spec", "model", "path"), value)


def test_tags_carry_object_commit_and_manifest() -> None:
    obj = resource(SPEC, {"amlops.io/git-commit": "abc", "amlops.io/source-file": "m.yaml"})
    assert obj.tags() == {
        "amlops-object": "team/m",
        "amlops-commit": "abc",
        "amlops-manifest": "m.yaml",
    }
    assert resource(SPEC).tags() == {"amlops-object": "team/m"}
    assert (obj.generation, obj.workspace, obj.deletion_policy, obj.suspended) == (
        3,
        "ws",
        "Delete",
        False,
    )


def test_schema_problems_name_the_field() -> None:
    assert schema_problems(resource(SPEC)) == []
    bad = {"workspace": "ws", "model": {"name": "m", "version": "1"}}
    assert schema_problems(resource(bad)) == ["spec.model: missing required field 'path'"]
    unknown = {**SPEC, "colour": "blue"}
    assert any(
        p.startswith("spec.colour: unknown field") for p in schema_problems(resource(unknown))
    )


def test_schema_findings_point_at_the_object_not_at_a_line_of_a_string() -> None:
    bad = {"workspace": "ws", "model": {"name": "m", "version": "1"}}
    (finding,) = load_schemas().check(resource(bad).manifest)
    assert (finding.file, finding.line, finding.column) == ("Model team/m", NO_LINE, NO_LINE)
    assert (finding.rule, finding.field) == ("schema", "spec.model")


def test_the_workspace_of_an_object_is_the_cores_answer() -> None:
    grant = Resource.of(
        {
            "kind": "RoleAssignment",
            "metadata": {"name": "g", "namespace": "team"},
            "spec": {"scope": {"workspace": "ws"}, "role": "AzureML Data Scientist"},
        }
    )
    assert grant.workspace == grant.manifest.workspace == "ws"
    assert resource(SPEC).workspace == "ws"
