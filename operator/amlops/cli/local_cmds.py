"""``amlops status``, ``invoke`` and ``run``: the local backend's state, read or asked of it
while (or after) ``amlops up`` runs.

``status`` prints the table ``up`` shows, from the state directory (whichever backend ``up``
ran); ``invoke`` scores through a running endpoint (the local router, or Azure's scoring URI
after ``up --backend azureml``); ``run`` asks a running ``up`` for a pipeline run, or runs the
pipeline itself when none runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amlops.backends import BackendOptions, open_backend
from amlops.backends.base import Backend, BackendError
from amlops.backends.local.backend import LocalBackend, StateDirLockedError, lock_holder
from amlops.cli import common, state
from amlops.cli.request_body import DEFAULT_MAX_MIB, read_body
from amlops.cli.up import DEFAULT_TIMEOUT_S, validate_or_show
from amlops.cli.view import Row, line, prog, status_json, status_table
from amlops.core.config import find_config
from amlops.reconcile.conditions import Phase
from amlops.reconcile.tree import TreeReconciler

# -- argument parsing -----------------------------------------------------------------------


def register_status(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="the objects `amlops up` manages and their conditions")
    state.add_state_dir_option(p)
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
    state.add_state_dir_option(p)
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
    state.add_state_dir_option(p)
    p.set_defaults(func=run_run)


# -- amlops status --------------------------------------------------------------------------


def _open_existing(state_dir: str) -> LocalBackend:
    return state.open_existing(state_dir, prog())


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
    return {
        "tags": dict(endpoint.tags),
        "deploymentTags": backend.deployment_tags(workspace, endpoint.name),
    }


@state.reports_state_errors
def run_status(args: argparse.Namespace) -> int:
    backend = _open_existing(args.state_dir)
    try:
        records = backend.objects.list_objects()
        holder = lock_holder(backend.root)
        remote = state.last_backend(backend)
        # the assets' tags are in the local catalog only when the local backend made them
        local = remote == "local" and args.output == "json"
        assets = [_asset_tags(backend, r) if local else {} for r in records]
    finally:
        backend.close()
    if args.output == "json":
        common.print_json(status_json(backend.root, holder is not None, records, assets))
        return common.EXIT_OK
    rows = [Row(r["kind"], r["workspace"], r["name"], r["status"]) for r in records]
    common.stdout.print(status_table(rows, f"state in {backend.root}"))
    if remote != "local":
        running = f"{holder} is running" if holder else f"`{prog()} up` is not running"
        common.stdout.print(
            line(
                f"{running}; these objects are in {remote} (`{prog()} up --backend {remote}`), "
                "where endpoints are served"
            )
        )
    elif holder:
        common.stdout.print(line(f"{holder} is running: endpoints are being served"))
    else:
        common.stdout.print(
            line(
                f"`{prog()} up` is not running: this is the last state it saw; endpoints are "
                "not being served"
            )
        )
    return common.EXIT_OK


# -- amlops invoke --------------------------------------------------------------------------


def _find(
    records: Sequence[Mapping[str, Any]],
    kind: str,
    name: str,
    workspace: str | None,
    also: tuple[str, ...] = (),
) -> Mapping[str, Any]:
    """The object ``kind`` (or one of the ``also`` kinds) ``name`` that ``up`` manages."""
    found = [
        r
        for r in records
        if r["kind"] in (kind, *also) and r["name"] == name and workspace in (None, r["workspace"])
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
        record = _find(
            backend.objects.list_objects(),
            "Endpoint",
            args.endpoint,
            args.workspace,
            also=("ServerlessEndpoint",),
        )
        name = str(record["status"].get("endpointName", args.endpoint))
        try:
            target = _invoke_target(args.state_dir, backend)
            result = target.invoke(record["workspace"], name, body, args.deployment)
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


def _invoke_target(state_dir: str, backend: LocalBackend) -> Backend:
    """The local backend, or the remote one the last ``up`` ran (same owner, same config)."""
    remote = state.last_backend(backend)
    if remote == "local":
        return backend
    path = backend.last_manifests_path()
    config = find_config([Path(path)]).workspace if path else None
    options = BackendOptions(owner=state.owner_identity(state_dir), config=config)
    try:
        return open_backend(remote, options).backend
    except ValueError as exc:
        raise BackendError(str(exc)) from exc


# -- amlops run -----------------------------------------------------------------------------


@state.reports_state_errors
def run_run(args: argparse.Namespace) -> int:
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    state_dir = Path(args.state_dir)
    holder = lock_holder(state_dir.resolve()) if state_dir.is_dir() else None
    if holder is not None:
        # writable: the request is written to the state directory, for the running `up`
        backend = state.open_writable(args.state_dir)
        try:
            record = _find(
                backend.objects.list_objects(), "Pipeline", args.pipeline, args.workspace
            )
            backend.request_run(record["workspace"], args.pipeline, at)
            common.stdout.print(line(f"asked {holder} to run {args.pipeline}"))
            return _follow(backend, record["workspace"], args.pipeline, at, args.timeout, None)
        finally:
            backend.close()
    manifests_path = args.path or _last_path(args.state_dir) or "manifests"
    report = validate_or_show(Path(manifests_path))
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
        reconciler = TreeReconciler(backend, backend.objects, backend.seed_computes)

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
        return backend.last_manifests_path()
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
        record = backend.objects.get_object("Pipeline", workspace, pipeline)
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
