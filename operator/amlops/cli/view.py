"""What the local commands print: the status table, the live view of ``amlops up``, one-line
notes, and the command lines suggested as hints.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from amlops.backends.local.backend import DEFAULT_STATE_DIR
from amlops.cli import common
from amlops.kinds import ORDER
from amlops.reconcile.conditions import Phase, phase_of
from amlops.reconcile.tree import ObjectReport

# A piece of a printed line: literal text, or (literal text, style). Lines are built from these
# rather than from markup strings: user and step text (condition messages, paths, answers)
# may hold `[...]` or `:name:`, which rich would otherwise read as markup or emoji codes.
Part = str | tuple[str, str]
_PHASE_STYLE = {
    Phase.READY: "green",
    Phase.RECONCILING: "yellow",
    Phase.STALLED: "red",
    Phase.SUSPENDED: "dim",
}


@dataclass(frozen=True)
class Row:
    kind: str
    workspace: str
    name: str
    status: Mapping[str, Any]

    @property
    def phase(self) -> Phase | None:
        return phase_of(self.status)

    def condition(self) -> Mapping[str, Any]:
        conditions = self.status.get("conditions") or []
        for kind in ("Stalled", "Reconciling", "Ready"):
            for c in conditions:
                if c.get("type") == kind:
                    return dict(c)
        return {}


def rows_of(reports: Sequence[ObjectReport]) -> list[Row]:
    return [Row(r.kind, r.workspace, r.name, r.status) for r in reports]


def line(*parts: Part) -> Text:
    """One line of output, every part taken literally (see ``Part``)."""
    return Text.assemble(*parts)


def status_table(rows: Sequence[Row], title: str = "") -> Table:
    table = Table(title=Text(title) if title else None, title_justify="left", expand=False)
    for column in ("kind", "workspace", "name", "state", "reason", "message"):
        table.add_column(column, overflow="fold")
    order = {k: i for i, k in enumerate(ORDER)}
    for row in sorted(rows, key=lambda r: (order.get(r.kind, 9), r.workspace, r.name)):
        phase = row.phase
        condition = row.condition()
        style = _PHASE_STYLE.get(phase, "") if phase else ""
        table.add_row(
            Text(row.kind),
            Text(row.workspace),
            Text(row.name),
            Text(str(phase or "Unknown"), style=style),
            Text(str(condition.get("reason", ""))),
            Text(_details(row, condition)),
        )
    return table


def status_json(
    root: Path,
    up_running: bool,
    records: Sequence[Mapping[str, Any]],
    assets: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """``amlops status --output json``: each object record with the tags of what it made."""
    return {
        "stateDir": str(root),
        "upRunning": up_running,
        "objects": [
            {
                "kind": r["kind"],
                "workspace": r["workspace"],
                "name": r["name"],
                "generation": r["generation"],
                "status": r["status"],
                **tags,
            }
            for r, tags in zip(records, assets, strict=True)
        ],
    }


def _details(row: Row, condition: Mapping[str, Any]) -> str:
    message = str(condition.get("message", ""))
    if row.kind == "Pipeline" and row.status.get("steps"):
        marks = {"Completed": "✓", "Running": "▶", "Queued": "…", "Failed": "✗", "Canceled": "✗"}
        steps = " ".join(
            f"{name} {marks.get(str(s.get('state')), '·')}"
            for name, s in row.status["steps"].items()
        )
        return f"{message}\n{steps}"
    return message


def prog() -> str:
    """How to call us again, for the hints we print: ``amlops`` when that is what PATH finds,
    else the program's path (``.venv/bin/amlops`` from make), relative only below the cwd."""
    argv0 = sys.argv[0]
    if os.sep not in argv0 or argv0.endswith(".py"):
        return "amlops"  # found on PATH, or `python -m amlops` / `-c`
    on_path = shutil.which("amlops")
    if on_path is not None and Path(on_path).resolve() == Path(argv0).resolve():
        return "amlops"
    shown = shown_path(Path(argv0))
    # a bare name would be looked up on PATH, not in the cwd
    return shlex.quote(shown if os.sep in shown else f".{os.sep}{shown}")


def shown_path(path: Path) -> str:
    """``path`` for a hint: relative when it is below the cwd, else absolute (no ``../..``)."""
    absolute = Path(os.path.abspath(path))
    cwd = Path.cwd()
    return str(absolute.relative_to(cwd) if absolute.is_relative_to(cwd) else absolute)


def state_dir_option(state_dir: str) -> str:
    """`` --state-dir DIR`` for a hint, or nothing when DIR is the default."""
    if Path(state_dir).resolve() == Path(DEFAULT_STATE_DIR).resolve():
        return ""
    return f" --state-dir {shlex.quote(state_dir)}"


class Display:
    """A live table on a terminal; one line per change of state in logs and pipes."""

    def __init__(self, transient: bool) -> None:
        self._live: Live | None = None
        self._transient = transient  # `--once` prints the final table itself
        self._seen: dict[tuple[str, str, str], tuple[str, str]] = {}

    def __enter__(self) -> Display:
        if common.stdout.is_terminal:
            self._live = Live(
                console=common.stdout, refresh_per_second=4, transient=self._transient
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def note(self, *parts: Part) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        common.stdout.print(line((stamp, "dim"), " ", *parts))

    def show(self, rows: Sequence[Row], title: str) -> None:
        if self._live is not None:
            self._live.update(status_table(rows, title))
            return
        for row in rows:
            condition = row.condition()
            state = (str(row.phase), str(condition.get("message", "")))
            key = (row.kind, row.workspace, row.name)
            if self._seen.get(key) != state:
                self._seen[key] = state
                ref = f"{row.kind}/{row.workspace}/{row.name}"
                self.note(f"{ref}: {state[0]} {condition.get('reason', '')}: {state[1]}")
