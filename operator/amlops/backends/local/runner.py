"""Runs Azure ML pipeline jobs as local subprocesses, with Azure ML's pipeline semantics.

Steps start in dependency order; independent steps run in parallel, at most the compute's
``maxInstances`` at a time (shared by every run on that compute). Bindings become real paths:
each step output is a folder under the run's directory, ``${{parent.outputs.x}}`` is the
pipeline output's folder, a model input ``azureml:name:version`` is the registered version's
folder. Each step runs in a snapshot of its ``code`` folder with its output in
``<step>/user_logs/std_log.txt``. A step that exits non-zero fails the run, with the step and
its exit code in the message; steps after it never start and parallel ones are stopped. When
every step completes, outputs that carry ``name`` are registered as model versions in the same
transaction that marks the run Completed.

Component steps run the same way: a command component's command in a snapshot of its code,
with the step's bindings; a pipeline component's inner jobs as steps named ``OUTER.INNER``
(``amlops.kinds.pipeline`` maps their bindings). A job with a step running a component this
repository does not hold (``azureml:NAME:VERSION``, a registry's) is refused when submitted,
naming the component: its command is only known to Azure ML.

Inputs are read-only, as Azure ML mounts them (``ro_mount``). A local path or a model input is
copied into the run's folder (``inputs/<name>``, never the repository's or the registry's own
files) and the copy's write permissions are removed; a step's outputs lose theirs when the step
completes, before later steps read them. Permissions do not stop root, so each step's inputs
are also compared before and after it: a step that changed one fails, saying inputs are
read-only. When the run ends its folders get their owner's write permission back (files stay
read-only), so ``rm -rf`` of the state directory works.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from amlops.backends.base import (
    BackendError,
    BackendUnsupported,
    JobStatus,
    ModelRef,
    ModelVersion,
    ModelVersionSpec,
    PipelineRun,
    PipelineRunSpec,
    StepRun,
)
from amlops.backends.local import procs
from amlops.backends.local.catalog import AssetCatalog
from amlops.backends.local.db import StateError
from amlops.backends.local.models import ModelRegistry, Prepared
from amlops.core import files
from amlops.core.assets import parse_model_ref
from amlops.core.files import ignored
from amlops.core.provenance import TAG_RUN
from amlops.kinds.pipeline import (
    BINDING_RE,
    OPTIONAL_RE,
    JobGraph,
    JobSpecError,
    Step,
    literal,
    parse_job,
)

_POLL_S = 0.1
_LOG_TAIL_BYTES = 4096
_WRITE_BITS = 0o222
_READ_ONLY_HINT = "inputs are read-only, as on Azure ML: write to an output instead"


class StepSetupError(Exception):
    """A step could not be started (a missing input, a binding with no value)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id(pipeline: str) -> str:
    return f"{pipeline}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def last_line(log: Path) -> str:
    """The last non-empty line a step printed: usually what went wrong."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - _LOG_TAIL_BYTES))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def render_command(
    command: str, inputs: Mapping[str, str | None], outputs: Mapping[str, str]
) -> str:
    """Substitute ``${{inputs.x}}``/``${{outputs.y}}``, shell-quoted; drop ``$[[...]]`` blocks
    naming an input that has no value."""

    def value(expr: str) -> str | None:
        kind, _, name = expr.partition(".")
        if kind == "inputs":
            return inputs.get(name)
        if kind == "outputs":
            return outputs.get(name)
        return None

    def optional(match: Any) -> str:
        block = str(match.group(1))
        if all(value(e) is not None for e in BINDING_RE.findall(block)):
            return block
        return ""

    command = OPTIONAL_RE.sub(optional, command)

    def substitute(match: Any) -> str:
        found = value(str(match.group(1)))
        if found is None:
            raise StepSetupError(f"${{{{{match.group(1)}}}}} has no value")
        return shlex.quote(found)

    return " ".join(BINDING_RE.sub(substitute, command).split())


@dataclass
class _RunContext:
    """What the steps of one run share while it executes."""

    run_id: str
    active: _Active
    parent_inputs: Mapping[str, str | None]
    parent_outputs: Mapping[str, str]
    step_outputs: dict[str, dict[str, str]]
    states: dict[str, StepRun]
    # the paths steps read but must not change: staged inputs, outputs of completed steps
    read_only: set[str]


# what a read-only tree looked like: relative path -> (mode, size, mtime) of each entry
Listing = dict[str, tuple[int, int, int]]


def listing(root: Path) -> Listing:
    """Enough to tell whether anything under ``root`` was written, created, deleted or
    chmod-ed (stat only: inputs may be large, and this runs around every step). Names the
    digest ignores are left out: importing Python code from an input writes ``__pycache__``
    next to it when permissions allow (as root), and that is not a change to the input."""
    out: Listing = {}
    try:
        out["."] = _stat_entry(root.lstat())
    except FileNotFoundError:
        return out
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not ignored(d)]
        for name in dirs + [n for n in names if not ignored(n)]:
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):
                out[os.path.relpath(path, root)] = _stat_entry(os.lstat(path))
    return out


def _stat_entry(st: os.stat_result) -> tuple[int, int, int]:
    if stat.S_ISDIR(st.st_mode):
        # a folder's size and time move with a __pycache__ made in it; what it holds is listed
        return (st.st_mode, 0, 0)
    return (st.st_mode, st.st_size, st.st_mtime_ns)


def make_read_only(root: Path) -> None:
    """Remove every write permission under ``root`` (files keep their other bits)."""
    paths = [root]
    if root.is_dir() and not root.is_symlink():
        for folder, dirs, names in os.walk(root):
            paths.extend(Path(folder) / name for name in dirs + names)
    for path in reversed(paths):  # a folder after what is in it
        if not path.is_symlink():
            os.chmod(path, path.lstat().st_mode & 0o7777 & ~_WRITE_BITS)


def make_folders_writable(root: Path) -> None:
    """Give the owner back write permission on the folders under ``root`` (not the files), so
    that removing a run, or the whole state directory, works without root."""
    for folder, dirs, _files in os.walk(root):
        for path in [folder, *(os.path.join(folder, d) for d in dirs)]:
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode) and not st.st_mode & stat.S_IWUSR:
                    os.chmod(path, stat.S_IMODE(st.st_mode) | stat.S_IRWXU)


@dataclass
class _Active:
    """A run this process is executing."""

    spec: PipelineRunSpec
    graph: JobGraph
    # set to stop the run: on cancel, on stop, or by the scheduler when a step fails
    abort: threading.Event
    bin_dir: Path
    thread: threading.Thread | None = None
    cancel_message: str = ""
    interrupted: bool = False
    # the catalog cannot be written: nothing more of this run can be recorded
    state_error: StateError | None = None


class PipelineRunner:
    def __init__(
        self,
        catalog: AssetCatalog,
        registry: ModelRegistry,
        root: Path,
        capacity: Callable[[str, str], int],
        *,
        source_root: Path | None = None,
    ) -> None:
        self.catalog = catalog
        self.registry = registry
        self.root = root
        # inputs and code named by manifests must stay inside it (see amlops.core.files)
        self.source_root = source_root
        self._capacity = capacity
        self._cond = threading.Condition()
        self._in_use: dict[tuple[str, str], int] = {}
        self._active: dict[str, _Active] = {}
        self._owner = {"pid": os.getpid(), "start": procs.process_start(os.getpid())}

    # -- public ----------------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def submit(self, spec: PipelineRunSpec, graph: JobGraph) -> PipelineRun:
        run_id = new_run_id(spec.pipeline)
        steps = tuple(
            StepRun(
                s.name,
                JobStatus.NOT_STARTED,
                compute=s.compute,
                log=str(self._step_dir(run_id, s.name) / "user_logs" / "std_log.txt"),
            )
            for s in graph.steps
        )
        run = PipelineRun.submitted(
            spec, run_id, JobStatus.QUEUED, steps, created_at=_now(), tags=dict(spec.tags)
        )
        self.catalog.insert_run(run, self._owner)
        active = _Active(spec, graph, threading.Event(), self._bin_dir())
        thread = threading.Thread(
            target=self._execute, args=(run_id, active), name=f"run-{run_id}", daemon=True
        )
        active.thread = thread
        with self._cond:
            self._active[run_id] = active
        thread.start()
        return run

    def cancel(self, run_id: str, message: str, *, interrupted: bool = False) -> None:
        with self._cond:
            active = self._active.get(run_id)
            if active is None:
                return
            active.cancel_message = message
            active.interrupted = interrupted
            active.abort.set()
            self._cond.notify_all()

    def wait(self, run_id: str, timeout: float | None = None) -> PipelineRun | None:
        with self._cond:
            active = self._active.get(run_id)
        if active is not None and active.thread is not None:
            active.thread.join(timeout)
        return self.catalog.get_run(run_id)

    def stop(self, message: str) -> None:
        """Cancel every run this process started (they count as interrupted: the next
        ``amlops up`` runs them again) and wait for their steps to stop."""
        with self._cond:
            run_ids = list(self._active)
        for run_id in run_ids:
            self.cancel(run_id, message, interrupted=True)
        for run_id in run_ids:
            with self._cond:
                active = self._active.get(run_id)
            if active is not None and active.thread is not None:
                active.thread.join(30)

    def recover(self) -> list[str]:
        """Runs left active by a process that is gone: stop their leftover steps and mark them
        interrupted. Returns the run ids."""
        recovered = []
        for run in self.catalog.active_runs():
            if run.run_id in self._active:
                continue
            owner = self.catalog.run_owner(run.run_id)
            owner_pid = int(owner.get("pid", 0))
            owner_alive = owner_pid and procs.is_alive(
                procs.PidRecord(owner_pid, owner.get("start"))
            )
            if owner_alive and owner_pid != os.getpid():
                continue  # its owner still runs it
            for step in run.steps:
                record = procs.read_pid_file(self._step_dir(run.run_id, step.name) / "pid")
                if record is not None:
                    procs.stop_group(record)
            make_folders_writable(self.run_dir(run.run_id))
            ended = _now()
            steps = tuple(
                replace(s, status=JobStatus.CANCELED, ended_at=ended, message="interrupted")
                if s.status in (JobStatus.RUNNING, JobStatus.QUEUED)
                else s
                for s in run.steps
            )
            final = replace(
                run,
                status=JobStatus.CANCELED,
                steps=steps,
                ended_at=ended,
                interrupted=True,
                message=f"interrupted: the process running it (pid {owner_pid}) exited",
            )
            with self.catalog.transaction() as tx:
                self.catalog.finish_run(tx, final)
            recovered.append(run.run_id)
        return recovered

    # -- one run ---------------------------------------------------------------------------

    def _step_dir(self, run_id: str, step: str) -> Path:
        return self.run_dir(run_id) / step

    def _execute(self, run_id: str, active: _Active) -> None:
        try:
            self._schedule(run_id, active)
        except StateError:
            pass  # nothing can be recorded; the loop that reads the catalog reports it
        except Exception as exc:  # a bug here must end the run, not the process
            with contextlib.suppress(StateError):
                run = self.catalog.get_run(run_id)
                if run is not None:
                    final = replace(
                        run,
                        status=JobStatus.FAILED,
                        ended_at=_now(),
                        message=f"runner error: {exc}",
                    )
                    self._finish(final, [])
        finally:
            with contextlib.suppress(OSError):
                make_folders_writable(self.run_dir(run_id))
            with self._cond:
                self._active.pop(run_id, None)
                self._cond.notify_all()

    def _schedule(self, run_id: str, active: _Active) -> PipelineRun:
        spec, graph = active.spec, active.graph
        run = self.catalog.get_run(run_id)
        assert run is not None
        self.catalog.set_run_status(run_id, JobStatus.RUNNING)
        states = {s.name: s for s in run.steps}
        read_only: set[str] = set()
        try:
            parent_inputs = self._bind_parent_inputs(run_id, spec.workspace, graph, read_only)
        except (StepSetupError, OSError) as exc:
            final = replace(run, status=JobStatus.FAILED, ended_at=_now(), message=f"inputs: {exc}")
            self._finish(final, [])
            return final
        parent_outputs = {
            name: str(self.run_dir(run_id) / "outputs" / name) for name in graph.outputs
        }
        ctx = _RunContext(run_id, active, parent_inputs, parent_outputs, {}, states, read_only)
        pending = list(graph.steps)
        running: dict[str, threading.Thread] = {}
        failure = ""
        with self._cond:
            while pending or running:
                if not active.abort.is_set():
                    for step in list(pending):
                        done = all(states[d].status is JobStatus.COMPLETED for d in step.depends_on)
                        slot = (spec.workspace, step.compute)
                        capacity = max(1, self._capacity(*slot))
                        if done and self._in_use.get(slot, 0) < capacity:
                            self._in_use[slot] = self._in_use.get(slot, 0) + 1
                            pending.remove(step)
                            outputs = self._output_paths(run_id, step, parent_outputs)
                            ctx.step_outputs[step.name] = outputs
                            thread = threading.Thread(
                                target=self._run_step,
                                args=(ctx, step),
                                name=f"step-{run_id}-{step.name}",
                                daemon=True,
                            )
                            running[step.name] = thread
                            states[step.name] = replace(states[step.name], status=JobStatus.QUEUED)
                            thread.start()
                elif not running:
                    break
                self._cond.wait(_POLL_S)
                for name in [n for n, t in running.items() if not t.is_alive()]:
                    del running[name]
                    slot = (spec.workspace, graph.step(name).compute)
                    self._in_use[slot] -= 1
                    self._cond.notify_all()  # a slot came free for other runs too
                    if states[name].status is JobStatus.FAILED and not failure:
                        failure = f"step {name} failed: {states[name].message}"
                        active.abort.set()  # stop the steps still running; start no more
        if active.state_error is not None:
            raise active.state_error
        steps = tuple(states[s.name] for s in graph.steps)
        run = replace(run, steps=steps, ended_at=_now())
        if failure:
            final = replace(run, status=JobStatus.FAILED, message=failure)
            self._finish(final, [])
            return final
        if active.abort.is_set():
            final = replace(
                run,
                status=JobStatus.CANCELED,
                message=active.cancel_message or "canceled",
                interrupted=active.interrupted,
            )
            self._finish(final, [])
            return final
        return self._complete(run, spec, graph, parent_outputs)

    def _complete(
        self,
        run: PipelineRun,
        spec: PipelineRunSpec,
        graph: JobGraph,
        parent_outputs: Mapping[str, str],
    ) -> PipelineRun:
        """Register the model outputs and mark the run Completed, all in one transaction."""
        with self.registry.lock:
            prepared: list[tuple[str, Prepared]] = []
            try:
                for output, ref in graph.registered_outputs.items():
                    path = Path(parent_outputs[output])
                    if not path.is_dir() or not any(path.iterdir()):
                        raise BackendError(
                            f"output {output} is empty: no step wrote to "
                            f"${{{{parent.outputs.{output}}}}}"
                        )
                    body = graph.outputs[output]
                    model_spec = ModelVersionSpec(
                        name=ref.name,
                        version=ref.version,
                        path=path,
                        type=str(body.get("type", "custom_model")),
                        description=str(body.get("description", "")),
                        tags={**spec.tags, TAG_RUN: run.run_id},
                    )
                    prepared.append((output, self.registry.prepare(spec.workspace, model_spec)))
            except BackendError as exc:
                final = replace(run, status=JobStatus.FAILED, message=f"registering outputs: {exc}")
                self._finish(final, [])
                return final
            outputs = {out: f"{p.version.name}:{p.version.version}" for out, p in prepared}
            final = replace(run, status=JobStatus.COMPLETED, outputs=outputs, message="")
            self._finish(final, [p for _, p in prepared])
        return final

    def _finish(self, run: PipelineRun, registrations: list[Prepared]) -> None:
        with self.catalog.transaction() as tx:
            for prepared in registrations:
                self.registry.commit(tx, prepared)
            self.catalog.finish_run(tx, run)

    # -- bindings --------------------------------------------------------------------------

    def _bind_parent_inputs(
        self, run_id: str, workspace: str, graph: JobGraph, read_only: set[str]
    ) -> dict[str, str | None]:
        values: dict[str, str | None] = {}
        for name, value in graph.inputs.items():
            if isinstance(value, Mapping) and isinstance(value.get("path"), str):
                source = self._resolve_path(workspace, f"input {name}", value["path"])
                staged = _stage(Path(source), self.run_dir(run_id) / "inputs" / name)
                read_only.add(staged)
                values[name] = staged
            else:
                values[name] = literal(value)
        return values

    def _resolve_path(self, workspace: str, what: str, path: str) -> str:
        if path.startswith("azureml:"):
            ref = parse_model_ref(path)
            if ref is None:
                raise StepSetupError(f"{what}: {path!r} is not an asset the local backend holds")
            version = self._model(workspace, ref)
            if version is None:
                raise StepSetupError(f"{what}: model {ref} is not registered in {workspace}")
            return version.location
        if "://" in path:
            raise StepSetupError(f"{what}: {path!r} is remote; the local backend reads local paths")
        if not Path(path).exists():
            raise StepSetupError(f"{what}: {path} does not exist")
        self._admit(Path(path), what)
        return path

    def _admit(self, path: Path, what: str) -> None:
        """The containment rule again, right before a manifest-named path is copied."""
        if self.source_root is None:
            return
        try:
            files.admit(self.source_root, path, what=what)
        except files.PathRefusedError as exc:
            raise StepSetupError(str(exc)) from exc

    def _model(self, workspace: str, ref: ModelRef) -> ModelVersion | None:
        if ref.version is None:
            return self.registry.latest(workspace, ref.name)
        return self.registry.get(workspace, ref.name, ref.version)

    def _output_paths(
        self, run_id: str, step: Step, parent_outputs: Mapping[str, str]
    ) -> dict[str, str]:
        paths = {}
        for name, value in step.outputs.items():
            bound = BINDING_RE.findall(value) if isinstance(value, str) else []
            if bound:
                paths[name] = parent_outputs[bound[0].split(".")[2]]
            else:
                paths[name] = str(self._step_dir(run_id, step.name) / "outputs" / name)
            Path(paths[name]).mkdir(parents=True, exist_ok=True)
        return paths

    def _step_inputs(self, workspace: str, step: Step, ctx: _RunContext) -> dict[str, str | None]:
        """The values of ``step``'s inputs: path inputs of its own are staged in its folder."""

        def bind(expr: str) -> str | None:
            parts = expr.split(".")
            if parts[1] == "inputs":
                return ctx.parent_inputs.get(parts[2])
            if parts[1] == "outputs":
                return ctx.parent_outputs[parts[2]]
            # parent.jobs.<step>.outputs.<name>; a step of a pipeline component is OUTER.STEP
            other, _, output = expr.removeprefix("parent.jobs.").rpartition(".outputs.")
            return ctx.step_outputs[other][output]

        values: dict[str, str | None] = {}
        for name, value in step.inputs.items():
            raw = value.get("path") if isinstance(value, Mapping) and "path" in value else value
            if isinstance(raw, str) and BINDING_RE.search(raw):
                values[name] = BINDING_RE.sub(lambda m: bind(str(m.group(1))) or "", raw)
                if all(bind(e) is None for e in BINDING_RE.findall(raw)):
                    values[name] = None  # bound to an optional input nobody gave
            elif isinstance(value, Mapping) and "path" in value:
                source = self._resolve_path(workspace, f"input {name}", str(raw))
                staged = _stage(
                    Path(source), self._step_dir(ctx.run_id, step.name) / "inputs" / name
                )
                with self._cond:
                    ctx.read_only.add(staged)
                values[name] = staged
            else:
                values[name] = literal(value)
        return values

    # -- one step --------------------------------------------------------------------------

    def _bin_dir(self) -> Path:
        """A folder whose ``python`` is this interpreter, first on the steps' PATH, so
        ``python train.py`` in a command runs with the packages amlops runs with. (Made when
        a run is submitted, not by its steps: parallel steps would race on the link.)"""
        bin_dir = self.root / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for name in ("python", "python3"):
            link = bin_dir / name
            if not link.exists() or os.readlink(link) != sys.executable:
                tmp = bin_dir / f".{name}.tmp"
                tmp.unlink(missing_ok=True)
                tmp.symlink_to(sys.executable)
                os.replace(tmp, link)
        return bin_dir

    def _run_step(self, ctx: _RunContext, step: Step) -> None:
        try:
            self._run_step_unguarded(ctx, step)
        except Exception as exc:  # a step that cannot start fails; it must not hang the run
            failed = replace(
                ctx.states[step.name],
                status=JobStatus.FAILED,
                ended_at=_now(),
                message=f"could not start: {exc}",
            )
            self._set_step(ctx, failed)

    def _run_step_unguarded(self, ctx: _RunContext, step: Step) -> None:
        run_id, active = ctx.run_id, ctx.active
        step_dir = self._step_dir(run_id, step.name)
        log = step_dir / "user_logs" / "std_log.txt"
        state = replace(ctx.states[step.name], started_at=_now(), log=str(log))
        try:
            inputs = self._step_inputs(active.spec.workspace, step, ctx)
            outputs = dict(ctx.step_outputs[step.name])
            command = render_command(step.command, inputs, outputs)
            cwd = self._snapshot(step, step_dir)
        except (StepSetupError, OSError) as exc:
            failed = replace(state, status=JobStatus.FAILED, ended_at=_now(), message=str(exc))
            self._set_step(ctx, failed)
            return
        with self._cond:
            protected = {
                name: Path(value) for name, value in inputs.items() if value in ctx.read_only
            }
        before = {name: listing(path) for name, path in protected.items()}
        env = procs.base_environment()
        env.update(step.environment_variables)
        env["PATH"] = f"{active.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["PYTHONUNBUFFERED"] = "1"
        env["AZUREML_RUN_ID"] = f"{run_id}_{step.name}"
        env["AZUREML_ROOT_RUN_ID"] = run_id
        for name, value in inputs.items():
            if value is not None:
                env[f"AZURE_ML_INPUT_{name}"] = value
        for name, value in outputs.items():
            env[f"AZURE_ML_OUTPUT_{name}"] = value
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {command}\n")
        proc, record = procs.spawn(["/bin/sh", "-c", command], cwd=cwd, env=env, log=log)
        procs.write_pid_file(step_dir / "pid", record)
        self._set_step(ctx, replace(state, status=JobStatus.RUNNING))
        deadline = time.monotonic() + step.timeout_s if step.timeout_s else None
        timed_out = False
        while proc.poll() is None:
            if active.abort.is_set():
                break
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                break
            try:
                proc.wait(timeout=_POLL_S)
            except subprocess.TimeoutExpired:
                continue
        # also when the step exited: what it left running in the background goes with it, as
        # when Azure ML ends a job's container
        procs.stop_group(record, proc)
        code = proc.returncode
        ended = _now()
        changed = [name for name, path in protected.items() if listing(path) != before[name]]
        status, message = JobStatus.FAILED, ""
        if changed:
            name = changed[0]
            message = (
                f"changed its input {name} ({protected[name]}): {_READ_ONLY_HINT} (log: {log})"
            )
        elif timed_out:
            message = f"timed out after {step.timeout_s:g} s (limits.timeout); log: {log}"
        elif code == 0:
            status, message = JobStatus.COMPLETED, state.message
        elif active.abort.is_set():
            status, message = JobStatus.CANCELED, "stopped"
        else:
            reason = last_line(log)
            # a write refused by the read-only copy names the copy's path
            hint = any(str(path) in reason for path in protected.values())
            message = (
                f"exited with code {code}"
                + (f": {reason}" if reason else "")
                + (f"; {_READ_ONLY_HINT}" if hint else "")
                + f" (log: {log})"
            )
        final = replace(state, status=status, exit_code=code, ended_at=ended, message=message)
        (step_dir / "pid").unlink(missing_ok=True)
        if final.status is JobStatus.COMPLETED:
            # later steps read these; they must not change under them
            for path in outputs.values():
                make_read_only(Path(path))
            with self._cond:
                ctx.read_only.update(outputs.values())
        self._set_step(ctx, final)

    def _set_step(self, ctx: _RunContext, state: StepRun) -> None:
        with self._cond:
            ctx.states[state.name] = state
            self._cond.notify_all()
        try:
            self.catalog.update_step(ctx.run_id, state)
        except StateError as exc:
            # the run cannot be recorded any more: stop it; the scheduler re-raises this
            ctx.active.state_error = exc
            ctx.active.abort.set()

    def _snapshot(self, step: Step, step_dir: Path) -> Path:
        """Run in a copy of the code folder, as Azure ML runs in an uploaded snapshot: a step
        cannot change the repository, and what ran is kept with the run."""
        target = step_dir / "code"
        if target.exists():
            shutil.rmtree(target)
        if step.code is None:
            target.mkdir(parents=True)
            return target
        source = Path(step.code)
        if not source.is_dir():
            raise StepSetupError(f"code folder {source} does not exist")
        self._admit(source, f"code folder {source}")
        shutil.copytree(source, target, ignore=lambda _d, names: [n for n in names if ignored(n)])
        return target


def _stage(source: Path, folder: Path) -> str:
    """A read-only copy of the input ``source`` in ``folder``; returns the path a step gets: the
    folder for a folder input, the file in it for a file input (as Azure ML mounts them)."""
    if folder.exists():  # a previous attempt of the same step
        make_folders_writable(folder)
        shutil.rmtree(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        # the same files the digest covers: what decided whether to run is what runs
        shutil.copytree(source, folder, ignore=lambda _d, names: [n for n in names if ignored(n)])
        target = folder
    else:
        folder.mkdir()
        target = folder / source.name
        shutil.copy2(source, target)
    make_read_only(folder)
    return str(target)


def job_graph_or_error(job: Mapping[str, Any]) -> JobGraph:
    """The job's graph, when this backend can run every step of it."""
    try:
        graph = parse_job(job)
    except JobSpecError as exc:
        raise BackendError(f"job.{'.'.join(map(str, exc.field))}: {exc.message}") from exc
    for step in graph.steps:
        if step.component is not None:
            raise BackendUnsupported(
                f"step {step.name} runs component {step.component}, which the local backend "
                "cannot run: it runs command and pipeline components written in the "
                "repository (a file, written out in the step, or for `amlops up` an "
                "`azureml:` Component the repository declares); run this pipeline on Azure "
                "ML, or copy the component into the repository and name its file"
            )
    return graph
