"""YAML documents that remember where every value came from.

PyYAML's C parser composes the node tree; values are built from the nodes in one pass, which
also catches duplicate keys (PyYAML would silently keep the last one). Positions are looked up
lazily by walking the node tree along a path, so a clean file pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:  # the C parser is an optional part of PyYAML; fall back to the pure-Python one
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

Path_ = tuple[str | int, ...]
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Position:
    file: str
    line: int  # 1-based
    column: int  # 1-based


class YamlSyntaxError(Exception):
    """A file that is not YAML at all; carries the position the parser stopped at."""

    def __init__(self, position: Position, problem: str) -> None:
        super().__init__(f"{position.file}:{position.line}: {problem}")
        self.position = position
        self.problem = problem


@dataclass
class DuplicateKey:
    path: Path_
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

    def locate(self, path: Path_) -> Position:
        """The position of ``path`` or, when it does not exist, of its deepest existing parent."""
        node, key_node = _walk(self.node, path)
        # A block mapping or list starts on the line after its key; the key is what users see.
        if key_node is not None and isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            node = key_node
        mark = node.start_mark
        return Position(self.file, mark.line + 1, mark.column + 1)

    def key_position(self, path: Path_) -> Position:
        """The position of the key naming ``path`` (better than the value for block values)."""
        if not path:
            return self.locate(path)
        parent, _ = _walk(self.node, path[:-1])
        if isinstance(parent, yaml.MappingNode):
            for key_node, _ in parent.value:
                if key_node.value == path[-1]:
                    mark = key_node.start_mark
                    return Position(self.file, mark.line + 1, mark.column + 1)
        return self.locate(path)


def _walk(node: yaml.Node, path: Path_) -> tuple[yaml.Node, yaml.Node | None]:
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


def _path_to(node: yaml.Node, target: yaml.Node, path: Path_ = ()) -> Path_ | None:
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


def load_documents(file: Path | str, text: str | None = None) -> Iterator[Document]:
    """Yield each non-empty document of a YAML file; raise YamlSyntaxError on broken YAML."""
    name = str(file)
    if text is None:
        text = Path(file).read_text(encoding="utf-8")
    loader = _Loader(text)
    try:
        index = 0
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
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
