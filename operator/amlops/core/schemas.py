"""JSON Schemas (draft 2020-12) per kind, compiled once, with errors mapped to file:line:field."""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import CodeType
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from amlops.core.findings import Finding, format_path
from amlops.core.manifests import ORIGIN_CLI, Manifest, kubernetes_name
from amlops.paths import cache_dir, schemas_dir


def _no_remote_refs(uri: str) -> Any:
    raise ValueError(f"remote $ref {uri!r} is not allowed in amlops schemas")


_ENTRY = re.compile(r"^def (validate\w*)\(", re.MULTILINE)


def _compiled(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """The schema's validator; its byte code is cached on disk like a .pyc.

    Generating and compiling the validator source is a third of a cold ``amlops validate`` of
    a large repository; the cache key covers the schema and both generators' versions.
    """
    key = hashlib.sha256(
        json.dumps([schema, fastjsonschema.VERSION, sys.version], sort_keys=True).encode()
    ).hexdigest()
    path = cache_dir() / "validators" / f"{key}.bin"
    try:
        code = marshal.loads(path.read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        code = _generate(schema, path)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # our own generated validator, from our own schema
    return namespace["__entry__"]  # type: ignore[no-any-return]


def _generate(schema: dict[str, Any], path: Path) -> CodeType:
    source = fastjsonschema.compile_to_code(
        schema,
        # never fetch a remote $ref: validation works offline and cannot be made to call out
        handlers={"http": _no_remote_refs, "https": _no_remote_refs},
        # by default fastjsonschema writes `default` values into the data it checks
        use_default=False,
    )
    entry = _ENTRY.search(source)
    if entry is None:  # pragma: no cover - a fastjsonschema that generates differently
        raise RuntimeError("fastjsonschema generated no validate function")
    code = compile(source + f"\n__entry__ = {entry.group(1)}\n", path.name, "exec")
    with contextlib.suppress(OSError):  # a read-only home only costs speed
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(marshal.dumps(code))
        tmp.replace(path)
    return code


# fastjsonschema implements drafts 4 to 7; these 2019-09 / 2020-12 keywords it would ignore.
_NEWER_KEYWORDS = frozenset(
    {
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedProperties",
        "unevaluatedItems",
        "prefixItems",
        "minContains",
        "maxContains",
        "$dynamicRef",
        "$dynamicAnchor",
        "$recursiveRef",
        "$recursiveAnchor",
    }
)


def _uses_newer_keywords(schema: Any) -> bool:
    if isinstance(schema, dict):
        return bool(_NEWER_KEYWORDS & schema.keys()) or any(
            _uses_newer_keywords(v) for v in schema.values()
        )
    if isinstance(schema, list):
        return any(_uses_newer_keywords(v) for v in schema)
    return False


class FastCheck:
    """A schema compiled to Python code: answers "valid?" about 20x faster than ``jsonschema``.

    Valid objects (nearly all of them) only take the fast path; the few invalid ones are then
    re-checked by ``jsonschema``, whose errors carry every path and message we report. A schema
    with keywords newer than draft 7 has no fast path: ``jsonschema`` checks everything.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self._check = None if _uses_newer_keywords(schema) else _compiled(schema)
        self._full = Draft202012Validator(schema)

    def is_valid(self, instance: Any) -> bool:
        if self._check is None:
            return bool(self._full.is_valid(instance))
        try:
            self._check(instance)
        except fastjsonschema.JsonSchemaException:
            return False
        return True


@dataclass(frozen=True)
class SchemaSet:
    schemas: dict[str, dict[str, Any]]
    validators: dict[str, Draft202012Validator]
    fast: dict[str, FastCheck]

    def check(self, manifest: Manifest) -> list[Finding]:
        validator = self.validators.get(manifest.kind)
        if validator is None:
            return [manifest.finding((), "schema.kind", f"no schema for kind {manifest.kind!r}")]
        body = _checked_body(manifest)
        if self.fast[manifest.kind].is_valid(body):
            return []
        findings: list[Finding] = []
        for error in validator.iter_errors(body):
            findings.extend(_to_findings(manifest, error))
        return findings


def _checked_body(manifest: Manifest) -> dict[str, Any]:
    """The body the schema checks. A plain Azure ML file's name is Azure ML's (the azureml.name
    policy checks it, policies/rules/azureml-name.yaml); the schema's DNS-1123 rule is for the
    custom resource name, which is derived from it (``kubernetes_name``)."""
    if manifest.origin != ORIGIN_CLI:
        return manifest.body
    metadata = {**manifest.metadata, "name": kubernetes_name(manifest.name)}
    return {**manifest.body, "metadata": metadata}


def _to_findings(manifest: Manifest, error: ValidationError) -> list[Finding]:
    path: tuple[str | int, ...] = tuple(error.absolute_path)
    rule = "schema"
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(schema.get("properties", {}))
        return [
            manifest.finding(
                (*path, key),
                rule,
                f"unknown field {key!r}; allowed here: {', '.join(allowed)}",
            )
            for key in error.instance
            if key not in schema.get("properties", {})
        ]
    if error.validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else error.message
        if manifest.origin == ORIGIN_CLI:  # as the file names it: `resource_group`
            missing = format_path(manifest.written_path((*path, missing)))
        return [manifest.finding(path, rule, f"missing required field {missing!r}")]
    if error.validator in ("oneOf", "anyOf") and error.context:
        deepest = best_match(error.context)
        return _to_findings(manifest, deepest) if deepest is not error else []
    message = error.message
    if error.validator == "pattern":
        description = schema.get("description")
        message = f"{error.instance!r} does not match {error.validator_value!r}"
        if description:
            message += f" ({description})"
    elif error.validator in ("type", "enum", "const"):
        message = f"{error.message}"
    return [manifest.finding(path, rule, message)]


def read_schemas(directory: Path) -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for file in sorted(directory.glob("*.schema.json")):
        # Meta-schema checks live in the tests (test_schemas_are_valid_json_schema); at run
        # time a broken schema fails when it is compiled.
        schema = json.loads(file.read_text(encoding="utf-8"))
        schemas[str(schema["title"])] = schema
    return schemas


@lru_cache(maxsize=4)
def load_schemas(directory: Path | None = None) -> SchemaSet:
    schemas = read_schemas(directory or schemas_dir())
    validators = {kind: Draft202012Validator(schema) for kind, schema in schemas.items()}
    fast = {kind: FastCheck(schema) for kind, schema in schemas.items()}
    return SchemaSet(schemas, validators, fast)
