"""``amlops up``: the whole loop on a laptop.

``up`` validates the manifests, then reconciles them into the local backend (or Azure ML,
``--backend azureml``) and keeps doing so, on file changes and on an interval (drift
correction), with a live status table. ``--once``
reconciles until everything is Ready or Stalled, stops what it started and exits 0 (all Ready)
or 1; state stays in the state directory, so the next ``up`` resumes. The commands that read or
ask the state directory while ``up`` runs (``status``, ``invoke``, ``run``) are in
``local_cmds.py``; what is printed is in ``view.py``.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from rich.markup import escape

from amlops.backends.base import Backend, BackendError
from amlops.backends.local.backend import StateDirLockedError
from amlops.backends.local.db import StateError
from amlops.cli import common, state
from amlops.cli.state import UpSession
from amlops.cli.validate import findings_table
from amlops.cli.view import (
    Display,
    line,
    prog,
    rows_of,
    shown_path,
    state_dir_option,
    status_table,
)
from amlops.cli.watch import Watcher, wait_for_change
from amlops.core.files import PathRefusedError
from amlops.core.manifests import Manifest
from amlops.core.validate import Report, validate_paths
from amlops.reconcile.conditions import Phase
from amlops.reconcile.driver import UNSUPPORTED
from amlops.reconcile.tree import ObjectReport, TreeReconciler

DEFAULT_INTERVAL_S = 10.0
DEFAULT_TIMEOUT_S = 600.0
# passes in a row with only dependency waits left before `--once` calls it a dead end: a
# dependency that is about to appear shows up within a pass or two
_DEADLOCK_PASSES = 3
_SMOKE_FILE = "sample-request.json"


HELP = "run the manifests on this machine (or in Azure ML) and keep them in sync"
EXITS = (
    "Exit (with --once): 0 everything Ready (objects only another backend can run, Stalled "
    "with UnsupportedByBackend, are listed and do not count); 1 validation errors, something "
    "else Stalled, a failed smoke request, the timeout or an unusable state directory; 2 usage."
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = common.command(sub, "up", HELP, EXITS, path="manifests")
    state.add_state_dir_option(p)
    p.add_argument(
        "--backend",
        choices=state.BACKENDS,
        default="local",
        help="where the assets go: this machine (default) or Azure ML (AMLOPS_AZURE_* and "
        "amlops.yaml `workspace:` say which workspace; the state directory keeps the object "
        "records)",
    )
    p.add_argument(
        "--once", action="store_true", help="reconcile until settled, stop what started, exit"
    )
    p.add_argument(
        "--smoke", action="store_true", help="send one scoring request to each endpoint at the end"
    )
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="S",
        help=f"seconds between drift-correcting passes (default: {DEFAULT_INTERVAL_S:g})",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"with --once: give up after S seconds (default: {DEFAULT_TIMEOUT_S:g})",
    )
    p.set_defaults(func=run_up)


# -- amlops up ----------------------------------------------------------------------------------


def validate_or_show(path: Path) -> Report | None:
    """The manifests under ``path`` when they are valid; else their errors, shown, and None."""
    report = validate_paths([path])
    if report.ok:
        return report
    common.stderr.print(findings_table(report.errors))
    common.stderr.print(
        line(
            ("validation failed", "red"),
            f": {len(report.errors)} errors in {path}; "
            f"`{prog()} validate {shlex.quote(str(path))}` shows them all",
        )
    )
    return None


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """`kill PID` stops `up` as cleanly as Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@state.reports_state_errors
def run_up(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise common.UsageError(f"{path} does not exist")
    report = validate_or_show(path)
    if report is None:
        return common.EXIT_FINDINGS
    session = state.open_session(getattr(args, "backend", "local"), args.state_dir, path)
    try:
        session.start()
    except StateDirLockedError as exc:
        session.close("")
        raise common.UsageError(str(exc)) from exc
    session.record_manifests_path(path)
    ok = False
    unsupported: frozenset[tuple[str, str, str]] = frozenset()
    try:
        with _sigterm_as_interrupt(), Display(transient=args.once) as display:
            reports = _loop(args, path, report.manifests, session, display)
            if args.once:
                common.stdout.print(status_table(rows_of(reports)))
                ok = all(r.settled and not _failed(r) for r in reports)
                unsupported = _say_unsupported(reports, session.name)
                if ok and args.smoke:
                    ok = _smoke(session.backend, report.manifests)
    except KeyboardInterrupt:
        if args.once:
            raise  # a script asked for one pass and did not get it: exit 130
        return common.EXIT_OK
    finally:
        if session.name == "local":
            common.stderr.print("[dim]stopping the scoring servers and pipeline runs…[/]")
        session.close("stopped by amlops up")
    if ok:
        _what_next(path, args.state_dir, report.manifests, session.name, unsupported)
    return common.EXIT_OK if ok else common.EXIT_FINDINGS


def _failed(report: ObjectReport) -> bool:
    """Stalled, except on what only another backend can run: the manifests are fine."""
    outcome = report.outcome
    return outcome.phase is Phase.STALLED and outcome.reason != UNSUPPORTED


def _say_unsupported(
    reports: Sequence[ObjectReport], backend: str
) -> frozenset[tuple[str, str, str]]:
    left = [r for r in reports if r.outcome.reason == UNSUPPORTED]
    if not left:
        return frozenset()
    names = ", ".join(escape(f"{r.kind}/{r.name}") for r in left)
    other = "--backend azureml" if backend == "local" else "another backend"
    common.stderr.print(
        f"[yellow]{len(left)} object(s) the {backend} backend cannot run, left out of the exit "
        f"status:[/] {names} (they run with {other})"
    )
    return frozenset((r.kind, r.workspace, r.name) for r in left)


def _loop(
    args: argparse.Namespace,
    path: Path,
    manifests: list[Manifest],
    session: UpSession,
    display: Display,
) -> list[ObjectReport]:
    reconciler = TreeReconciler(session.backend, session.objects, session.learn)
    watcher = Watcher(path)
    started = time.monotonic()
    reports: list[ObjectReport] = []
    stuck = 0
    while True:
        if not session.state_dir_intact():
            display.note(
                (f"{session.root} was deleted while running", "yellow"),
                ": stopped what it ran and starting over from an empty state directory",
            )
            session.reset_after_loss()
            session.record_manifests_path(path)
            reconciler = TreeReconciler(session.backend, session.objects, session.learn)
        try:
            reports = reconciler.reconcile(manifests)
        except StateError:
            raise  # a damaged catalog or an unwritable folder does not mend itself: stop
        except Exception as exc:  # shown, then retried: `up` keeps running
            if session.state_dir_intact():
                session.check_state()  # a damaged catalog would fail every pass: stop
                display.note(("reconcile pass failed", "red"), f": {type(exc).__name__}: {exc}")
            time.sleep(args.interval if not args.once else 1.0)
            continue
        display.show(rows_of(reports), f"amlops up {path} — state in {session.root}")
        if args.once:
            if all(r.settled for r in reports):
                return reports
            if _deadlocked(reports):
                stuck += 1
                if stuck >= _DEADLOCK_PASSES:
                    display.note(
                        ("nothing left to do", "red"),
                        ": "
                        + "; ".join(
                            f"{r.kind}/{r.name} is {r.outcome.message}"
                            for r in reports
                            if not r.settled
                        ),
                    )
                    return reports
            else:
                stuck = 0
            if time.monotonic() - started > args.timeout:
                busy = ", ".join(f"{r.kind}/{r.name}" for r in reports if not r.settled)
                display.note(
                    (f"gave up after {args.timeout:g} s", "red"), f": {busy} still reconciling"
                )
                return reports
        requeues = [r.requeue_after for r in reports if r.requeue_after is not None]
        delay = min([args.interval, *requeues])
        if wait_for_change(delay, watcher):
            fresh = validate_or_show(path)
            if fresh is None:
                display.note(("the manifests have errors", "red"), ": keeping the last valid ones")
            else:
                display.note("manifests changed: reconciling")
                manifests = fresh.manifests


def _deadlocked(reports: Sequence[ObjectReport]) -> bool:
    """Everything not settled only waits for a dependency, and nothing is in progress that
    could produce one (e.g. an Endpoint waiting for the model of a Pipeline that failed)."""
    waiting = [r for r in reports if not r.settled]
    return bool(waiting) and all(r.outcome.reason == "DependencyNotReady" for r in waiting)


def _sample_request(m: Manifest) -> Path | None:
    for i, dep in enumerate(m.spec.get("deployments") or []):
        code = (dep.get("code_configuration") or {}).get("code")
        if isinstance(code, str):
            where = ("spec", "deployments", i, "code_configuration", "code")
            try:  # validated already; checked again, as every reader of a named path does
                candidate = m.contained_path(where, code) / _SMOKE_FILE
            except PathRefusedError:
                continue
            if candidate.is_file():
                return candidate
    return None


def _smoke(backend: Backend, manifests: Sequence[Manifest]) -> bool:
    ok = True
    for m in manifests:
        if m.kind != "Endpoint":
            continue
        sample = _sample_request(m)
        name = str((m.spec.get("endpoint") or {}).get("name", m.name))
        if sample is None:
            common.stdout.print(
                line(
                    f"smoke {name}: skipped, no {_SMOKE_FILE} next to any deployment's "
                    "scoring script"
                )
            )
            continue
        body = sample.read_bytes()
        try:
            result = backend.invoke(m.workspace or "", name, body)
        except BackendError as exc:
            common.stdout.print(line((f"smoke {name}: {exc}", "red")))
            ok = False
            continue
        answer = result.body.decode("utf-8", "replace")
        style = "green" if 200 <= result.status < 300 else "red"
        request = body.decode("utf-8", "replace").strip()
        common.stdout.print(line(f"smoke {name}: request {request}"))
        common.stdout.print(
            line(
                (f"smoke {name}: {result.status} from deployment {result.deployment}:", style),
                f" {answer}",
            )
        )
        ok = ok and 200 <= result.status < 300
    return ok


def _what_next(
    path: Path,
    state_dir: str,
    manifests: Sequence[Manifest],
    backend: str = "local",
    unsupported: frozenset[tuple[str, str, str]] = frozenset(),
) -> None:
    """``unsupported``: keys (kind, workspace, name) of what this backend cannot run."""
    program = prog()
    option = state_dir_option(state_dir)
    where = f" --backend {backend}" if backend != "local" else ""
    hints = [
        (
            f"{program} up {shlex.quote(str(path))}{where}{option}",
            "keep it running: live table, file watch, drift correction",
        )
    ]
    for m in manifests:
        if m.kind == "Endpoint":
            name = str((m.spec.get("endpoint") or {}).get("name", m.name))
            sample = _sample_request(m)
            data = shlex.quote(shown_path(sample)) if sample else "request.json"
            hints.append(
                (
                    f"{program} invoke {shlex.quote(name)} --data {data}{option}",
                    "score, while `up` runs" if backend == "local" else "score, in Azure ML",
                )
            )
    for m in manifests:
        if m.kind == "Pipeline" and backend == "local" and m.key not in unsupported:
            hints.append((f"{program} run {shlex.quote(m.name)}{option}", "retrain now"))
    hints.append((f"{program} status{option}", "the table above, from the state directory"))
    width = max(len(command) for command, _ in hints)
    lines = [f"  {command.ljust(width)}   # {why}" for command, why in hints]
    # soft wrap: a long hint stays one line, to be copied and pasted whole
    common.stdout.print(line("\nWhat to try next:\n" + "\n".join(lines)), soft_wrap=True)
