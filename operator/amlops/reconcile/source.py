"""Where an object was written, for the pure reconcilers: field paths -> "file:line", and
relative paths -> absolute ones (Azure ML resolves ``path:``/``code:`` against the YAML file)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlops.core.findings import format_path
from amlops.core.manifests import Manifest

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Source:
    locate: Callable[[FieldPath], str]  # "file:line" of a field of the object
    resolve: Callable[[FieldPath, str], Path]  # a path written at a field -> absolute path

    def field(self, path: FieldPath) -> str:
        """``manifests/x.yaml:12 spec.model.path``: where to look, for messages."""
        where = self.locate(path)
        return f"{where} {format_path(path)}" if where else format_path(path)

    @classmethod
    def of(cls, manifest: Manifest) -> Source:
        def locate(path: FieldPath) -> str:
            pos = manifest.locate(path)
            return f"{pos.file}:{pos.line}"

        return cls(locate, manifest.resolve_path)

    @classmethod
    def rooted(cls, base: Path) -> Source:
        """For objects with no file behind them (a custom resource): paths resolve below
        ``base`` and fields are named without a line."""
        return cls(lambda _path: "", lambda _path, value: (base / value).resolve())


def digest_of(value: Any) -> str:
    """A stable sha256 of JSON-able data (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
