"""Pipeline job YAML (as dicts) for the tests that submit jobs: to the fake cloud, or to any
backend (tests/conformance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ENV = "azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest"


def code_folder(root: Path, name: str) -> Path:
    """``root/src/<name>`` holding one script, ``<name>.py``."""
    folder = root / "src" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(f"print('{name}')\n")
    return folder


def three_steps(root: Path, model: dict[str, Any] | None = None) -> dict[str, Any]:
    """prep -> train -> evaluate with local code folders (absolute, as the reconciler passes
    them); ``train`` writes the pipeline's ``model`` output (``model``: more of its fields)."""

    def step(name: str, inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "command",
            "code": str(code_folder(root, name)),
            "command": f"python {name}.py",
            "environment": ENV,
            "inputs": inputs,
            "outputs": outputs,
        }

    return {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "outputs": {"model": {"type": "custom_model", **(model or {})}},
        "jobs": {
            "prep": step("prep", {}, {"data": {"type": "uri_folder"}}),
            "train": step(
                "train",
                {"data": "${{parent.jobs.prep.outputs.data}}"},
                {"model": "${{parent.outputs.model}}"},
            ),
            "evaluate": step(
                "evaluate",
                {"model": "${{parent.jobs.train.outputs.model}}"},
                {"report": {"type": "uri_folder"}},
            ),
        },
    }


def one_step(step: str, **command: Any) -> dict[str, Any]:
    """A pipeline of one command step, ``step``, on the ``cpu`` compute."""
    return {
        "type": "pipeline",
        "settings": {"default_compute": "azureml:cpu"},
        "jobs": {step: {"type": "command", **command}},
    }


def one_component(step: str, component: str | dict[str, Any]) -> dict[str, Any]:
    """A pipeline of one step running ``component`` (a reference or an inline definition)."""
    return one_step(step, component=component)


def named_component(root: Path, name: str, **fields: str) -> dict[str, Any]:
    """A named inline component running ``<name>.py`` from its own code folder."""
    return {
        "name": name,
        **fields,
        "type": "command",
        "code": str(code_folder(root, name)),
        "command": f"python {name}.py",
        "environment": ENV,
    }
