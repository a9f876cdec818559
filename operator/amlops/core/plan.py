"""What a change to the manifests does: create / update / delete per object, field by field."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlops.core.credentials import hidden_child, mask, scrub
from amlops.core.findings import Finding
from amlops.core.manifests import YAML_SUFFIXES, Manifest, display_path
from amlops.core.refs import local_paths
from amlops.kinds import KINDS

_MISSING = object()


@dataclass(frozen=True)
class FieldChange:
    """One changed field. Built by ``_change``, which masks secrets: a plan goes into PR
    comments and CI logs, so it holds ``***`` where a manifest holds a credential (``masked``),
    and says that it changed, never what it was or became."""

    path: str
    before: Any
    after: Any
    masked: bool = False

    @property
    def action(self) -> str:
        if self.before is _MISSING:
            return "add"
        if self.after is _MISSING:
            return "remove"
        return "change"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "action": self.action}
        if self.before is not _MISSING:
            out["before"] = self.before
        if self.after is not _MISSING:
            out["after"] = self.after
        if self.masked:
            out["masked"] = True
        return out


@dataclass
class Change:
    action: str  # create | update | delete
    kind: str
    name: str
    workspace: str | None
    file: str
    line: int
    fields: list[FieldChange] = field(default_factory=list)

    @property
    def engine(self) -> str:
        """``pulumi`` or ``operator``: the kinds registry decides; an object of a kind it does
        not know is a custom resource, so the operator is the one that would touch it."""
        known = KINDS.get(self.kind)
        return known.engine if known is not None else "operator"

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "workspace": self.workspace,
            "engine": self.engine,
            "file": self.file,
            "line": self.line,
            "fields": [f.to_json() for f in self.fields],
        }


def diff(
    base: Sequence[Manifest],
    head: Sequence[Manifest],
    content: Mapping[tuple[str, str, str], list[FieldChange]] | None = None,
) -> list[Change]:
    """Changes that turn ``base`` into ``head``, in a stable order (kind, workspace, name).

    ``content`` adds, per object, the files its ``code:``/``path:`` name whose content changed
    (see ``content_changes``): a new scoring script redeploys even when no YAML changed.
    """
    content = content or {}
    before = {m.key: m for m in base}
    after = {m.key: m for m in head}
    changes: list[Change] = []
    for key in sorted(before.keys() | after.keys()):
        old, new = before.get(key), after.get(key)
        if old is None and new is not None:
            pos = new.locate(("metadata", "name"))
            fields = list(_diff_values(_MISSING, new.body, ()))
            changes.append(
                Change("create", new.kind, new.name, new.workspace, pos.file, pos.line, fields)
            )
        elif new is None and old is not None:
            pos = old.locate(("metadata", "name"))
            changes.append(Change("delete", old.kind, old.name, old.workspace, pos.file, pos.line))
        elif old is not None and new is not None:
            fields = list(_diff_values(old.body, new.body, ())) + content.get(key, [])
            if fields:
                pos = new.locate(("metadata", "name"))
                changes.append(
                    Change("update", new.kind, new.name, new.workspace, pos.file, pos.line, fields)
                )
    return changes


# A finding is "the same" on both revisions when it is the same rule on the same object and
# field of the same file: line numbers move whenever anything above them is edited.
FindingKey = tuple[str, str, str | None, str | None, str]


def finding_key(f: Finding) -> FindingKey:
    return (f.rule, f.file, f.kind, f.name, f.field)


@dataclass(frozen=True)
class FindingSplit:
    """The head's findings split by whether the base already had them, and how many of the
    base's this change fixes: a reviewer blocks on what the change introduces, not on old debt."""

    introduced: list[Finding]
    existing: list[Finding]
    fixed: int


def split_findings(
    head: Sequence[Finding],
    base: Sequence[Finding] | None,
    *,
    blind: Callable[[Finding], bool] = lambda _: False,
    touched: Collection[tuple[str | None, str | None]] = (),
) -> FindingSplit:
    """``base`` None: nothing is known about the base, so everything counts as introduced.

    ``blind`` names the findings the base's validation cannot produce (checks that read files
    on disk, which a Git revision does not have): one of those is introduced when the change
    touches its object (``touched``: kind and name), and was already there otherwise.
    """
    if base is None:
        return FindingSplit(list(head), [], 0)
    # Counted, not a set: two identical findings on the base do not cover three on the head.
    left: dict[FindingKey, int] = {}
    for f in base:
        left[finding_key(f)] = left.get(finding_key(f), 0) + 1
    introduced, existing = [], []
    for f in head:
        key = finding_key(f)
        if left.get(key, 0) > 0:
            left[key] -= 1
            existing.append(f)
        elif blind(f) and (f.kind, f.name) not in touched:
            existing.append(f)
        else:
            introduced.append(f)
    return FindingSplit(introduced, existing, sum(left.values()))


def _named(items: list[Any]) -> dict[str, Any] | None:
    """Lists of named things (deployments) are compared by name, not by position."""
    names = [i.get("name") for i in items if isinstance(i, dict)]
    unique = len(names) == len(items) == len(set(map(str, names)))
    if unique and all(isinstance(n, str) for n in names):
        return {str(i["name"]): i for i in items}
    return None


def _diff_values(
    old: Any, new: Any, path: tuple[str, ...], hidden: bool = False
) -> Iterator[FieldChange]:
    """``hidden``: the values sit under a secret name (see ``credentials.hidden_child``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            below = hidden_child(old, key, hidden) or hidden_child(new, key, hidden)
            yield from _diff_values(
                old.get(key, _MISSING), new.get(key, _MISSING), (*path, str(key)), below
            )
        return
    if old is _MISSING and isinstance(new, dict):
        for key, value in new.items():
            yield from _diff_values(
                _MISSING, value, (*path, str(key)), hidden_child(new, key, hidden)
            )
        return
    if isinstance(old, list) and isinstance(new, list):
        old_named, new_named = _named(old), _named(new)
        if old_named is not None and new_named is not None:
            for name in list(old_named) + [n for n in new_named if n not in old_named]:
                yield from _diff_values(
                    old_named.get(name, _MISSING),
                    new_named.get(name, _MISSING),
                    (*path[:-1], f"{path[-1]}[{name}]") if path else (f"[{name}]",),
                    hidden,
                )
            return
    if old != new:
        yield _change(_dotted(path), old, new, hidden)


def _change(path: str, old: Any, new: Any, hidden: bool) -> FieldChange:
    before = old if old is _MISSING else mask(old, hidden=hidden)
    after = new if new is _MISSING else mask(new, hidden=hidden)
    masked = (old is not _MISSING and before != old) or (new is not _MISSING and after != new)
    return FieldChange(scrub(path), before, after, masked)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


def _display(spec: Any, path: tuple[str | int, ...]) -> str:
    """``spec.deployments[blue].code``: list items by name, as the field diffs show them."""
    out = ""
    node: Any = {"spec": spec}
    for part in path:
        node = node[part]  # the path came from walking this very spec
        if isinstance(part, int):
            name = node.get("name") if isinstance(node, dict) else None
            out += f"[{name}]" if isinstance(name, str) else f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def content_changes(
    head: Sequence[Manifest], base_ref: str, head_ref: str | None
) -> dict[tuple[str, str, str], list[FieldChange]]:
    """Per object, the local files and folders it names whose content differs between
    ``base_ref`` and ``head_ref`` (default: the working tree, untracked files included)."""
    targets: list[tuple[Manifest, str, Path]] = []
    for m in head:
        for path, _, value in local_paths(("spec",), m.spec):
            targets.append((m, _display(m.spec, path), m.resolve_path(path, value)))
    if not targets:
        return {}
    top = Path(_git(Path.cwd(), "rev-parse", "--show-toplevel").decode().strip()).resolve()
    rel = {}
    for _, _, target in targets:
        with suppress(ValueError):
            rel[target] = Path(os.path.realpath(target)).relative_to(top).as_posix()
    specs = sorted(set(rel.values()))
    if not specs:
        return {}
    if head_ref is None:
        changed = _git(top, "diff", "--name-only", "-z", base_ref, "--", *specs).decode()
        changed += _git(
            top, "ls-files", "--others", "--exclude-standard", "-z", "--", *specs
        ).decode()
    else:
        changed = _git(top, "diff", "--name-only", "-z", base_ref, head_ref, "--", *specs).decode()
    files = [f for f in changed.split("\0") if f]
    out: dict[tuple[str, str, str], list[FieldChange]] = {}
    for m, dotted, target in targets:
        spec = rel.get(target)
        if spec is None:
            continue
        hits = [f for f in files if f == spec or f.startswith(spec + "/")]
        if hits:
            names = [h[len(spec) :].lstrip("/") or Path(h).name for h in hits]
            more = ", ..." if len(names) > 3 else ""
            summary = f"{len(hits)} file(s) changed: {', '.join(names[:3])}{more}"
            out.setdefault(m.key, []).append(FieldChange(f"{dotted} (content)", "", summary))
    return out


class GitError(Exception):
    """A revision or path Git cannot give us."""


def _git(cwd: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    if proc.returncode != 0:
        raise GitError(proc.stderr.decode(errors="replace").strip() or f"git {args[0]} failed")
    return proc.stdout


def git_commit(path: Path, ref: str) -> str:
    """The full SHA of the commit ``ref`` names: a branch moves, a SHA says what was planned."""
    top = git_top_level(path)
    return _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()


def git_top_level(path: Path) -> Path:
    """The top level of the Git checkout holding ``path``: the source root of a plan, for the
    working tree and both revisions alike."""
    anchor = path if path.is_dir() else path.parent
    if not anchor.exists():
        anchor = Path.cwd()
    return Path(_git(anchor, "rev-parse", "--show-toplevel").decode().strip())


def git_texts(path: Path, ref: str) -> dict[str, str]:
    """The YAML files under ``path`` as of ``ref``, keyed the way the working tree shows them."""
    top = git_top_level(path)
    _git(top, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    rel = path.resolve().relative_to(top.resolve()) if path.exists() else Path(path)
    listing = _git(top, "ls-tree", "-r", "-z", "--name-only", ref, "--", str(rel) or ".")
    names = [n for n in listing.decode().split("\0") if n.endswith(YAML_SUFFIXES)]
    names = [n for n in names if not any(p.startswith(".") for p in Path(n).parts)]
    if not names:
        return {}
    batch = "".join(f"{ref}:{n}\n" for n in names).encode()
    proc = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=top, input=batch, capture_output=True, check=True
    )
    out: dict[str, str] = {}
    data = proc.stdout
    pos = 0
    for name in names:
        header_end = data.index(b"\n", pos)
        size = int(data[pos:header_end].split()[2])
        body = data[header_end + 1 : header_end + 1 + size]
        pos = header_end + 1 + size + 1
        out[display_path(top / name)] = body.decode("utf-8", errors="replace")
    return out
