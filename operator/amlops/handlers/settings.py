"""Kopf's settings, all in one place, each with the reason for its value; and the startup and
cleanup hooks that build and close the runtime (backend, metrics, Kubernetes client)."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import kopf

from amlops.handlers import logs, runtime
from amlops.handlers.options import (
    FINALIZER,
    KOPF_STATUS_KEY,
    PROGRESS_FIELD,
    REPORTING_COMPONENT,
    SETTINGS,
    Settings,
)


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure_kopf(settings, SETTINGS)
    logs.install_filters()
    memo.runtime = runtime.start(SETTINGS)


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    if "runtime" in memo:
        runtime.of(memo).close()


def configure_kopf(kopf_settings: kopf.OperatorSettings, settings: Settings) -> None:
    """Everything Kopf does that costs an API request or a thread is decided here."""
    persistence = kopf_settings.persistence
    # Progress and the diff-base in status (not annotations): a reconcile's status, its
    # progress and the "last handled spec" then go out in ONE status PATCH, and the object's
    # metadata is never patched for Kopf's bookkeeping (annotations would be a second PATCH).
    persistence.progress_storage = kopf.StatusProgressStorage(
        field=PROGRESS_FIELD, touch_field=f"status.{KOPF_STATUS_KEY}.dummy"
    )
    persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field=f"status.{KOPF_STATUS_KEY}.lastHandledConfiguration"
    )
    # Our own finalizer name, so `kubectl get` shows who holds a deletion.
    persistence.finalizer = FINALIZER

    # Leader election: peering is only worth its API traffic with several replicas. Peers with
    # equal priority all freeze (Kopf's rule), so each replica takes a random priority: the
    # highest serves, the others stand by until its record expires.
    peering = kopf_settings.peering
    peering.standalone = not settings.peering
    if settings.peering:
        peering.name = settings.peering
        peering.clusterwide = True
        peering.mandatory = True
        peering.priority = random.randint(1, 2**31 - 1)
        peering.stealth = True  # keep-alives every ~60 s would drown the log
        # A standby takes over this long after the leader's last keep-alive (a killed pod).
        peering.lifetime = settings.peering_lifetime_s

    # Watches: the API server closes a watch after this many seconds and Kopf re-lists; a
    # client timeout slightly longer catches a silently dead connection.
    kopf_settings.watching.server_timeout = settings.watch_timeout_s
    kopf_settings.watching.client_timeout = settings.watch_timeout_s + 60
    kopf_settings.watching.connect_timeout = 30

    # Events: only the ones we post on a condition transition; log lines never become Events
    # (that would be a write per retry).
    kopf_settings.posting.enabled = True
    kopf_settings.posting.loggers = False
    kopf_settings.posting.level = logging.INFO
    kopf_settings.posting.reporting_component = REPORTING_COMPONENT
    kopf_settings.posting.reporting_instance = os.environ.get("HOSTNAME", "amlops-operator")
    kopf_settings.posting.event_name_prefix = "amlops-"

    # Backoff: 5xx / 429 / connection errors of Kopf's own requests are retried this way;
    # handler retries use TemporaryError(delay=Settings.retry_delay(...)) instead.
    kopf_settings.networking.error_backoffs = (1, 2, 4, 8, 16, 30)
    # A write Kopf could not make for other reasons (a 409 Conflict, a 422 from its
    # resourceVersion test) fails the processing cycle; Kopf processes the object again after
    # these delays, so the reconcile and its status write are retried.
    kopf_settings.queueing.error_delays = (1, 2, 4, 8, 16, 32, 60, 120, 300)
    # No single API request (a PATCH, a LIST page) should hang a worker for 5 minutes.
    kopf_settings.networking.request_timeout = 60
    # An exception we did not turn into a condition (a bug) retries like a transient error.
    kopf_settings.execution.default_backoff = settings.retry_base_s
    # Backend calls block (SQLite, files, subprocesses): they run in this many threads.
    kopf_settings.execution.max_workers = settings.workers
    # Wait this long for the watch event of our own patch before handling on a stale body.
    persistence.consistency_timeout = 5.0
    # CRDs installed after the operator started are served too (needs list/watch on CRDs).
    kopf_settings.scanning.disabled = False
    # On SIGTERM, handlers in flight finish; give up before the pod's grace period (120 s in
    # operator/deploy/deployment.yaml) so Kopf, not the kubelet, ends the process.
    kopf_settings.process.ultimate_exiting_timeout = 110
