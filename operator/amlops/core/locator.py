"""Where the fields of one object were written: a locator, passed in with the object.

A finding names a file, a line and a field. For a manifest read from Git the YAML document
knows the line of every field (``Document.locate``); a custom resource read from the API
server, or a resource a Pulumi program declares, has no text behind it, so a finding can only
name the object and the field. Each driver passes the locator it has: nobody dumps a dict to
text and parses it again to make up positions, which would point into a string, not a file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import yaml

from amlops.core.findings import Finding, Severity, format_path
from amlops.core.source import Document, FieldPath, Position

NO_LINE = 0  # Finding.line (and column) of an object with no text behind it


class Locator(Protocol):
    """``locate(path)``: the position of ``path`` or, when it is not written, of its deepest
    written parent. ``Document`` (a YAML document of a file) is one."""

    def locate(self, path: FieldPath, /) -> Position: ...


@dataclass(frozen=True)
class ObjectLocator:
    """An object with no text behind it: every field is at the object itself (``ref``, e.g.
    ``Model ns/name``), line ``NO_LINE``; the finding's field says which one."""

    ref: str

    def locate(self, path: FieldPath, /) -> Position:
        return Position(self.ref, NO_LINE, NO_LINE)


class _LocatedDocument(Document):
    """A Document whose positions come from a locator, not from YAML nodes."""

    def __init__(self, data: Mapping[str, Any], locator: Locator) -> None:
        # No node tree: ``locate`` is its only reader, and here it asks the locator instead.
        empty = yaml.MappingNode("tag:yaml.org,2002:map", [])
        super().__init__(locator.locate(()).file, 0, data, empty)
        self._locator = locator

    def locate(self, path: FieldPath) -> Position:
        return self._locator.locate(path)


def located_document(data: Mapping[str, Any], locator: Locator) -> Document:
    """``data`` with no text behind it as the Document of a ``Manifest`` segment, so it goes
    through the checks that take a Manifest (schemas, policy) with ``locator``'s positions."""
    return _LocatedDocument(data, locator)


def finding_at(
    locator: Locator,
    path: FieldPath,
    rule: str,
    message: str,
    severity: Severity = Severity.ERROR,
    kind: str | None = None,
) -> Finding:
    """A finding about ``path``, positioned by whatever ``locator`` the caller has (a YAML
    document, a manifest, an object with no text behind it)."""
    pos = locator.locate(path)
    return Finding(
        pos.file,
        pos.line,
        pos.column,
        rule,
        message,
        severity=severity,
        kind=kind,
        field=format_path(path),
    )
