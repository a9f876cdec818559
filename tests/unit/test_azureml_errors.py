"""How the ``azure-ai-ml`` loaders' errors are read back onto the fields the user wrote.

load_job reports a command job's mistakes as one error at ``*`` (the whole document) whose
message nests the CommandJobSchema's own errors as JSON; those are read, so each finding lands
on its field's line, not on the document's first line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amlops.core import azureml
from amlops.core.validate import validate_paths
from tests.platform_text import cluster, workspace

COMMAND_JOB = {
    "type": "command",
    "command": "python train.py --data ${{inputs.iris}}",
    "inputs": {"iris": {"type": "uri_foldr", "path": "https://example.com/iris.csv"}},
    "environment": "azureml:AzureML-minimal:1",
    "compute": "azureml:gpu",
}


def test_a_command_job_error_names_the_field_not_the_document() -> None:
    ((path, message),) = azureml.verdict("load_job", COMMAND_JOB, "/tmp/job.yml")
    assert path == ("inputs", "iris", "type")
    # the shapes the input could have taken, in one finding; not the ones it is far from
    assert "Value 'uri_foldr' passed is not in set ['uri_file', 'uri_folder']" in message
    assert "Unknown field" not in message and "Not a valid integer" not in message


def test_each_mistake_of_a_command_job_is_a_finding_at_its_line(tmp_path: Path) -> None:
    job = (
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\n"
        "type: command\n"
        "name: two_mistakes\n"
        "command: python train.py --data ${{inputs.iris}}\n"
        "inputs:\n"
        "  iris:\n"
        "    type: uri_foldr\n"
        "    path: https://example.com/iris.csv\n"
        "environment: azureml:AzureML-minimal:1\n"
        "compute: azureml:gpu\n"
        "resources:\n"
        "  instance_count: many\n"
    )
    texts = {"workspace.yaml": workspace(), "cluster.yaml": cluster(), "job.yml": job}
    report = validate_paths([], texts=texts)
    assert sorted((f.file, f.line, f.rule, f.field) for f in report.errors) == [
        ("job.yml", 7, "azureml.schema", "inputs.iris.type"),
        ("job.yml", 12, "azureml.schema", "resources.instance_count"),
    ]


def test_a_pipeline_manifests_command_job_error_lands_on_its_line() -> None:
    pipeline = (
        "apiVersion: amlops.io/v1alpha1\n"
        "kind: Pipeline\n"
        "metadata:\n"
        "  name: train\n"
        "spec:\n"
        "  workspace: mlw-dev\n"
        "  job:\n"
        "    type: command\n"
        "    command: echo hi\n"
        "    environment: azureml:AzureML-minimal:1\n"
        "    compute: azureml:gpu\n"
        "    resources:\n"
        "      instance_count: many\n"
    )
    texts = {"workspace.yaml": workspace(), "cluster.yaml": cluster(), "train.yaml": pipeline}
    report = validate_paths([], texts=texts)
    assert [(f.file, f.line, f.rule, f.field) for f in report.errors] == [
        ("train.yaml", 13, "azureml.schema", "spec.job.resources.instance_count")
    ]


def _nested(depth: int) -> dict[str, Any]:
    """A validation result whose message nests another ``depth`` times."""
    inner: Any = {"resources": {"instance_count": ["Not a valid integer."]}}
    for _ in range(depth):
        text = f"Validation for CommandJobSchema failed:\n\n {json.dumps(inner)} \n\n more"
        inner = {"result": "Failed", "errors": [{"message": text, "path": "*"}]}
    return dict(inner)


def test_nested_errors_are_read_to_a_bounded_depth() -> None:
    assert list(azureml._from_json(_nested(2))) == [
        (("resources", "instance_count"), "Not a valid integer.")
    ]
    # deeper than _NESTING: the innermost message read is kept as it is, at the document
    ((path, message),) = azureml._from_json(_nested(azureml._NESTING + 3))
    assert path == () and message.startswith("Validation for CommandJobSchema failed")


def test_a_whole_document_error_naming_an_attribute_lands_on_it() -> None:
    """load_serverless_endpoint's type check is a bare JSON result at ``*`` that names the
    attribute in its message."""
    endpoint = {"name": "llama", "model_id": ["Meta-Llama-3-8B-Instruct"]}
    ((path, message),) = azureml.verdict("load_serverless_endpoint", endpoint, "/tmp/s.yml")
    assert path == ("model_id",)
    assert message == "Type of attr model_id is of type <class 'list'>, not <class 'str'>"
