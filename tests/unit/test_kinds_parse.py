"""Each operator kind's ``parse`` reads the spec once into its typed spec, and a bad value is a
finding at its field: with the line a manifest's YAML gives (the CLI), or at the object when
there is no text behind it (the operator)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amlops.core.assets import ModelRef
from amlops.core.locator import NO_LINE, ObjectLocator
from amlops.core.manifests import Manifest, load_tree
from amlops.kinds import endpoint, model, pipeline
from amlops.kinds.base import RULE_SPEC, Lifecycle

MODEL = """\
apiVersion: amlops.io/v1alpha1
kind: Model
metadata:
  name: m
spec:
  workspace: ws
  deletionPolicy: Retain
  model:
    name: churn
    version: 3
    path: assets/m
    tags: {team: a}
"""

ENDPOINT = """\
apiVersion: amlops.io/v1alpha1
kind: Endpoint
metadata:
  name: e
spec:
  workspace: ws
  endpoint:
    name: churn
    traffic: {blue: 100}
  deployments:
    - name: blue
      model: azureml:churn:3
      code_configuration: {code: score, scoring_script: s.py}
      instance_count: 2
    - name: green
      model: ./local-files
"""

PIPELINE = """\
apiVersion: amlops.io/v1alpha1
kind: Pipeline
metadata:
  name: p
spec:
  workspace: ws
  schedule: {cron: "0 3 * * 1"}
  job:
    type: pipeline
    inputs:
      data: {type: uri_folder, path: ./data}
    jobs:
      train:
        command: python t.py
        code: src
        compute: azureml:gpu
"""


def _manifest(tmp_path: Path, text: str) -> Manifest:
    (tmp_path / "m.yaml").write_text(text)
    result = load_tree([tmp_path], root=tmp_path)
    (manifest,) = result.manifests
    return manifest


def _set(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_model_parses_into_its_typed_spec(tmp_path: Path) -> None:
    spec, findings = model.parse(_manifest(tmp_path, MODEL).spec, ObjectLocator("Model ns/m"))
    assert findings == []
    assert spec == model.ModelSpec(
        name="churn",
        path="assets/m",
        version="3",
        tags={"team": "a"},
        lifecycle=Lifecycle(deletion_policy="Retain"),
    )


def test_a_model_without_a_path_is_a_finding_at_its_line(tmp_path: Path) -> None:
    m = _manifest(tmp_path, _set(MODEL, "    path: assets/m\n", ""))
    spec, findings = model.parse(m.spec, m)
    assert spec is None
    (finding,) = findings
    assert (finding.rule, finding.field, finding.line) == (RULE_SPEC, "spec.model.path", 8)


def test_endpoint_parses_deployments_and_reports_what_cannot_be_served(tmp_path: Path) -> None:
    m = _manifest(tmp_path, ENDPOINT)
    spec, findings = endpoint.parse(m.spec, m)
    assert spec is not None
    assert spec.name == "churn" and spec.traffic == {"blue": 100}
    blue, green = spec.deployments
    assert (blue.model, blue.code, blue.scoring_script, blue.instance_count) == (
        ModelRef("churn", "3"),
        "score",
        "s.py",
        2,
    )
    assert green.model is None
    # served as written or not, the endpoint still reads: the finding stalls it
    (finding,) = findings
    assert (finding.field, finding.line) == ("spec.deployments[1].model", 16)


def test_only_an_mlflow_model_deploys_without_code(tmp_path: Path) -> None:
    """Azure ML's no-code deployment: an MLflow model needs no scoring script; a model written
    out as another type does (a model named by reference: its type is the Model's)."""
    no_code = _set(ENDPOINT, "      code_configuration: {code: score, scoring_script: s.py}\n", "")
    no_code = _set(
        no_code, "      model: ./local-files\n", "      model: {path: ./m, type: TYPE}\n"
    )
    mlflow = _manifest(tmp_path, _set(no_code, "TYPE", "mlflow_model"))
    spec, findings = endpoint.parse(mlflow.spec, mlflow)
    assert findings == [] and spec is not None
    assert [d.code for d in spec.deployments] == [None, None]
    custom = _manifest(tmp_path, _set(no_code, "TYPE", "custom_model"))
    _, findings = endpoint.parse(custom.spec, custom)
    (finding,) = findings
    assert (finding.field, finding.line) == ("spec.deployments[1].code_configuration", 14)


def test_endpoint_traffic_rules_are_findings_at_the_split(tmp_path: Path) -> None:
    m = _manifest(tmp_path, _set(ENDPOINT, "{blue: 100}", "{blue: 60, red: 40}"))
    _, findings = endpoint.parse(m.spec, m)
    assert ("spec.endpoint.traffic.red", 9) in [(f.field, f.line) for f in findings]


def test_an_unreadable_endpoint_value_is_a_finding_with_no_spec() -> None:
    body: dict[str, Any] = {
        "endpoint": {"traffic": {"blue": "most"}},
        "deployments": [{"name": "blue"}],
    }
    spec, findings = endpoint.parse(body, ObjectLocator("Endpoint ns/e"))
    assert spec is None
    (finding,) = findings
    assert (finding.file, finding.line) == ("Endpoint ns/e", NO_LINE)
    assert finding.field == "spec.endpoint.traffic.blue"


def test_pipeline_parses_its_graph_schedule_and_local_files(tmp_path: Path) -> None:
    m = _manifest(tmp_path, PIPELINE)
    spec, findings = pipeline.parse(m.spec, m)
    assert findings == [] and spec is not None and spec.graph is not None
    assert spec.graph.computes == frozenset({"gpu"})
    assert spec.cron == "0 3 * * 1" and spec.time_zone == "UTC"
    assert spec.local_files == (
        (("inputs", "data", "path"), "./data"),
        (("jobs", "train", "code"), "src"),
    )


def test_a_job_that_cannot_run_has_no_graph_and_a_finding_at_the_field(tmp_path: Path) -> None:
    m = _manifest(tmp_path, _set(PIPELINE, "        command: python t.py\n", ""))
    spec, findings = pipeline.parse(m.spec, m)
    assert spec is not None and spec.graph is None
    (finding,) = findings
    # the field is not written: the line is its step's
    assert (finding.field, finding.line) == ("spec.job.jobs.train.command", 13)
