"""A consequence of another error is not reported again: an object that fails its schema still
exists for the objects that reference it, so only its own finding is reported."""

from __future__ import annotations

import textwrap

from amlops.core import refs
from amlops.core.manifests import load_tree
from amlops.core.validate import validate_paths
from tests.platform_text import cluster, workspace

_PIPELINE = """\
apiVersion: amlops.io/v1alpha1
kind: Pipeline
metadata:
  name: {name}
spec:
  workspace: mlw-dev
  job:
    type: pipeline
    jobs:
      step:
        type: command
        command: echo hello
        environment: azureml:AzureML-sklearn-1.5@latest
        compute: azureml:gpu
"""


def _texts(*, environment: str = "dev", max_instances: str = "2") -> dict[str, str]:
    texts = {
        "workspace.yaml": workspace(environment),
        "cluster.yaml": cluster(max_instances),
    }
    for name in ("prep", "train", "evaluate"):
        texts[f"{name}.yaml"] = _PIPELINE.format(name=name)
    return texts


def _errors(texts: dict[str, str]) -> list[tuple[str, str]]:
    report = validate_paths([], texts={k: textwrap.dedent(v) for k, v in texts.items()}, sdk=False)
    return [(f.file, f.rule) for f in report.errors]


def test_the_fixture_is_valid() -> None:
    assert _errors(_texts()) == []


def test_an_invalid_cluster_is_reported_once_not_by_every_pipeline_on_it() -> None:
    errors = _errors(_texts(max_instances="lots"))
    assert len(errors) == 1
    assert errors[0][0] == "cluster.yaml" and errors[0][1].startswith("schema")


def test_an_invalid_workspace_is_reported_once_not_by_every_object_in_it() -> None:
    errors = _errors(_texts(environment="staging-or-so"))
    assert len(errors) == 1
    assert errors[0][0] == "workspace.yaml"


def test_an_undeclared_cluster_is_still_reported_by_each_user() -> None:
    texts = _texts()
    del texts["cluster.yaml"]
    expected = [(f"{n}.yaml", "ref.compute") for n in ("evaluate", "prep", "train")]
    assert sorted(_errors(texts)) == expected


def test_an_object_bound_to_no_workspace_is_not_told_again_but_its_other_references_are() -> None:
    # The loader reports a plain file it cannot bind once (load.no-default-workspace); the
    # reference checks then say nothing more about the workspace, and still check the rest.
    text = _PIPELINE.format(name="prep").replace("  workspace: mlw-dev\n", "")
    (pipeline,) = load_tree([], {"prep.yaml": text}).manifests
    assert pipeline.workspace is None
    assert [f.rule for f in refs.check([pipeline], [pipeline])] == ["ref.compute"]
