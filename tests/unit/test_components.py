"""Components: the Component kind, the component files pipeline steps name (their interface
decides the binding checks, their findings land in their own file), ``azureml:`` references
to declared, undeclared and external components, registry components (a note, bindings
unchecked), single-component pipeline jobs and command jobs as one job graph."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from amlops.core.findings import Finding
from amlops.core.manifests import Manifest, load_tree
from amlops.core.validate import validate_paths
from amlops.kinds import component
from amlops.kinds.pipeline import JobGraph
from amlops.kinds.pipeline import parse as parse_pipeline
from amlops.reconcile.inputs import Source
from amlops.reconcile.pipeline import component_files, named_components

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "components"
REGISTRY_URI = "azureml://registries/azureml/components/text_generation_finetune/labels/latest"

PIPELINE = """\
type: pipeline
settings:
  default_compute: azureml:gpu
inputs:
  raw:
    type: uri_folder
    path: ./data
jobs:
  prep:
    type: command
    component: {prep}
    inputs:
      raw: ${{{{parent.inputs.raw}}}}
  train:
    type: command
    component: {train}
    inputs:
      data: {binding}
"""


def _pipeline(
    prep: str = "./components/prep.yml",
    train: str = "./components/train.yml",
    binding: str = "${{parent.jobs.prep.outputs.data}}",
) -> str:
    return PIPELINE.format(prep=prep, train=train, binding=binding)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The fixture platform and components, without its pipelines."""
    target = tmp_path / "repo"
    target.mkdir()
    shutil.copy(FIXTURES / "platform.yaml", target)
    shutil.copytree(FIXTURES / "components", target / "components")
    shutil.copytree(FIXTURES / "data", target / "data")
    return target


def _findings(root: Path, *, sdk: bool = False) -> list[tuple[str, str, int, str]]:
    """(rule, file relative to ``root``, line, field) of every finding."""
    report = validate_paths([root], sdk=sdk)
    return [
        (f.rule, Path(os.path.relpath(os.path.abspath(f.file), root)).as_posix(), f.line, f.field)
        for f in report.findings
    ]


def _errors(root: Path) -> list[tuple[str, str, int, str]]:
    return [f for f in _findings(root) if not f[0].startswith(("ref.component-unchecked",))]


# -- the fixtures: valid as Azure ML and as amlops sees them -----------------------------------


@pytest.mark.parametrize(
    ("loader", "name"),
    [
        ("load_component", "components/prep.yml"),
        ("load_component", "components/train.yml"),
        ("load_component", "components/prep_train.yml"),
        ("load_job", "two_steps.yml"),
        ("load_job", "nested.yml"),
        ("load_job", "single.yml"),
        ("load_job", "command_job.yml"),
        ("load_job", "finetune.yml"),
    ],
)
def test_every_fixture_loads_with_the_azure_ai_ml_loaders(loader: str, name: str) -> None:
    import azure.ai.ml as sdk

    logging.getLogger("azure.ai.ml").setLevel(logging.ERROR)
    getattr(sdk, loader)(FIXTURES / name)  # raises on a file Azure ML would refuse


def test_the_fixtures_validate_and_only_the_registry_component_gets_a_note() -> None:
    report = validate_paths([FIXTURES], sdk=True)
    assert report.errors == []
    assert [(w.rule, Path(w.file).name, w.line, w.field) for w in report.warnings] == [
        ("ref.component-unchecked", "finetune.yml", 18, "jobs.finetune.component")
    ]
    assert REGISTRY_URI in report.warnings[0].message
    assert report.kinds() == {
        "Component": 3,
        "ComputeCluster": 1,
        "Pipeline": 5,
        "Workspace": 1,
    }


# -- the Component kind ------------------------------------------------------------------------


def _manifests(root: Path) -> list[Manifest]:
    return load_tree([root], root=root).manifests


def test_a_component_file_is_a_component_object_with_its_typed_spec() -> None:
    m = next(m for m in _manifests(FIXTURES) if m.kind == "Component" and m.name == "train_model-1")
    spec, findings = component.parse(m.spec, m)
    assert findings == []
    assert spec is not None
    assert (spec.name, spec.version, spec.type, spec.code) == (
        "train_model",
        "1",
        "command",
        "./src",
    )
    assert set(spec.inputs) == {"data", "epochs", "note"}
    assert spec.inputs["epochs"] == {"type": "integer", "default": 2}
    assert set(spec.outputs) == {"model"}
    assert spec.required_inputs() == ["data"]
    nested = next(m for m in _manifests(FIXTURES) if m.name == "prep_and_train-1")
    pipeline_spec, _ = component.parse(nested.spec, nested)
    assert pipeline_spec is not None and pipeline_spec.type == "pipeline"
    assert list(pipeline_spec.jobs) == ["prep", "train"]


def test_a_component_manifest_that_cannot_run_is_a_finding_at_its_field(repo: Path) -> None:
    (repo / "component.yaml").write_text(
        "apiVersion: amlops.io/v1alpha1\n"
        "kind: Component\n"
        "metadata:\n"
        "  name: broken\n"
        "spec:\n"
        "  workspace: mlw-dev\n"
        "  component:\n"
        "    name: broken\n"
        "    type: command\n"
        "    inputs:\n"
        "      x: {type: string}\n"
        "    command: echo ${{inputs.y}}\n"
    )
    assert _errors(repo) == [("spec.invalid", "component.yaml", 12, "spec.component.command")]
    m = next(m for m in _manifests(repo) if m.name == "broken")
    spec, findings = component.parse(m.spec, m)
    assert spec is None
    assert [(f.rule, f.line) for f in findings] == [("spec.invalid", 12)]


def test_component_refs_are_told_apart() -> None:
    assert component.component_ref({"command": "x"}) == component.ComponentRef.INLINE
    assert component.component_ref("./train.yml") == component.ComponentRef.FILE
    assert component.component_ref("file:./train.yml") == component.ComponentRef.FILE
    assert component.component_ref("azureml:train:1") == component.ComponentRef.ASSET
    assert component.component_ref("azureml:train@latest") == component.ComponentRef.ASSET
    assert component.component_ref(REGISTRY_URI) == component.ComponentRef.REGISTRY
    versions = REGISTRY_URI.replace("/labels/latest", "/versions/3")
    assert component.component_ref(versions) == component.ComponentRef.REGISTRY


# -- component files: their interface decides the binding checks -------------------------------


def test_steps_running_component_files_bind_to_their_declared_outputs(repo: Path) -> None:
    """Before components were read, every binding to a component step's output was
    reported: the outputs are declared in the component file, not in the step."""
    (repo / "pipeline.yml").write_text(_pipeline())
    assert _findings(repo) == []


def test_a_binding_to_an_output_the_component_file_lacks_is_reported_at_the_binding(
    repo: Path,
) -> None:
    (repo / "pipeline.yml").write_text(_pipeline(binding="${{parent.jobs.prep.outputs.nope}}"))
    assert _errors(repo) == [("ref.binding", "pipeline.yml", 18, "jobs.train.inputs.data")]


def test_an_input_the_component_does_not_declare_is_reported_at_the_step(repo: Path) -> None:
    text = _pipeline() + "      epochz: 3\n"
    (repo / "pipeline.yml").write_text(text)
    assert _errors(repo) == [("spec.invalid", "pipeline.yml", 19, "jobs.train.inputs.epochz")]


def test_a_required_input_left_out_is_reported_at_the_step(repo: Path) -> None:
    text = _pipeline().replace("    inputs:\n      data: ${{parent.jobs.prep.outputs.data}}\n", "")
    (repo / "pipeline.yml").write_text(text)
    assert _errors(repo) == [("spec.invalid", "pipeline.yml", 14, "jobs.train.inputs")]


def test_a_problem_inside_a_component_file_is_reported_in_that_file(repo: Path) -> None:
    (repo / "components" / "bad.yml").write_text(
        "name: bad\n"
        "type: command\n"
        "inputs:\n"
        "  data: {type: uri_folder}\n"
        "command: python x.py ${{inputs.missing}}\n"
    )
    (repo / "pipeline.yml").write_text(_pipeline(train="./components/bad.yml"))
    assert _errors(repo) == [("spec.invalid", "components/bad.yml", 5, "command")]


def test_a_nested_pipeline_component_is_checked_in_its_own_file(repo: Path) -> None:
    nested = repo / "components" / "prep_train.yml"
    nested.write_text(
        nested.read_text().replace(
            "${{parent.jobs.prep.outputs.data}}", "${{parent.jobs.x.outputs.y}}"
        )
    )
    (repo / "pipeline.yml").write_text(
        "type: pipeline\n"
        "settings: {default_compute: azureml:gpu}\n"
        "inputs:\n"
        "  raw: {type: uri_folder, path: ./data}\n"
        "jobs:\n"
        "  fit:\n"
        "    type: pipeline\n"
        "    component: ./components/prep_train.yml\n"
        "    inputs:\n"
        "      raw: ${{parent.inputs.raw}}\n"
    )
    errors = _errors(repo)
    # the component file is also a Component object of its own (it has a $schema): the
    # pipeline reports where the broken binding is written, in the component file
    assert ("spec.invalid", "components/prep_train.yml", 24, "jobs.train.inputs.data") in errors
    assert all(file == "components/prep_train.yml" for _, file, _, _ in errors), errors


def test_component_files_that_include_each_other_are_a_finding(repo: Path) -> None:
    (repo / "components" / "loop.yml").write_text(
        "name: loop\n"
        "type: pipeline\n"
        "jobs:\n"
        "  again:\n"
        "    type: pipeline\n"
        "    component: ./loop.yml\n"
    )
    (repo / "pipeline.yml").write_text(
        "type: pipeline\n"
        "settings: {default_compute: azureml:gpu}\n"
        "jobs:\n"
        "  loop:\n"
        "    type: pipeline\n"
        "    component: ./components/loop.yml\n"
    )
    assert ("spec.invalid", "components/loop.yml", 6, "jobs.again.component") in _errors(repo)


# -- azureml: references and registries ------------------------------------------------------


def test_an_azureml_reference_to_a_declared_component_uses_its_interface(repo: Path) -> None:
    (repo / "pipeline.yml").write_text(
        _pipeline(prep="azureml:prep_data:1", train="azureml:train_model@latest")
    )
    assert _findings(repo) == []
    (repo / "pipeline.yml").write_text(
        _pipeline(prep="azureml:prep_data:1", binding="${{parent.jobs.prep.outputs.nope}}")
    )
    assert _errors(repo) == [("ref.binding", "pipeline.yml", 18, "jobs.train.inputs.data")]


def test_an_azureml_pipeline_component_is_read_with_the_files_next_to_it(repo: Path) -> None:
    """``azureml:prep_and_train:1`` names ./prep.yml and ./train.yml: they are relative to its
    own file, wherever the pipeline naming it is, and what is wrong in it is reported there."""
    (repo / "pipelines").mkdir()
    (repo / "pipelines" / "fit.yml").write_text(
        "type: pipeline\n"
        "settings: {default_compute: azureml:gpu}\n"
        "inputs:\n"
        "  raw: {type: uri_folder, path: ../data}\n"
        "jobs:\n"
        "  fit:\n"
        "    type: pipeline\n"
        "    component: azureml:prep_and_train@latest\n"
        "    inputs:\n"
        "      raw: ${{parent.inputs.raw}}\n"
        "  show:\n"
        "    type: command\n"
        "    command: cat ${{inputs.m}}/model.txt\n"
        "    inputs: {m: '${{parent.jobs.fit.outputs.%s}}'}\n"
    )
    text = (repo / "pipelines" / "fit.yml").read_text()
    (repo / "pipelines" / "fit.yml").write_text(text % "model")
    assert _findings(repo) == []
    graph = _graph(repo, "fit")
    assert _shape(graph) == [
        ("fit.prep", []),
        ("fit.train", ["fit.prep"]),
        ("show", ["fit.train"]),
    ]
    assert graph.step("fit.train").code == "../components/src"
    (repo / "pipelines" / "fit.yml").write_text(text % "nope")
    assert _errors(repo) == [("ref.binding", "pipelines/fit.yml", 14, "jobs.show.inputs.m")]
    (repo / "pipelines" / "fit.yml").write_text(text % "model")
    nested = repo / "components" / "prep_train.yml"
    nested.write_text(nested.read_text().replace("./train.yml", "./missing.yml"))
    errors = _errors(repo)  # also once for the Component object the file is
    assert ("ref.missing-file", "components/prep_train.yml", 22, "jobs.train.component") in errors
    assert all(file == "components/prep_train.yml" for _, file, _, _ in errors), errors


def test_azureml_components_that_include_each_other_are_a_finding(repo: Path) -> None:
    (repo / "components" / "loop.yml").write_text(
        "$schema: https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json\n"
        "name: loop\n"
        "version: 1\n"
        "type: pipeline\n"
        "jobs:\n"
        "  again:\n"
        "    type: pipeline\n"
        "    component: azureml:loop:1\n"
    )
    (repo / "pipeline.yml").write_text(
        "type: pipeline\n"
        "settings: {default_compute: azureml:gpu}\n"
        "jobs:\n"
        "  loop:\n"
        "    type: pipeline\n"
        "    component: azureml:loop:1\n"
    )
    assert ("spec.invalid", "components/loop.yml", 8, "jobs.again.component") in _errors(repo)


def test_latest_is_the_highest_version_compared_as_numbers_when_both_are(repo: Path) -> None:
    train = (repo / "components" / "train.yml").read_text()
    for version in ("2", "10", "1.5"):
        (repo / "components" / f"train_{version}.yml").write_text(
            train.replace("version: 1", f"version: {version!r}")
        )
    repository = component.Repository(_manifests(repo))
    found = repository.find("mlw-dev", "azureml:train_model@latest")
    assert found is not None and found.name == "train_model-10"  # not "2", the highest as text
    found = repository.find("mlw-dev", "azureml:train_model:1.5")
    assert found is not None and found.name == "train_model-1.5"
    assert repository.find("mlw-dev", "azureml:train_model:3") is None
    assert repository.find("mlw-other", "azureml:train_model:1") is None
    assert repository.find("mlw-dev", REGISTRY_URI) is None


def test_an_azureml_reference_to_an_undeclared_component_is_an_error(repo: Path) -> None:
    (repo / "pipeline.yml").write_text(_pipeline(prep="azureml:prep_data:2"))
    assert _errors(repo) == [("ref.component", "pipeline.yml", 11, "jobs.prep.component")]


def test_an_external_component_is_accepted_with_a_note_and_unchecked_bindings(
    repo: Path,
) -> None:
    (repo / "amlops.yaml").write_text("external:\n  components: [shared_prep]\n")
    (repo / "pipeline.yml").write_text(
        _pipeline(prep="azureml:shared_prep:4", binding="${{parent.jobs.prep.outputs.anything}}")
    )
    assert _findings(repo) == [
        ("ref.component-unchecked", "pipeline.yml", 11, "jobs.prep.component")
    ]


def test_a_registry_component_is_a_note_and_its_bindings_are_unchecked(repo: Path) -> None:
    (repo / "pipeline.yml").write_text(
        _pipeline(prep=REGISTRY_URI, binding="${{parent.jobs.prep.outputs.pytorch_model}}")
    )
    report = validate_paths([repo], sdk=False)
    assert report.ok
    assert [(w.rule, w.line, w.field) for w in report.warnings] == [
        ("ref.component-unchecked", 11, "jobs.prep.component")
    ]


# -- one job graph for every shape of job ----------------------------------------------------


def _graph(root: Path, name: str) -> JobGraph:
    """The job graph as ``amlops up`` reads it: with the repository's Components."""
    manifests = _manifests(root)
    m = next(m for m in manifests if m.kind == "Pipeline" and m.name == name)
    source = Source.of(m, components=component.Repository(manifests))
    spec, findings = parse_pipeline(m.spec, m, component_files(source), named_components(source))
    assert findings == []
    assert spec is not None and spec.graph is not None
    return spec.graph


def _shape(graph: JobGraph) -> list[tuple[str, list[str]]]:
    return [(s.name, sorted(s.depends_on)) for s in graph.steps]


def test_a_single_component_pipeline_job_is_the_steps_of_its_component() -> None:
    graph = _graph(FIXTURES, "single")
    assert _shape(graph) == [("prep", []), ("train", ["prep"])]
    train = graph.step("train")
    assert train.outputs["model"] == "${{parent.outputs.model}}"
    assert train.code == "components/src"  # relative to the manifest, as the job's own paths


def test_a_command_job_is_one_step() -> None:
    graph = _graph(FIXTURES, "command_job")
    assert _shape(graph) == [("main", [])]
    assert graph.step("main").inputs == {"raw": "${{parent.inputs.raw}}"}
    assert graph.computes == frozenset({"gpu"})


def test_a_nested_pipeline_component_becomes_its_inner_steps_with_bindings_mapped() -> None:
    graph = _graph(FIXTURES, "nested")
    assert _shape(graph) == [
        ("fit.prep", []),
        ("fit.train", ["fit.prep"]),
        ("report", ["fit.train"]),
    ]
    assert graph.step("fit.prep").inputs == {"raw": "${{parent.inputs.raw}}"}
    assert graph.step("fit.train").inputs["epochs"] == 4
    assert graph.step("report").inputs == {"model": "${{parent.jobs.fit.train.outputs.model}}"}


def test_a_registry_component_step_keeps_its_uri_for_the_backend() -> None:
    graph = _graph(FIXTURES, "finetune")
    assert graph.step("finetune").component == REGISTRY_URI
    assert graph.step("prep").component is None
    assert _shape(graph) == [("prep", []), ("finetune", ["prep"]), ("evaluate", ["finetune"])]


def test_a_command_job_binding_to_an_undeclared_input_is_reported_at_its_command(
    repo: Path,
) -> None:
    text = (FIXTURES / "command_job.yml").read_text().replace("inputs.raw}}", "inputs.rav}}")
    (repo / "command_job.yml").write_text(text)
    assert _errors(repo) == [("spec.invalid", "command_job.yml", 4, "command")]


# -- hostile paths -----------------------------------------------------------------------------


def test_a_component_path_outside_the_repository_is_a_finding_and_is_not_read(
    repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.yml").write_text("name: x\ntype: command\ncommand: cat /etc/passwd\n")
    (repo / "pipeline.yml").write_text(_pipeline(prep="../outside.yml"))
    assert _errors(repo) == [("files.outside-root", "pipeline.yml", 11, "jobs.prep.component")]
    (repo / "pipeline.yml").write_text(_pipeline(prep="/etc/passwd"))
    assert _errors(repo) == [("files.outside-root", "pipeline.yml", 11, "jobs.prep.component")]


def test_a_link_to_a_component_outside_the_repository_is_refused(
    repo: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.yml").write_text("name: x\ntype: command\ncommand: echo\n")
    (repo / "components" / "link.yml").symlink_to(tmp_path / "outside.yml")
    (repo / "pipeline.yml").write_text(_pipeline(prep="./components/link.yml"))
    assert _errors(repo) == [
        ("load.outside-root", "components/link.yml", 1, ""),  # not loaded as a manifest
        ("files.outside-root", "pipeline.yml", 11, "jobs.prep.component"),  # nor as a component
    ]


def test_code_a_component_file_names_outside_the_repository_is_a_finding_in_that_file(
    repo: Path,
) -> None:
    prep = repo / "components" / "prep.yml"
    prep.write_text(prep.read_text().replace("code: ./src", "code: ../../.."))
    (repo / "pipeline.yml").write_text(_pipeline())
    errors = _errors(repo)
    # once for the Component object the file is, once for the pipeline that runs it
    assert errors == [("files.outside-root", "components/prep.yml", 12, "code")] * 2


def test_findings_carry_the_pipeline_object(repo: Path) -> None:
    (repo / "components" / "bad.yml").write_text("name: bad\ntype: command\n")
    (repo / "pipeline.yml").write_text(_pipeline(train="./components/bad.yml"))
    found: list[Finding] = validate_paths([repo], sdk=False).errors
    assert [(f.kind, f.name, f.rule) for f in found] == [("Pipeline", "pipeline", "spec.invalid")]


def test_a_component_written_out_in_the_step_has_the_same_checks(repo: Path) -> None:
    text = (
        "type: pipeline\n"
        "settings: {default_compute: azureml:gpu}\n"
        "jobs:\n"
        "  count:\n"
        "    type: command\n"
        "    component:\n"
        "      type: command\n"
        "      inputs: {n: {type: integer}}\n"
        "      outputs: {out: {type: uri_folder}}\n"
        "      command: echo ${{inputs.n}} > ${{outputs.out}}/n.txt\n"
        "    inputs: {n: 3}\n"
        "  show:\n"
        "    type: command\n"
        "    command: cat ${{inputs.n}}/n.txt\n"
        "    inputs: {n: '${{parent.jobs.count.outputs.%s}}'}\n"
    )
    (repo / "pipeline.yml").write_text(text % "out")
    assert _findings(repo) == []
    (repo / "pipeline.yml").write_text(text % "nope")
    assert _errors(repo) == [("ref.binding", "pipeline.yml", 15, "jobs.show.inputs.n")]


def test_a_pipeline_component_output_no_inner_job_writes_is_reported(repo: Path) -> None:
    nested = repo / "components" / "prep_train.yml"
    nested.write_text(
        nested.read_text().replace("    outputs:\n      model: ${{parent.outputs.model}}\n", "")
    )
    nested_job = (FIXTURES / "nested.yml").read_text()
    (repo / "nested.yml").write_text(nested_job)
    assert _errors(repo) == [("spec.invalid", "nested.yml", 26, "jobs.report.inputs.model")]
