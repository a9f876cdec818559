"""Random and mutated manifests never crash validation: exit 0 or 1, never 2, no traceback."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amlops.cli import main

ROOT = Path(__file__).resolve().parents[2]
SEEDS = sorted((ROOT / "manifests").rglob("*.yaml")) + sorted(
    (ROOT / "tests" / "fixtures" / "broken").glob("*.yaml")
)
SEED_TEXTS = [p.read_text() for p in SEEDS]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = draw(st.sampled_from(SEED_TEXTS)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["drop", "dup", "garble", "value", "indent", "alias"]))
        if op == "drop":
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "garble":
            lines[i] = draw(st.text(max_size=30))
        elif op == "value" and ":" in lines[i]:
            key = lines[i].split(":", 1)[0]
            value = yaml.safe_dump(draw(json_values), default_flow_style=True).strip()
            lines[i] = f"{key}: {value}".replace("\n", " ")
        elif op == "alias":  # anchors and aliases, recursive ones included
            lines.insert(i, draw(st.sampled_from(["x: &a [*a]", "y: &b {k: *b}", "z: *nope"])))
        elif op == "indent":
            lines[i] = " " * draw(st.integers(0, 6)) + lines[i].lstrip()
    return "\n".join(lines) + "\n"


@st.composite
def structured(draw: st.DrawFn) -> str:
    kind = draw(
        st.sampled_from(
            ["Workspace", "ComputeCluster", "RoleAssignment", "Model", "Pipeline", "Endpoint"]
        )
    )
    doc = {
        "apiVersion": "amlops.io/v1alpha1",
        "kind": kind,
        "metadata": draw(st.dictionaries(st.sampled_from(["name", "labels"]), json_values)),
        "spec": draw(json_values),
    }
    return yaml.safe_dump(doc)


def _validate(text: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "m.yaml").write_text(text)
        return main(["validate", tmp, "--output", "json"])


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=st.one_of(mutated(), structured(), st.text(max_size=200)))
def test_validate_never_crashes(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = _validate(text)
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    data = json.loads(out.out)
    assert set(data) == {"manifests", "kinds", "errors", "warnings"}
    for finding in data["errors"]:
        assert finding["line"] >= 1 and finding["file"].endswith("m.yaml")
