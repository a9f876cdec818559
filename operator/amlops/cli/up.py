"""``amlops up``, ``status``, ``invoke`` and ``run``: the whole loop on a laptop.

``up`` validates the manifests, then reconciles them into the local backend and keeps doing
so, on file changes and on an interval (drift correction), with a live status table. ``--once``
reconciles until everything is Ready or Stalled, stops what it started and exits 0 (all Ready)
or 1; state stays in the state directory, so the next ``up`` resumes. ``status`` prints the same
table from the state directory, ``invoke`` scores through a running endpoint and ``run`` asks
for a pipeline run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from amlops.backends.base import BackendError
from amlops.backends.local.backend import (
    DEFAULT_STATE_DIR,
    LocalBackend,
    StateDirLockedError,
    lock_holder,
)
from amlops.backends.local.catalog import StateError
from amlops.cli import common, state
from amlops.cli.request_body import DEFAULT_MAX_MIB, read_body
from amlops.cli.validate import findings_table
from amlops.core.files import PathRefusedError
from amlops.core.manifests import Manifest
from amlops.core.validate import Report, validate_paths
from amlops.reconcile.conditions import Phase, phase_of
from amlops.reconcile.tree import ORDER, ObjectReport, TreeReconciler

DEFAULT_INTERVAL_S = 10.0
DEFAULT_TIMEOUT_S = 600.0
_WATCH_POLL_S = 0.5
# passes in a row with only dependency waits left before `--once` calls it a dead end: a
# dependency that is about to appear shows up within a pass or two
_DEADLOCK_PASSES = 3
_SMOKE_FILE = "sample-request.json"
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


# -- argument parsing -----------------------------------------------------------------------


def _state_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        metavar="DIR",
        help=f"where the local backend keeps its state (default: {DEFAULT_STATE_DIR})",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "up",
        help="run the manifests on this machine (local backend) and keep them in sync",
        description="Exit (with --once): 0 everything Ready; 1 validation errors, something "
        "Stalled, a failed smoke request, the timeout or an unusable state directory; 2 usage.",
    )
    p.add_argument("path", nargs="?", default="manifests", metavar="PATH")
    _state_dir(p)
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


def register_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="the objects `amlops up` manages and their conditions")
    _state_dir(p)
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")
    p.set_defaults(func=run_status)


def register_invoke(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("invoke", help="send a scoring request to an endpoint `amlops up` serves")
    p.add_argument("endpoint", metavar="ENDPOINT")
    p.add_argument("--data", required=True, metavar="FILE", help="request body ('-': stdin)")
    p.add_argument(
        "--max-data-mib",
        type=float,
        default=DEFAULT_MAX_MIB,
        metavar="MIB",
        help=f"refuse a request body larger than this (default: {DEFAULT_MAX_MIB})",
    )
    p.add_argument("--deployment", metavar="D", help="score with this deployment only")
    p.add_argument("--workspace", metavar="WS", help="when several workspaces have ENDPOINT")
    _state_dir(p)
    p.set_defaults(func=run_invoke)


def register_run(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run a pipeline now and wait for it")
    p.add_argument("pipeline", metavar="PIPELINE")
    p.add_argument("--workspace", metavar="WS", help="when several workspaces have PIPELINE")
    p.add_argument(
        "--path",
        metavar="PATH",
        help="manifests, when `amlops up` is not running (default: the last `up`'s PATH)",
    )
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S")
    _state_dir(p)
    p.set_defaults(func=run_run)


# -- rendering --------------------------------------------------------------------------------


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


def _prog() -> str:
    """How to call us again, for the hints we print: ``amlops`` when that is what PATH finds,
    else the program's path (``.venv/bin/amlops`` from make), relative only below the cwd."""
    argv0 = sys.argv[0]
    if os.sep not in argv0 or argv0.endswith(".py"):
        return "amlops"  # found on PATH, or `python -m amlops` / `-c`
    on_path = shutil.which("amlops")
    if on_path is not None and Path(on_path).resolve() == Path(argv0).resolve():
        return "amlops"
    shown = _shown_path(Path(argv0))
    # a bare name would be looked up on PATH, not in the cwd
    return shlex.quote(shown if os.sep in shown else f".{os.sep}{shown}")


def _shown_path(path: Path) -> str:
    """``path`` for a hint: relative when it is below the cwd, else absolute (no ``../..``)."""
    absolute = Path(os.path.abspath(path))
    cwd = Path.cwd()
    return str(absolute.relative_to(cwd) if absolute.is_relative_to(cwd) else absolute)


def _state_dir_option(state_dir: str) -> str:
    """`` --state-dir DIR`` for a hint, or nothing when DIR is the default."""
    if Path(state_dir).resolve() == Path(DEFAULT_STATE_DIR).resolve():
        return ""
    return f" --state-dir {shlex.quote(state_dir)}"


# -- amlops up ----------------------------------------------------------------------------------


def _validate(path: Path) -> Report | None:
    report = validate_paths([path])
    if report.ok:
        return report
    common.stderr.print(findings_table(report.errors))
    common.stderr.print(
        line(
            ("validation failed", "red"),
            f": {len(report.errors)} errors in {path}; "
            f"`{_prog()} validate {shlex.quote(str(path))}` shows them all",
        )
    )
    return None


class _Watcher:
    """Notices edits under PATH (manifests, and the code and data they point at)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._last = self._snapshot()

    def _snapshot(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__pycache__"]
            for name in files:
                if name.startswith(".") or name.endswith(".pyc"):
                    continue
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                except OSError:
                    continue
                out[path] = (stat.st_mtime_ns, stat.st_size)
        return out

    def changed(self) -> bool:
        now = self._snapshot()
        if now != self._last:
            self._last = now
            return True
        return False


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


class _Display:
    """A live table on a terminal; one line per change of state in logs and pipes."""

    def __init__(self, transient: bool) -> None:
        self._live: Live | None = None
        self._transient = transient  # `--once` prints the final table itself
        self._seen: dict[tuple[str, str, str], tuple[str, str]] = {}

    def __enter__(self) -> _Display:
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


@state.reports_state_errors
def run_up(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise common.UsageError(f"{path} does not exist")
    report = _validate(path)
    if report is None:
        return common.EXIT_FINDINGS
    backend = state.open_writable(args.state_dir, path)
    try:
        backend.start()
    except StateDirLockedError as exc:
        backend.close()
        raise common.UsageError(str(exc)) from exc
    backend.catalog.set_meta("manifests", str(path.resolve()))
    ok = False
    try:
        with _sigterm_as_interrupt(), _Display(transient=args.once) as display:
            reports = _loop(args, path, report.manifests, backend, display)
            if args.once:
                common.stdout.print(status_table(rows_of(reports)))
                ok = all(r.settled and r.outcome.phase is not Phase.STALLED for r in reports)
                if ok and args.smoke:
                    ok = _smoke(backend, report.manifests)
    except KeyboardInterrupt:
        if args.once:
            raise  # a script asked for one pass and did not get it: exit 130
        return common.EXIT_OK
    finally:
        common.stderr.print("[dim]stopping the scoring servers and pipeline runs…[/]")
        backend.close("stopped by amlops up")
    if ok:
        _what_next(path, args.state_dir, report.manifests)
    return common.EXIT_OK if ok else common.EXIT_FINDINGS


def _loop(
    args: argparse.Namespace,
    path: Path,
    manifests: list[Manifest],
    backend: LocalBackend,
    display: _Display,
) -> list[ObjectReport]:
    reconciler = TreeReconciler(backend, backend.catalog, backend.put_compute)
    watcher = _Watcher(path)
    started = time.monotonic()
    reports: list[ObjectReport] = []
    stuck = 0
    while True:
        if not backend.state_dir_intact():
            display.note(
                (f"{backend.root} was deleted while running", "yellow"),
                ": stopped what it ran and starting over from an empty state directory",
            )
            backend.reset_after_loss()
            backend.catalog.set_meta("manifests", str(path.resolve()))
            reconciler = TreeReconciler(backend, backend.catalog, backend.put_compute)
        try:
            reports = reconciler.reconcile(manifests)
        except StateError:
            raise  # a damaged catalog or an unwritable folder does not mend itself: stop
        except Exception as exc:  # shown, then retried: `up` keeps running
            if backend.state_dir_intact():
                backend.check_state()  # a damaged catalog would fail every pass: stop
                display.note(("reconcile pass failed", "red"), f": {type(exc).__name__}: {exc}")
            _sleep(args.interval if not args.once else 1.0, None)
            continue
        display.show(rows_of(reports), f"amlops up {path} — state in {backend.root}")
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
        if _sleep(delay, watcher):
            fresh = _validate(path)
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


def _sleep(seconds: float, watcher: _Watcher | None) -> bool:
    """Sleep, waking early when files change; True when they did."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(_WATCH_POLL_S, left))
        if watcher is not None and watcher.changed():
            return True


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


def _smoke(backend: LocalBackend, manifests: Sequence[Manifest]) -> bool:
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


def _what_next(path: Path, state_dir: str, manifests: Sequence[Manifest]) -> None:
    prog = _prog()
    state = _state_dir_option(state_dir)
    hints = [
        (
            f"{prog} up {shlex.quote(str(path))}{state}",
            "keep it running: live table, file watch, drift correction",
        )
    ]
    for m in manifests:
        if m.kind == "Endpoint":
            name = str((m.spec.get("endpoint") or {}).get("name", m.name))
            sample = _sample_request(m)
            data = shlex.quote(_shown_path(sample)) if sample else "request.json"
            hints.append(
                (
                    f"{prog} invoke {shlex.quote(name)} --data {data}{state}",
                    "score, while `up` runs",
                )
            )
    for m in manifests:
        if m.kind == "Pipeline":
            hints.append((f"{prog} run {shlex.quote(m.name)}{state}", "retrain now"))
    hints.append((f"{prog} status{state}", "the table above, from the state directory"))
    width = max(len(command) for command, _ in hints)
    lines = [f"  {command.ljust(width)}   # {why}" for command, why in hints]
    # soft wrap: a long hint stays one line, to be copied and pasted whole
    common.stdout.print(line("\nWhat to try next:\n" + "\n".join(lines)), soft_wrap=True)


# -- amlops status --------------------------------------------------------------------------


def _open_existing(state_dir: str) -> LocalBackend:
    return state.open_existing(state_dir, _prog())


def _asset_tags(backend: LocalBackend, record: Mapping[str, Any]) -> dict[str, Any]:
    """The tags (Git commit, manifest) of what an object made: its model version, its latest
    run, or its endpoint and each of the endpoint's deployments."""
    kind, workspace, status = record["kind"], record["workspace"], record["status"]
    if kind == "Model":
        name, version = status.get("modelName"), status.get("version")
        found = (
            backend.get_model_version(workspace, name, version)
            if isinstance(name, str) and isinstance(version, str)
            else None
        )
        return {"tags": dict(found.tags)} if found is not None else {}
    if kind == "Pipeline":
        run = backend.latest_pipeline_run(workspace, record["name"])
        return {"tags": dict(run.tags)} if run is not None else {}
    name = status.get("endpointName")
    endpoint = backend.get_endpoint(workspace, name) if isinstance(name, str) else None
    if endpoint is None:
        return {}
    deployments = backend.catalog.list_deployment_rows(workspace, endpoint.name)
    return {
        "tags": dict(endpoint.tags),
        "deploymentTags": {row["name"]: row["tags"] for row in deployments},
    }


@state.reports_state_errors
def run_status(args: argparse.Namespace) -> int:
    backend = _open_existing(args.state_dir)
    try:
        records = backend.catalog.list_objects()
        holder = lock_holder(backend.root)
        assets = [_asset_tags(backend, r) for r in records] if args.output == "json" else []
    finally:
        backend.close()
    if args.output == "json":
        common.print_json(
            {
                "stateDir": str(backend.root),
                "upRunning": holder is not None,
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
        )
        return common.EXIT_OK
    rows = [Row(r["kind"], r["workspace"], r["name"], r["status"]) for r in records]
    common.stdout.print(status_table(rows, f"state in {backend.root}"))
    if holder:
        common.stdout.print(line(f"{holder} is running: endpoints are being served"))
    else:
        common.stdout.print(
            line(
                f"`{_prog()} up` is not running: this is the last state it saw; endpoints are "
                "not being served"
            )
        )
    return common.EXIT_OK


# -- amlops invoke --------------------------------------------------------------------------


def _find(
    records: Sequence[Mapping[str, Any]], kind: str, name: str, workspace: str | None
) -> Mapping[str, Any]:
    found = [
        r
        for r in records
        if r["kind"] == kind and r["name"] == name and workspace in (None, r["workspace"])
    ]
    if not found:
        raise common.UsageError(f"no {kind} {name!r} in the state directory; see `amlops status`")
    if len(found) > 1:
        spaces = ", ".join(r["workspace"] for r in found)
        raise common.UsageError(f"{kind} {name!r} is in several workspaces ({spaces}): --workspace")
    return found[0]


@state.reports_state_errors
def run_invoke(args: argparse.Namespace) -> int:
    body = read_body(args.data, args.max_data_mib)
    backend = _open_existing(args.state_dir)
    try:
        record = _find(backend.catalog.list_objects(), "Endpoint", args.endpoint, args.workspace)
        name = str(record["status"].get("endpointName", args.endpoint))
        try:
            result = backend.invoke(record["workspace"], name, body, args.deployment)
        except BackendError as exc:
            common.stderr.print(line(("error:", "red"), f" {exc}"))
            return common.EXIT_FINDINGS
    finally:
        backend.close()
    text = result.body.decode("utf-8", "replace")
    try:
        common.print_json(json.loads(text))
    except ValueError:
        sys.stdout.write(text + "\n")
    common.stderr.print(
        line((f"{result.status} from deployment {result.deployment or '-'}", "dim"))
    )
    return common.EXIT_OK if 200 <= result.status < 300 else common.EXIT_FINDINGS


# -- amlops run -----------------------------------------------------------------------------


@state.reports_state_errors
def run_run(args: argparse.Namespace) -> int:
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    state_dir = Path(args.state_dir)
    holder = lock_holder(state_dir.resolve()) if state_dir.is_dir() else None
    if holder is not None:
        backend = state.open_writable(args.state_dir)  # the request is written to the catalog
        try:
            record = _find(
                backend.catalog.list_objects(), "Pipeline", args.pipeline, args.workspace
            )
            backend.request_run(record["workspace"], args.pipeline, at)
            common.stdout.print(line(f"asked {holder} to run {args.pipeline}"))
            return _follow(backend, record["workspace"], args.pipeline, at, args.timeout, None)
        finally:
            backend.close()
    manifests_path = args.path or _last_path(args.state_dir) or "manifests"
    report = _validate(Path(manifests_path))
    if report is None:
        return common.EXIT_FINDINGS
    pipelines = [
        m
        for m in report.manifests
        if m.kind == "Pipeline"
        and m.name == args.pipeline
        and args.workspace in (None, m.workspace)
    ]
    if len(pipelines) != 1:
        what = "no" if not pipelines else "more than one"
        raise common.UsageError(f"{what} Pipeline {args.pipeline!r} in {manifests_path}")
    workspace = pipelines[0].workspace or ""
    backend = state.open_writable(args.state_dir, Path(manifests_path))
    try:
        backend.start()
    except StateDirLockedError as exc:
        backend.close()
        raise common.UsageError(str(exc)) from exc
    try:
        backend.request_run(workspace, args.pipeline, at)
        reconciler = TreeReconciler(backend, backend.catalog, backend.put_compute)

        def step() -> None:
            # models first (a pipeline may need them), never endpoints: `run` serves nothing
            reconciler.reconcile(report.manifests, kinds=("Model", "Pipeline"))

        common.stdout.print(line(f"running {args.pipeline} from {manifests_path}"))
        return _follow(backend, workspace, args.pipeline, at, args.timeout, step)
    finally:
        backend.close("stopped by amlops run")


def _last_path(state_dir: str) -> str | None:
    if not state.has_state(state_dir):
        return None
    backend = LocalBackend(state_dir, read_only=True)
    try:
        return backend.catalog.get_meta("manifests")
    finally:
        backend.close()


def _follow(
    backend: LocalBackend,
    workspace: str,
    pipeline: str,
    at: str,
    timeout: float,
    step: Callable[[], None] | None,
) -> int:
    """Wait until the run asked for at ``at`` has ended; print its progress."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if step is not None:
            step()
        record = backend.catalog.get_object("Pipeline", workspace, pipeline)
        status = record["status"] if record else {}
        row = Row("Pipeline", workspace, pipeline, status)
        message = str(row.condition().get("message", ""))
        if message != last:
            common.stdout.print(line(f"{pipeline}: {message}"))
            last = message
        handled = status.get("lastHandledRequest") == at
        if handled and row.phase in (Phase.READY, Phase.STALLED):
            return common.EXIT_OK if row.phase is Phase.READY else common.EXIT_FINDINGS
        time.sleep(0.5)
    common.stderr.print(line((f"{pipeline}: no result after {timeout:g} s", "red")))
    return common.EXIT_FINDINGS
