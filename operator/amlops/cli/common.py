"""What every command shares: exit codes, consoles, output-format handling."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
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


class UsageError(Exception):
    """Bad arguments or an environment the command cannot work in (exit 2)."""


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
