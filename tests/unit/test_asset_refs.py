"""How a manifest names a model: workspace assets and the model catalog's registry models."""

from __future__ import annotations

import pytest

from amlops.core.assets import ModelRef, parse_model_ref


@pytest.mark.parametrize(
    ("written", "ref"),
    [
        ("azureml:churn:3", ModelRef("churn", "3")),
        ("azureml:churn@latest", ModelRef("churn")),
        (
            "azureml://registries/azureml/models/phi-3-mini/versions/3",
            ModelRef("phi-3-mini", "3", "azureml"),
        ),
        (
            "azureml://registries/azureml-meta/models/Llama-2-7b/labels/latest",
            ModelRef("Llama-2-7b", None, "azureml-meta"),
        ),
    ],
)
def test_model_references_parse_and_print_as_written(written: str, ref: ModelRef) -> None:
    assert parse_model_ref(written) == ref
    expected = written.removeprefix("azureml:") if ref.registry is None else written
    assert str(ref) == expected


@pytest.mark.parametrize(
    "written",
    [
        "azureml:churn@champion",  # a label other than latest
        "azureml://registries/azureml/models/phi-3-mini",  # no version or label
        "azureml://registries/azureml/environments/minimal/versions/1",  # not a model
        "./model",
    ],
)
def test_what_names_no_model_version_is_none(written: str) -> None:
    assert parse_model_ref(written) is None
