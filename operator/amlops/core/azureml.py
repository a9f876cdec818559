"""The embedded Azure ML CLI v2 parts, checked by the ``azure-ai-ml`` loaders themselves.

The SDK is the source of truth for that format: each embedded part goes through the same
``load_*`` function ``az ml ... -f`` uses, offline. Its marshmallow errors come back as a dict
(or as JSON inside the message) keyed by field path; they are mapped back onto the manifest so
the finding points at the file and line the user wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import os
import re
import sqlite3
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from amlops.core.files import local_target
from amlops.core.findings import Finding
from amlops.core.manifests import ORIGIN_CLI, Manifest
from amlops.core.refs import local_paths
from amlops.core.source import Document, FieldPath
from amlops.kinds import KINDS
from amlops.paths import cache_dir

RULE = "azureml.schema"
Loader = Callable[..., Any]


@cache
def _loader(name: str) -> Loader:
    # Importing azure.ai.ml costs about a second; only pay it when an embedded part exists.
    import azure.ai.ml as sdk

    # The SDK announces every experimental class it touches on its module logger.
    logging.getLogger("azure.ai.ml").setLevel(logging.ERROR)
    return getattr(sdk, name)  # type: ignore[no-any-return]


def _check_whole_file(manifest: Manifest, loader_name: str) -> list[Finding]:
    """Plain CLI v2 workspace / compute files are translated into our camelCase fields; the
    SDK checks the file as written."""
    return check_document(manifest.segments[0].doc, loader_name, manifest.kind, manifest.name)


def check_document(
    doc: Document, loader_name: str, kind: str | None = None, name: str | None = None
) -> list[Finding]:
    """The SDK's verdict on a whole plain file, at the lines of ``doc``: also for the types
    amlops leaves alone (data assets, datastores), whose mistakes still count."""
    out = []
    for path, message in verdict(loader_name, doc.data, doc.file):
        pos = doc.locate(path)
        out.append(
            Finding(
                pos.file,
                pos.line,
                pos.column,
                RULE,
                f"Azure ML: {message}",
                kind=kind,
                name=name,
                field=".".join(map(str, path)),
            )
        )
    return out


def check(manifest: Manifest) -> list[Finding]:
    """The SDK's verdict on the embedded Azure ML parts. The files they name are checked
    first (``refs.check_files``): call this only for a manifest whose files passed."""
    findings: list[Finding] = []
    kind = KINDS[manifest.kind]
    if manifest.origin == ORIGIN_CLI and kind.cli_loader is not None:
        findings.extend(_check_whole_file(manifest, kind.cli_loader))
    for part in kind.parts:
        value = manifest.spec.get(part.key)
        if value is None:
            continue
        items: list[tuple[FieldPath, Any]] = (
            [(("spec", part.key, i), item) for i, item in enumerate(value)]
            if part.many and isinstance(value, list)
            else [(("spec", part.key), value)]
        )
        for path, data in items:
            if isinstance(data, dict):
                findings.extend(
                    _translate(manifest, path, _verdict_for(manifest, part.loader, path, data))
                )
    return findings


def _verdict_for(
    manifest: Manifest, loader_name: str, path: FieldPath, data: dict[str, Any]
) -> list[tuple[FieldPath, str]]:
    if loader_name == "load_online_deployment":
        data = {**data, "endpoint_name": manifest.spec.get("endpoint", {}).get("name", "x")}
    return verdict(loader_name, data, str(manifest.base_dir(path) / "manifest.yaml"))


def verdict(loader_name: str, data: dict[str, Any], origin: str) -> list[tuple[FieldPath, str]]:
    """The SDK's errors for one document (empty: it loads), remembered by content.

    The loaders cost about 1 ms per model and 13 ms per pipeline job; a repository validated
    on every push or pre-commit mostly repeats documents it has seen, so verdicts are kept
    on disk keyed by the SDK version, the loader, the document, where it sits and the files the
    loader may read.
    """
    inputs = _file_inputs(data, os.path.dirname(origin))
    key = hashlib.sha256(
        json.dumps(
            [_sdk_version(), _READING, loader_name, data, origin, inputs],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    cache = _verdicts()
    cached = cache.get(key)
    if cached is not None:
        return cached
    try:
        _loader(loader_name)(
            source=io.StringIO(yaml.safe_dump(data, sort_keys=False)), relative_origin=origin
        )
        errors: list[tuple[FieldPath, str]] = []
    except Exception as exc:  # the SDK raises many types; each becomes a finding
        errors = [
            (_as_written(data, path) or _attr_named(data, message), message)
            for path, message in _errors(exc)
        ]
        if not errors:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            errors = [((), f"Azure ML rejects this: {text}")]
    cache.put(key, errors)
    return errors


# How the SDK's errors are read into (field, message): part of a remembered verdict's key, so
# a change in that reading is not hidden behind verdicts remembered before it.
_READING = 2
_HASHED_FILE_LIMIT = 1 << 20


def _file_inputs(data: Any, base: str) -> list[tuple[str, str]]:
    """What the loader may read besides the document (conda files, component YAML): for
    each small local file its content hash, for a large one (model weights, which the loader
    does not read) its size and mtime, for each folder only that it exists."""
    out = []
    for _, _, target in local_paths((), data):
        path = os.path.join(base, local_target(target))
        if os.path.isfile(path):
            stat = os.stat(path)
            if stat.st_size > _HASHED_FILE_LIMIT:
                out.append((target, f"{stat.st_size}:{stat.st_mtime_ns}"))
                continue
            with open(path, "rb") as fh:
                out.append((target, hashlib.file_digest(fh, "sha256").hexdigest()))
        else:
            out.append((target, "dir" if os.path.isdir(path) else "missing"))
    return out


@cache
def _sdk_version() -> str:
    return importlib.metadata.version("azure-ai-ml")


class _Verdicts:
    """A small SQLite table of SDK verdicts; any trouble with it only costs speed."""

    def __init__(self, path: Path) -> None:
        self._db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, timeout=2, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS verdict (key TEXT PRIMARY KEY, errors TEXT)"
            )
        except sqlite3.Error:
            self._db = None

    def get(self, key: str) -> list[tuple[FieldPath, str]] | None:
        if self._db is None:
            return None
        try:
            row = self._db.execute("SELECT errors FROM verdict WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error:
            return None
        if row is None:
            return None
        return [(tuple(path), str(message)) for path, message in json.loads(row[0])]

    def put(self, key: str, errors: list[tuple[FieldPath, str]]) -> None:
        if self._db is None:
            return
        with contextlib.suppress(sqlite3.Error):
            self._db.execute(
                "INSERT OR REPLACE INTO verdict VALUES (?, ?)", (key, json.dumps(errors))
            )


@cache
def _verdicts() -> _Verdicts:
    if os.environ.get("AMLOPS_NO_CACHE"):
        return _Verdicts(Path(":memory:"))
    return _Verdicts(cache_dir() / "azureml-verdicts.sqlite")


_BINDING = re.compile(r"\$\{\{[^}]*\}\}")


def _translate(
    manifest: Manifest, prefix: FieldPath, errors: list[tuple[FieldPath, str]]
) -> list[Finding]:
    findings = []
    for path, message in errors:
        where: FieldPath | None = prefix + path
        if not path:
            # Binding errors name the ${{...}} expression, not its field: find where it is.
            binding = _BINDING.search(message)
            where = _find_string(manifest.body, binding.group(0)) if binding else None
        text = message if message.startswith("Azure ML") else f"Azure ML: {message}"
        findings.append(manifest.finding(where or prefix, RULE, text))
    return findings


def _errors(exc: BaseException) -> Iterator[tuple[FieldPath, str]]:
    for candidate in (exc.__cause__, exc):
        messages = getattr(candidate, "messages", None)
        if isinstance(messages, dict):
            yield from _flatten(messages, ())
            return
        if isinstance(messages, list) and messages and isinstance(messages[0], str):
            parsed = _json_block(messages[0])
            if parsed is not None:
                yield from _from_json(parsed)
                return
    parsed = _json_block(str(exc))
    if parsed is not None:
        yield from _from_json(parsed)


def _json_block(text: str) -> Any:
    """The JSON of a message 'Validation for X failed: {json} ...', or of a message that is
    only JSON (load_serverless_endpoint's); None when there is none."""
    match = re.search(r"failed:\s*(\{.*\})\s", text, re.DOTALL)
    block = match.group(1) if match else text.strip()
    if not block.startswith("{"):
        return None
    try:
        return json.loads(block)
    except json.JSONDecodeError:
        return None


_NESTING = 4  # how deep messages that nest another schema's errors are read


def _from_json(parsed: Any, depth: int = 0) -> Iterator[tuple[FieldPath, str]]:
    """The errors of a validation result (``{"errors": [{"path", "message"}]}``) or of a
    marshmallow schema (a dict keyed by field). An error whose message is another schema's
    failure (load_job reports a command job's errors as one entry at ``*``, the whole
    document, whose message is 'Validation for CommandJobSchema failed: {json}') becomes that
    schema's errors, under the entry's path."""
    if isinstance(parsed, dict) and isinstance(parsed.get("errors"), list):
        for error in parsed["errors"]:
            if isinstance(error, dict):
                dotted = str(error.get("path", ""))
                # `*` is the whole document: no field of it
                path: FieldPath = tuple(_part(p) for p in dotted.split(".") if p and p != "*")
                message = str(error.get("message", "invalid"))
                inner = _json_block(message) if depth < _NESTING else None
                nested = list(_from_json(inner, depth + 1)) if inner is not None else []
                if nested:
                    yield from (((*path, *where), text) for where, text in nested)
                else:
                    yield path, message
    elif isinstance(parsed, dict):
        yield from _flatten(parsed, ())


def _flatten(messages: Any, path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    if isinstance(messages, dict):
        for key, value in messages.items():
            yield from _flatten(value, (*path, _part(str(key))))
    elif (
        isinstance(messages, list)
        and len(messages) > 1
        and all(isinstance(item, dict) for item in messages)
    ):
        yield from _union(messages, path)
    elif isinstance(messages, list):
        for item in messages:
            if isinstance(item, dict | list):
                yield from _flatten(item, path)
            else:
                yield path, _plain(str(item), path)
    else:
        yield path, _plain(str(messages), path)


def _union(alternatives: list[Any], path: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    """A union field's errors: one dict per shape the value could have taken. The shapes with
    the fewest errors are the ones the value came closest to (the others also complain of
    fields it rightly has, or that it is not a number); their errors, one per field."""
    fewest = min(_count(alternative) for alternative in alternatives)
    by_field: dict[FieldPath, list[str]] = {}
    for alternative in alternatives:
        if _count(alternative) == fewest:
            for where, message in _flatten(alternative, path):
                if message not in by_field.setdefault(where, []):
                    by_field[where].append(message)
    for where, messages in by_field.items():
        yield where, " or ".join(messages)


def _count(messages: Any) -> int:
    """How many error messages ``messages`` holds, at any depth."""
    if isinstance(messages, dict):
        return sum(_count(value) for value in messages.values())
    if isinstance(messages, list):
        return sum(_count(item) for item in messages)
    return 1


# marshmallow's levels that name no field: a Dict field's entry's value and key, and
# ``_schema`` (the object itself)
_WRAPPERS = ("value", "key", "_schema")


def _as_written(data: Any, path: FieldPath) -> FieldPath:
    """``path`` as the document writes it: marshmallow reports an entry of a mapping field
    (``inputs.iris``) one level down, under ``value`` (or ``key``), and an object's own errors
    under ``_schema``; such a level is dropped where the document has no such field, so the
    finding lands on the field's line and names the field written."""
    if not path:
        return ()
    head, rest = path[0], path[1:]
    options: list[FieldPath] = []
    if _has(data, head):
        options.append((head, *_as_written(data[head], rest)))
    if head in _WRAPPERS:
        options.append(_as_written(data, rest))
    if not options:
        return path
    return next((option for option in options if _written(data, option)), options[0])


def _written(data: Any, path: FieldPath) -> bool:
    for part in path:
        if not _has(data, part):
            return False
        data = data[part]
    return True


_ATTR = re.compile(r"\bType of attr (\w+) is of type\b")


def _attr_named(data: Any, message: str) -> FieldPath:
    """The field a whole-document error names (the SDK's type check of an entity's attribute:
    'Type of attr model_id is of type <class 'list'>, not <class 'str'>'), when written."""
    match = _ATTR.search(message)
    return (match.group(1),) if match and _has(data, match.group(1)) else ()


def _has(data: Any, part: str | int) -> bool:
    return (isinstance(data, dict) and part in data) or (
        isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
    )


def _plain(message: str, path: FieldPath) -> str:
    if message == "Unknown field." and path:
        return f"unknown field {path[-1]!r}; remove it or check its spelling"
    if message == "Missing data for required field." and path:
        return f"missing required field {path[-1]!r}"
    return message


def _find_string(value: Any, needle: str, path: FieldPath = ()) -> FieldPath | None:
    if isinstance(value, str):
        return path if needle in value else None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _find_string(item, needle, (*path, key))
        if found is not None:
            return found
    return None


def _part(key: str) -> str | int:
    return int(key) if key.isdigit() else key
