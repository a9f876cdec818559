"""How much a repository may make amlops read: the one place these limits are set.

A manifest repository is input from anyone who can open a pull request, so reading it must be
bounded: a 426-byte YAML file of nested aliases otherwise expands to billions of values, and a
``path:`` naming a large folder is copied into the artifact store whole. Each limit is generous
for a real platform repository and can be raised through the environment (the operator's
Deployment sets the same variables):

==============================  ===========  ====================================================
``AMLOPS_MAX_MANIFEST_BYTES``   10 MiB       one YAML file (checked before it is read)
``AMLOPS_MAX_YAML_DOCUMENTS``   1,000        ``---`` documents in one YAML file
``AMLOPS_MAX_YAML_NODES``       1,000,000    values one document holds once aliases are expanded
``AMLOPS_MAX_YAML_ALIASES``     10,000       alias uses (``*name``) in one document
``AMLOPS_MAX_FILE_BYTES``       5 GiB        one file a manifest names (or inside a named folder)
``AMLOPS_MAX_TREE_BYTES``       10 GiB       all files of a folder a manifest names
``AMLOPS_MAX_TREE_FILES``       100,000      files in a folder a manifest names
==============================  ===========  ====================================================

Sizes accept a unit: ``20GiB``, ``512MiB``, ``1.5G`` (powers of 1024 either way). The alias
limits are worked out only for documents that use aliases; an alias in a merge key (``<<:``)
counts as a copy of what it names, and the text aliases expand to may not exceed
``AMLOPS_MAX_MANIFEST_BYTES`` either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields

KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

_UNITS = {"": 1, "k": KiB, "m": MiB, "g": GiB, "t": GiB * KiB}
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


class LimitsError(ValueError):
    """An ``AMLOPS_MAX_*`` variable that is not a positive number; names the variable."""


@dataclass(frozen=True)
class Limits:
    # a generated manifest of a few thousand objects is well below; loading 10 MiB takes ~3 s
    max_manifest_bytes: int = 10 * MiB
    # one file per object is the norm; a thousand objects in one file is already unreadable
    max_yaml_documents: int = 1_000
    # ~100x the largest real manifest; building a million values takes about a second
    max_yaml_nodes: int = 1_000_000
    # anchors are for sharing a few blocks (resources, tags), not thousands of uses
    max_yaml_aliases: int = 10_000
    # Hugging Face writes safetensors shards of up to 5 GB
    max_file_bytes: int = 5 * GiB
    # a small language model's weights fit; a home folder named by mistake does not
    max_tree_bytes: int = 10 * GiB
    # a model or code folder has tens of files; a node_modules or a home folder has more
    max_tree_files: int = 100_000

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        source = os.environ if env is None else env
        values: dict[str, int] = {}
        for f in fields(cls):
            name = env_name(f.name)
            raw = source.get(name)
            if raw is None or raw.strip() == "":
                continue
            values[f.name] = parse_size(name, raw)
        return cls(**values)


def env_name(field_name: str) -> str:
    return "AMLOPS_" + field_name.upper()


def parse_size(name: str, raw: str) -> int:
    """``20GiB`` -> 21474836480; ``name`` is the variable, for the error."""
    match = _SIZE.match(raw.replace("_", "").replace(",", ""))
    if not match:
        raise LimitsError(
            f"{name}={raw!r} is not a size; write a whole number, optionally with a unit "
            "(KiB, MiB, GiB, TiB)"
        )
    value = int(float(match["number"]) * _UNITS[match["unit"].lower()])
    if value <= 0:
        raise LimitsError(f"{name}={raw!r} must be greater than 0")
    return value


def current() -> Limits:
    """The limits of this process, read from the environment on every call (cheap: a few
    lookups) so a test or a long-running loop sees a changed variable."""
    return Limits.from_env()


def human(size: int) -> str:
    """``10485760`` -> ``10 MiB``: sizes in messages, in the unit the variables accept."""
    for unit, factor in (("TiB", GiB * KiB), ("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor:
            value = size / factor
            return f"{value:.1f} {unit}".replace(".0 ", " ")
    return f"{size} bytes"
