"""What every command shares: exit codes, consoles, output-format handling."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from rich.console import Console

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def _width() -> int | None:
    # Rich falls back to 80 columns when not writing to a terminal (CI logs, pipes), which folds
    # every table cell; logs have no width limit, so give tables room there.
    return None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160


stdout = Console(highlight=False, width=_width())
stderr = Console(stderr=True, highlight=False, width=_width())

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    summary: str,
    exits: str,
    *,
    path: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` for ``amlops --help``, ``exits`` (what each exit code means)
    for its own ``--help``, and with ``path`` the optional PATH argument it reads, defaulting
    to that folder."""
    p = sub.add_parser(name, help=summary, description=exits)
    if path is not None:
        p.add_argument("path", nargs="?", default=path, metavar="PATH")
    return p


class UsageError(Exception):
    """Bad arguments or an environment the command cannot work in (exit 2)."""


def is_terminal() -> bool:
    """Whether a person is reading stdout. Not rich's ``Console.is_terminal``: that is also
    true under FORCE_COLOR, which CI systems set to get colours in logs that are not terminals."""
    return sys.stdout.isatty()


def print_lines(lines: Iterable[str]) -> None:
    """Plain lines, never through rich: no markup is read, no line is folded to a width."""
    sys.stdout.writelines(line + "\n" for line in lines)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
