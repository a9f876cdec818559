"""YAML documents that remember where every value came from.

PyYAML's C parser composes the node tree; values are built from the nodes in one pass, which
also catches duplicate keys (PyYAML would silently keep the last one). Positions are looked up
lazily by walking the node tree along a path, so a clean file pays nothing for them.

Reading is bounded (``amlops.core.limits``): a file's size is checked before it is read, the
documents of a file are counted, and a document that uses aliases has its expanded size worked
out on the composed node graph, where each anchored node is shared and counted once, before a
single value is built: nine lines of nested aliases (a "billion laughs") would otherwise build
billions of values.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from amlops.core.limits import Limits, current, env_name, human

try:  # the C parser is an optional part of PyYAML; fall back to the pure-Python one
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

# A field inside a document or object: keys and list indexes from its root.
FieldPath = tuple[str | int, ...]
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Position:
    file: str
    line: int  # 1-based
    column: int  # 1-based


RULE_SYNTAX = "load.yaml-syntax"
RULE_TOO_LARGE = "load.too-large"
RULE_NOT_A_FILE = "load.not-a-file"
RULE_ALIAS_LIMIT = "load.alias-limit"
RULE_TOO_MANY_DOCUMENTS = "load.too-many-documents"


class YamlSyntaxError(Exception):
    """A file that is not YAML at all; carries the position the parser stopped at."""

    rule = RULE_SYNTAX

    def __init__(self, position: Position, problem: str) -> None:
        super().__init__(f"{position.file}:{position.line}: {problem}")
        self.position = position
        self.problem = problem


class YamlLimitError(YamlSyntaxError):
    """A file refused before (or instead of) being built: over a limit, or not a file. Its
    ``problem`` is a whole sentence saying what to do; ``rule`` is the finding id."""

    def __init__(self, position: Position, problem: str, rule: str) -> None:
        super().__init__(position, problem)
        self.rule = rule


@dataclass
class DuplicateKey:
    path: FieldPath
    key: str
    position: Position
    first_line: int


@dataclass
class Document:
    """One YAML document of a file: its data, its node tree and where it starts."""

    file: str
    index: int
    data: Any
    node: yaml.Node
    duplicates: list[DuplicateKey] = field(default_factory=list)
    # The source root the file was read under (``amlops.core.files``): the paths it names
    # must stay inside. None for a document with no file behind it (a custom resource).
    root: Path | None = None

    def locate(self, path: FieldPath) -> Position:
        """The position of ``path`` or, when it does not exist, of its deepest existing parent."""
        node, key_node = _walk(self.node, path)
        # A block mapping or list starts on the line after its key; the key is what users see.
        if key_node is not None and isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            node = key_node
        mark = node.start_mark
        return Position(self.file, mark.line + 1, mark.column + 1)


def _walk(node: yaml.Node, path: FieldPath) -> tuple[yaml.Node, yaml.Node | None]:
    """The node at ``path`` (or its deepest existing parent) and the key node that names it."""
    key: yaml.Node | None = None
    for part in path:
        child: yaml.Node | None = None
        child_key: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    child, child_key = value_node, key_node
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part >= 0:
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            return node, key
        node, key = child, child_key
    return node, key


class _Builder:
    """Builds plain Python data from composed nodes, using PyYAML's own scalar constructors.

    This is the hot loop of validation; it avoids per-node allocations it does not need
    (paths are only worked out for the rare duplicate key).
    """

    def __init__(self, loader: Any, file: str) -> None:
        self._loader = loader
        self._file = file
        self._dups: list[tuple[yaml.Node, yaml.Node, int]] = []
        self._open: set[int] = set()  # collections being built: an alias to one is a cycle

    def build(self, node: yaml.Node) -> Any:
        cls = node.__class__
        if cls is yaml.ScalarNode:
            if node.tag == _STR:  # most scalars; skips the constructor's dispatch and cache
                return node.value
            return self._loader.construct_object(node, deep=True)
        if id(node) in self._open:
            mark = node.start_mark
            raise YamlSyntaxError(
                Position(self._file, mark.line + 1, mark.column + 1),
                "an alias refers to the collection that contains it (a recursive anchor)",
            )
        self._open.add(id(node))
        try:
            return self._collection(node, cls)
        finally:
            self._open.discard(id(node))

    def _collection(self, node: yaml.Node, cls: type) -> Any:
        if cls is yaml.SequenceNode:
            return [self.build(child) for child in node.value]
        if cls is not yaml.MappingNode:
            return self._loader.construct_object(node, deep=True)
        out: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                self._loader.flatten_mapping(node)
                return self._collection(node, cls)
            key = key_node.value if key_node.tag == _STR else self.build(key_node)
            if not isinstance(key, str | int | float | bool) and key is not None:
                key = str(key)
            if key in out:
                self._dups.append((node, key_node, lines[key]))
            lines[key] = key_node.start_mark.line + 1
            out[key] = self.build(value_node)
        return out

    def duplicates(self, root: yaml.Node) -> list[DuplicateKey]:
        found = []
        for mapping, key_node, first_line in self._dups:
            path = _path_to(root, mapping) or ()
            mark = key_node.start_mark
            found.append(
                DuplicateKey(
                    (*path, str(key_node.value)),
                    str(key_node.value),
                    Position(self._file, mark.line + 1, mark.column + 1),
                    first_line,
                )
            )
        return found


def _path_to(node: yaml.Node, target: yaml.Node, path: FieldPath = ()) -> FieldPath | None:
    if node is target:
        return path
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            found = _path_to(value_node, target, (*path, str(key_node.value)))
            if found is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, child in enumerate(node.value):
            found = _path_to(child, target, (*path, i))
            if found is not None:
                return found
    return None


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_manifest(file: Path | str, limits: Limits | None = None) -> str:
    """The text of a YAML file, refused (``YamlLimitError``) unless it is a regular file
    within the size limit. The checks use the opened file itself, so a file swapped for a
    named pipe after a check cannot block the read."""
    limits = limits or current()
    name = str(file)
    where = Position(name, 1, 1)
    # Non-blocking: opening a named pipe must not wait for a writer (fstat then refuses it).
    # FileNotFoundError / PermissionError are the caller's to report.
    fd = os.open(file, _OPEN_FLAGS)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _not_a_file(where)
        if info.st_size > limits.max_manifest_bytes:
            raise _too_large(where, info.st_size, limits)
        # What fstat announced plus one byte: a file growing meanwhile is read on, up to one
        # byte over the limit (asking for the whole limit would allocate it every time).
        data = fh.read(info.st_size + 1)
        if len(data) > info.st_size:
            data += fh.read(limits.max_manifest_bytes + 1 - len(data))
    if len(data) > limits.max_manifest_bytes:
        raise _too_large(where, len(data), limits)
    return data.decode("utf-8")


def _not_a_file(where: Position) -> YamlLimitError:
    return YamlLimitError(
        where,
        f"{where.file} is not a regular file (a device, socket or named pipe); "
        "remove it or rename it so it does not end in .yaml/.yml",
        RULE_NOT_A_FILE,
    )


def _too_large(where: Position, size: int, limits: Limits) -> YamlLimitError:
    return YamlLimitError(
        where,
        f"{where.file} is {human(size)}, over the limit of {human(limits.max_manifest_bytes)} "
        "per manifest file; split it into several files, or raise "
        f"{env_name('max_manifest_bytes')} if this is intended",
        RULE_TOO_LARGE,
    )


def _text_over(text: str, limit: int) -> bool:
    """Whether ``text`` takes more than ``limit`` bytes in UTF-8, encoding it only when the
    character count alone cannot tell (each character takes 1 to 4 bytes)."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


def load_documents(
    file: Path | str, text: str | None = None, limits: Limits | None = None
) -> Iterator[Document]:
    """Yield each non-empty document of a YAML file; raise YamlSyntaxError on broken YAML and
    its subclass YamlLimitError on input over a limit (``amlops.core.limits``)."""
    name = str(file)
    limits = limits or current()
    if text is None:
        text = read_manifest(file, limits)
    elif _text_over(text, limits.max_manifest_bytes):
        raise _too_large(Position(name, 1, 1), len(text.encode("utf-8", "surrogatepass")), limits)
    # Expansion only happens through aliases, and an alias needs an anchor: a text without
    # both characters (most manifests) skips the extra pass over its nodes.
    may_alias = "&" in text and "*" in text
    loader = _Loader(text)
    try:
        index = 0
        seen = 0
        while loader.check_node():
            node = loader.get_node()
            seen += 1
            if seen > limits.max_yaml_documents:
                raise _too_many_documents(name, node, limits)
            if node is None:
                continue
            if may_alias:
                _Expansion(name, limits).measure(node)
            builder = _Builder(loader, name)
            data = builder.build(node)
            yield Document(name, index, data, node, builder.duplicates(node))
            index += 1
    except RecursionError as exc:  # nesting deeper than Python's stack (or a merge cycle)
        raise YamlSyntaxError(Position(name, 1, 1), "nested too deeply to read") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        column = mark.column + 1 if mark else 1
        problem = exc.problem or exc.context or "not valid YAML"
        if exc.context and exc.context_mark and exc.problem:
            problem = f"{exc.problem} {exc.context} started on line {exc.context_mark.line + 1}"
        raise YamlSyntaxError(Position(name, line, column), problem) from exc
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(Position(name, 1, 1), str(exc)) from exc
    finally:
        loader.dispose()


def _too_many_documents(name: str, node: yaml.Node | None, limits: Limits) -> YamlLimitError:
    mark = node.start_mark if node is not None else None
    where = Position(name, mark.line + 1, mark.column + 1) if mark else Position(name, 1, 1)
    return YamlLimitError(
        where,
        f"more than {limits.max_yaml_documents:,} documents in one file; split it into several "
        f"files, or raise {env_name('max_yaml_documents')} if this is intended",
        RULE_TOO_MANY_DOCUMENTS,
    )


class _Expansion:
    """The size of a document once its aliases are expanded, worked out on the node graph
    (an anchored node is one shared object there) without building anything: each node's
    size is computed once and reused at every alias to it, so the pass is linear in the
    file, and it stops at the first collection over a limit."""

    def __init__(self, file: str, limits: Limits) -> None:
        self._file = file
        self._limits = limits
        self._sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (values, characters)
        self._open: set[int] = set()
        self._aliases = 0
        # An expanded document may hold no more text than a manifest file may.
        self._max_chars = limits.max_manifest_bytes

    def measure(self, node: yaml.Node) -> tuple[int, int]:
        """(values, characters) of ``node`` once expanded; raises at the first collection
        over a limit."""
        if node.__class__ is yaml.ScalarNode:
            return 1, len(node.value)
        key = id(node)
        known = self._sizes.get(key)
        if known is not None:
            return known
        if key in self._open:
            raise YamlSyntaxError(
                self._where(node),
                "an alias refers to the collection that contains it (a recursive anchor)",
            )
        self._open.add(key)
        values, chars = 1, 0
        sizes = self._sizes
        children = (
            [n for pair in node.value for n in pair]
            if node.__class__ is yaml.MappingNode
            else node.value
        )
        for child in children:
            child_key = id(child)
            size = sizes.get(child_key)
            if size is not None:
                self._aliases += 1  # a node met again is met through an alias
                if self._aliases > self._limits.max_yaml_aliases:
                    raise self._limit(
                        node,
                        f"uses more than {self._limits.max_yaml_aliases:,} aliases (*name) in "
                        "one document",
                        "max_yaml_aliases",
                    )
            elif child.__class__ is yaml.ScalarNode:
                size = (1, len(child.value))
                sizes[child_key] = size  # remembered only to count aliases to it
            else:
                size = self.measure(child)
            values += size[0]
            chars += size[1]
        self._open.discard(key)
        if values > self._limits.max_yaml_nodes:
            raise self._limit(
                node,
                f"expands through aliases to more than {self._limits.max_yaml_nodes:,} values",
                "max_yaml_nodes",
            )
        if chars > self._max_chars:
            raise self._limit(
                node,
                f"expands through aliases to more than {human(self._max_chars)} of text",
                "max_manifest_bytes",
            )
        sizes[key] = (values, chars)
        return values, chars

    def _where(self, node: yaml.Node) -> Position:
        mark = node.start_mark
        return Position(self._file, mark.line + 1, mark.column + 1)

    def _limit(self, node: yaml.Node, what: str, setting: str) -> YamlLimitError:
        return YamlLimitError(
            self._where(node),
            f"this value {what} (nested anchors multiply: a 'billion laughs'); write the "
            f"values out, or raise {env_name(setting)} if this is intended",
            RULE_ALIAS_LIMIT,
        )
