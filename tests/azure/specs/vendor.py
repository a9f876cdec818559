"""Copy the spec files the Azure ML tests validate against out of azure-rest-api-specs.

    python tests/azure/specs/vendor.py /path/to/azure-rest-api-specs

Copies the ``mfe.json`` / ``machineLearningServices.json`` (and ``workspaceRP.json`` where the
workspace lives there) of each api-version in :data:`API_VERSIONS`, plus every file they
``$ref`` (common-types, registries.json), never the ``examples/``. Unchanged bytes.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RP = "specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices"
API_VERSIONS = (
    "preview/2022-02-01-preview",
    "preview/2023-04-01-preview",
    "preview/2023-08-01-preview",
    "preview/2024-01-01-preview",
    "stable/2023-04-01",
    "stable/2024-04-01",
)
ROOT_FILES = ("mfe.json", "machineLearningServices.json", "workspaceRP.json")


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "x-ms-examples":
                continue
            if key == "$ref" and isinstance(value, str):
                target = value.split("#", 1)[0]
                if target:
                    found.add(target)
            else:
                found |= _refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _refs(item)
    return found


def closure(source: Path) -> list[Path]:
    todo = [
        source / RP / version / name
        for version in API_VERSIONS
        for name in ROOT_FILES
        if (source / RP / version / name).exists()
    ]
    seen: set[Path] = set()
    while todo:
        path = todo.pop().resolve()
        if path in seen:
            continue
        seen.add(path)
        for ref in _refs(json.loads(path.read_text())):
            if not re.search(r"(^|/)examples/", ref):
                todo.append(path.parent / ref)
    return sorted(seen)


def main(source: Path) -> None:
    source = source.resolve()
    target = HERE / "specification"
    if target.exists():
        shutil.rmtree(target)
    for path in closure(source):
        rel = path.relative_to(source)
        (HERE / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, HERE / rel)
        print(rel)
    shutil.copyfile(source / "LICENSE", HERE / "LICENSE")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
