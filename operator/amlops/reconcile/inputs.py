"""What a pure reconciler takes besides the spec: where the object was written (field paths ->
"file:line") and the files it names (relative paths -> absolute ones: Azure ML resolves
``path:``/``code:`` against the YAML file); and the digest its fingerprints are made of.

``resolve`` is where a reconciler learns which files to read, so it applies the containment
rule (``amlops.core.files.admit``): a path outside the source root, a special file or a
folder over the size limits raises ``PathRefusedError`` (a ValueError naming the field), which
the drivers turn into a Stalled condition before any backend reads a byte.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlops.core.findings import format_path
from amlops.core.limits import Limits
from amlops.core.manifests import Manifest
from amlops.core.source import FieldPath


@dataclass(frozen=True)
class Source:
    locate: Callable[[FieldPath], str]  # "file:line" of a field of the object
    resolve: Callable[[FieldPath, str], Path]  # a path written at a field -> absolute path

    def field(self, path: FieldPath) -> str:
        """``manifests/x.yaml:12 spec.model.path``: where to look, for messages."""
        where = self.locate(path)
        return f"{where} {format_path(path)}" if where else format_path(path)

    @classmethod
    def of(cls, manifest: Manifest, limits: Limits | None = None) -> Source:
        """Paths resolve against the manifest's file and stay inside its source root."""

        def locate(path: FieldPath) -> str:
            pos = manifest.locate(path)
            return f"{pos.file}:{pos.line}"

        def resolve(path: FieldPath, value: str) -> Path:
            return manifest.contained_path(path, value, limits)

        return cls(locate, resolve)


def digest_of(value: Any) -> str:
    """A stable sha256 of JSON-able data (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
