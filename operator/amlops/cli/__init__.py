"""The ``amlops`` command line. Each command lives in its own module and registers itself.

Exit codes (all commands): 0 success; 1 findings of severity error, a failed apply/run, or
unparsable input; 2 usage or internal error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.markup import escape

from amlops.cli import common
from amlops.core.limits import LimitsError

EXIT_OK = common.EXIT_OK
EXIT_FINDINGS = common.EXIT_FINDINGS
EXIT_USAGE = common.EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    from amlops.cli import commands

    parser = argparse.ArgumentParser(
        prog="amlops",
        description="GitOps for an Azure Machine Learning platform.",
        epilog="exit codes: 0 ok, 1 findings/failure, 2 usage or internal error",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in commands.REGISTRY:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except (common.UsageError, LimitsError) as exc:  # a bad AMLOPS_MAX_* is a usage error
        common.stderr.print(f"[red]error:[/] {escape(str(exc))}")
        return EXIT_USAGE
    except Exception as exc:  # a bug, not a finding: say so, keep the exit code contract
        common.stderr.print(f"[red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}")
        if os.environ.get("AMLOPS_DEBUG"):
            raise
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
