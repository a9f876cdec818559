"""A finding is one thing wrong (or worth a warning) in the manifests, with where it is."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any

from amlops.core.credentials import redact_text, scrub


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

    def __post_init__(self) -> None:
        # Messages quote values (schema errors, the Azure ML SDK's own): a credential in a known
        # format never gets into one, whoever wrote the message. A key can be one too (field).
        object.__setattr__(self, "message", scrub(self.message))
        object.__setattr__(self, "field", scrub(self.field))

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


def redact(findings: Sequence[Finding], literals: Iterable[str]) -> list[Finding]:
    """``findings`` with the secret values ``literals`` (``credentials.secret_literals`` of the
    manifests) masked in their messages: a password under ``DB_PASSWORD`` has no format to
    recognise, but a schema error about it would still quote it."""
    literals = [t for t in literals if any(t in f.message for f in findings)]
    if not literals:
        return list(findings)
    return [replace(f, message=redact_text(f.message, literals)) for f in findings]


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.file, f.line, f.column, f.rule, f.message))
