"""The inventory: what one sync (an ``amlops apply --instance`` or a GitSource) has applied, with
Flux's semantics, so prune deletes only what this sync put there and no longer wants.

An entry is ``<namespace>_<name>_<group>_<Kind>`` plus the API version (Flux's
``ResourceRef``: ``{"id": ..., "v": ...}``). ``diff(previous, desired)`` says what to apply (every
desired entry: the digest in ``gitops.apply`` skips the unchanged ones) and what to prune (the
previous entries that are no longer desired, in reverse apply order). A revision whose desired
inventory is empty while the previous one is not would prune everything: that is almost always
a wrong ``path``, a broken checkout or an emptied branch, so ``diff`` refuses it
(``PruneAllRefused``) unless the caller passes ``allow_empty=True``.

Objects are pruned only when they are in the previous inventory, never because of a label
alone; ``gitops.apply`` further checks that the live object still carries the sync's labels
and honours its ``deletionPolicy`` (``Retain`` keeps the Azure asset; the object goes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class InventoryError(ValueError):
    """An inventory that cannot be read (a hand-edited ConfigMap, a bad entry id)."""


class PruneAllRefused(Exception):
    """The desired inventory is empty and the previous one is not: pruning would delete every
    object of this sync. ``count`` is how many objects that would be."""

    reason = "PruneAllRefused"

    def __init__(self, count: int) -> None:
        self.count = count
        super().__init__(
            f"the new revision has no objects and would prune all {count} applied object(s); "
            "check the source path, or allow an empty revision (--allow-empty, allowEmpty) if "
            "deleting everything is intended"
        )


@dataclass(frozen=True, order=True)
class Entry:
    """One applied object. Ordered by id, so inventories compare and serialise stably."""

    namespace: str
    name: str
    group: str
    kind: str
    version: str = ""

    @property
    def id(self) -> str:
        return f"{self.namespace}_{self.name}_{self.group}_{self.kind}"

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Entry:
        """The entry of a Kubernetes object (``apiVersion``, ``kind``, ``metadata``)."""
        api_version = str(obj.get("apiVersion", ""))
        group, _, version = api_version.rpartition("/")
        meta = obj.get("metadata") or {}
        return cls(
            str(meta.get("namespace") or ""),
            str(meta.get("name", "")),
            group,
            str(obj.get("kind", "")),
            version,
        )

    @classmethod
    def parse(cls, entry_id: str, version: str = "") -> Entry:
        """``ns_name_group_Kind`` -> Entry. Names, namespaces and groups hold no ``_`` (DNS
        names), so the id splits unambiguously; anything else is an ``InventoryError``."""
        parts = entry_id.split("_")
        if len(parts) != 4 or not parts[1] or not parts[3]:
            raise InventoryError(f"inventory entry {entry_id!r} is not <ns>_<name>_<group>_<Kind>")
        return cls(parts[0], parts[1], parts[2], parts[3], version)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


@dataclass(frozen=True)
class Inventory:
    """A set of entries (sorted, no duplicate ids)."""

    entries: tuple[Entry, ...] = ()

    @classmethod
    def of(cls, objects: Iterable[Mapping[str, Any]]) -> Inventory:
        return cls.from_entries(Entry.of(o) for o in objects)

    @classmethod
    def from_entries(cls, entries: Iterable[Entry]) -> Inventory:
        by_id = {e.id: e for e in entries}
        return cls(tuple(sorted(by_id.values())))

    def ids(self) -> set[str]:
        return {e.id for e in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, entry: object) -> bool:
        return isinstance(entry, Entry) and entry.id in self.ids()

    def to_dict(self) -> dict[str, Any]:
        """Flux's status shape: ``{"entries": [{"id": ..., "v": ...}]}``."""
        return {"entries": [{"id": e.id, "v": e.version} for e in self.entries]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Inventory:
        if not data:
            return cls()
        raw = data.get("entries")
        if raw is None:
            return cls()
        if not isinstance(raw, list):
            raise InventoryError("inventory entries is not a list")
        entries: list[Entry] = []
        for item in raw:
            if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
                raise InventoryError(f"inventory entry {item!r} has no id")
            entries.append(Entry.parse(item["id"], str(item.get("v", ""))))
        return cls.from_entries(entries)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Inventory:
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InventoryError(f"inventory is not JSON: {exc.msg}") from None
        if not isinstance(data, Mapping):
            raise InventoryError("inventory is not a JSON object")
        return cls.from_dict(data)


@dataclass(frozen=True)
class Diff:
    to_apply: tuple[Entry, ...]
    to_prune: tuple[Entry, ...]  # in prune order: reverse of ``order`` (dependents first)


def diff(
    previous: Inventory | None,
    desired: Inventory,
    *,
    allow_empty: bool = False,
    order: Sequence[str] = (),
) -> Diff:
    """What to apply and what to prune going from ``previous`` to ``desired``.

    ``order`` is the apply order of kinds (``kinds.ORDER``): prunes go in reverse (an Endpoint
    before the Model it serves); kinds not in it go last. Raises ``PruneAllRefused`` when
    ``desired`` is empty, ``previous`` is not and ``allow_empty`` is False.
    """
    before = previous or Inventory()
    if not desired.entries and before.entries and not allow_empty:
        raise PruneAllRefused(len(before))
    wanted = desired.ids()
    stale = [e for e in before.entries if e.id not in wanted]
    rank = {kind: i for i, kind in enumerate(order)}
    stale.sort(key=lambda e: (-rank.get(e.kind, -1), e.id))
    return Diff(desired.entries, tuple(stale))
