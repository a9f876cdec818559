"""The body of ``amlops invoke --data FILE``: a regular file (or stdin), and not too large.

``/dev/zero`` or a FIFO nobody writes to would otherwise be read forever, and a huge file
would be held in memory whole. The router refuses large bodies too; this refuses them before
reading them.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import BinaryIO

from amlops.cli import common

DEFAULT_MAX_MIB = 100
_MIB = 1 << 20


def read_body(data: str, max_mib: float) -> bytes:
    """The bytes of ``data`` (a path, or ``-`` for stdin); UsageError naming the file when it
    is not a regular file or is larger than ``max_mib`` MiB."""
    limit = int(max_mib * _MIB)
    if data == "-":
        return _read_limited(sys.stdin.buffer, limit, "stdin")
    path = Path(data)
    try:
        # stat before opening: opening a FIFO for reading waits for a writer
        st = path.stat()
    except OSError as exc:
        raise common.UsageError(f"cannot read {path}: {exc.strerror}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise common.UsageError(
            f"--data {path} is not a regular file (a device, FIFO or folder): write the request "
            "body to a file, or pipe it with --data -"
        )
    if st.st_size > limit:
        raise common.UsageError(_too_large(str(path), max_mib))
    try:
        with path.open("rb") as f:
            return _read_limited(f, limit, str(path))
    except OSError as exc:
        raise common.UsageError(f"cannot read {path}: {exc.strerror}") from exc


def _read_limited(f: BinaryIO, limit: int, what: str) -> bytes:
    body = f.read(limit + 1)  # one byte more tells "exactly the limit" from "over it"
    if len(body) > limit:
        raise common.UsageError(_too_large(what, limit / _MIB))
    return body


def _too_large(what: str, max_mib: float) -> str:
    return (
        f"--data {what} is larger than {max_mib:g} MiB: send a smaller request, or raise the "
        "limit with --max-data-mib"
    )
