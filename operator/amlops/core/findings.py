"""A finding is one thing wrong (or worth a warning) in the manifests, with where it is."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Finding:
    """One finding. ``field`` is a dotted path into the object (``spec.deployments[0].model``)."""

    file: str
    line: int
    column: int
    rule: str
    message: str
    severity: Severity = Severity.ERROR
    kind: str | None = None
    name: str | None = None
    field: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def location(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = str(self.severity)
        return data


def format_path(path: tuple[str | int, ...]) -> str:
    """``("spec", "deployments", 0, "model")`` -> ``spec.deployments[0].model``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.file, f.line, f.column, f.rule, f.message))
