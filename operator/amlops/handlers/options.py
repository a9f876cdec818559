"""The operator's options: ``AMLOPS_*`` environment variables -> one frozen ``Settings``.

``amlops.handlers.settings`` (every Kopf setting, in the one startup hook) applies them to Kopf.

Environment (all optional; the Deployment in operator/deploy/ sets them):

=============================  ==============================================================
``AMLOPS_BACKEND``             ``local`` (default) or ``azureml`` (``AMLOPS_AZURE_*``: the
                               workspaces' coordinates, the owner tag, retries; see
                               ``amlops.backends.azureml.settings``)
``AMLOPS_STATE_DIR``           the local backend's state directory (a volume in the pod)
``AMLOPS_SOURCE_ROOT``         the Git checkout relative paths in specs resolve against
``AMLOPS_DRIFT_INTERVAL``      seconds between drift checks of one object (default 300)
``AMLOPS_DRIFT_IDLE``          seconds an object must be unchanged before its drift check
``AMLOPS_RETRY_BASE``          first retry delay for a transient backend error, seconds
``AMLOPS_RETRY_MAX``           cap of the exponential retry delay, seconds
``AMLOPS_WORKERS``             threads running handlers (backend calls block)
``AMLOPS_PEERING``             a ClusterKopfPeering name: enables leader election (replicas > 1)
``AMLOPS_PEERING_LIFETIME``    seconds a replica's peering record lives without a keep-alive:
                               how long a killed leader blocks the standby (default 60)
``AMLOPS_WEBHOOKS``            ``true``: serve the admission webhooks (``handlers.admission``)
``AMLOPS_WEBHOOK_ADDR``        the address the webhook server listens on (default 0.0.0.0)
``AMLOPS_WEBHOOK_PORT``        its port (default 9443)
``AMLOPS_WEBHOOK_HOST``        the host name the API server calls it by (a ``url:`` client config)
``AMLOPS_WEBHOOK_SERVICE``     ``NAMESPACE/NAME[:PORT]`` of the Service in front of the webhook
                               port (a ``service:`` client config; preferred in a cluster)
``AMLOPS_WEBHOOK_CERT_DIR``    a mounted certificate (``tls.crt``, ``tls.key``, ``ca.crt``, as
                               cert-manager writes them); empty: generated into the state dir
                               (one replica only: with ``AMLOPS_PEERING`` it is required, or
                               each replica would make its own CA)
``AMLOPS_WEBHOOK_FAIL_CLOSED`` ``true`` (default): a CREATE is refused while no replica answers
                               (``failurePolicy: Fail``); ``false``: let it in unchecked.
                               UPDATE and DELETE always fail open (``Ignore``)
``AMLOPS_TENANCY``             ``true``: every workspace needs a ``WorkspaceBinding`` in an
                               object's namespace (without it: the workspaces that have one)
``AMLOPS_WATCH_TIMEOUT``       server-side timeout of one watch request, seconds
``AMLOPS_METRICS_PORT``        Prometheus port (0: off)
``AMLOPS_LIVENESS``            Kopf's liveness endpoint URL (``amlops operator`` passes it on)
``AMLOPS_RECEIVER_PORT``       the GitSource push receiver's port (default 9292; 0: off)
``AMLOPS_SOURCE_TICK``         seconds between checks whether a GitSource's interval is up
``AMLOPS_SOURCE_MAX_MIB``      the size cap of one GitSource's mirror in the state dir (512)
``AMLOPS_MAX_*``               what a spec may make the operator read: manifest size, YAML
                               aliases, and the files and folders a spec names (the table
                               and defaults are in ``amlops.core.limits``)
=============================  ==============================================================
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from amlops import API_GROUP
from amlops.backends import BACKENDS
from amlops.core.limits import Limits, LimitsError

# Kopf keeps its bookkeeping (per-handler progress, the last handled spec) under this key of
# ``status``; everything else in ``status`` is ours.
KOPF_STATUS_KEY = "kopf"
PROGRESS_FIELD = f"status.{KOPF_STATUS_KEY}.progress"
FINALIZER = f"{API_GROUP}/finalizer"
REPORTING_COMPONENT = "amlops-operator"


class SettingsError(ValueError):
    """An environment variable the operator cannot use; names the variable."""


@dataclass(frozen=True)
class Settings:
    backend: str = "local"
    state_dir: Path = Path(".amlops")
    source_root: Path = Path(".")
    drift_interval_s: float = 300.0
    drift_idle_s: float = 60.0
    retry_base_s: float = 5.0
    retry_max_s: float = 300.0
    workers: int = 8
    peering: str = ""
    peering_lifetime_s: int = 60  # Kopf wants whole seconds
    webhooks: bool = False
    webhook_addr: str = "0.0.0.0"
    webhook_port: int = 9443
    webhook_host: str = ""
    webhook_service: str = ""
    webhook_cert_dir: str = ""
    # a CREATE nobody checked is refused; UPDATE/DELETE fail open (amlops.handlers.admission)
    webhook_fail_closed: bool = True
    # every workspace needs a WorkspaceBinding in the object's namespace (amlops.handlers.tenancy)
    tenancy: bool = False
    watch_timeout_s: int = 600  # the API server wants whole seconds
    metrics_port: int = 8080
    liveness: str = "http://0.0.0.0:8081/healthz"
    # Flux's notification-controller serves its Receivers on 9292 too
    receiver_port: int = 9292
    # a GitSource syncs every spec.interval; its timer looks this often whether one is due
    source_tick_s: float = 5.0
    # a GitSource's repository is mirrored into the pod's state volume: a huge one must not fill it
    source_max_mib: int = 512
    # read by the core from the same variables; kept here so the handlers pass one object
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        try:
            values["limits"] = Limits.from_env(source)
        except LimitsError as exc:
            raise SettingsError(str(exc)) from exc
        for f in fields(cls):
            if f.name == "limits":
                continue
            name = "AMLOPS_" + f.name.upper().removesuffix("_S")
            raw = source.get(name)
            if raw is None or raw == "":
                continue
            default = f.default
            try:
                if isinstance(default, Path):
                    values[f.name] = Path(raw)
                elif isinstance(default, bool):
                    values[f.name] = raw.lower() in ("1", "true", "yes")
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise SettingsError(f"{name}={raw!r}: {exc}") from exc
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.backend not in BACKENDS:
            known = ", ".join(sorted(BACKENDS))
            raise SettingsError(f"AMLOPS_BACKEND={self.backend!r}: the backends are {known}")
        for name in ("drift_interval_s", "retry_base_s", "retry_max_s", "source_tick_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"AMLOPS_{name.upper().removesuffix('_S')} must be > 0")
        if self.workers < 1:
            raise SettingsError("AMLOPS_WORKERS must be >= 1")
        if self.peering_lifetime_s < 1:
            raise SettingsError("AMLOPS_PEERING_LIFETIME must be >= 1")
        if not 0 < self.webhook_port < 65536:
            raise SettingsError("AMLOPS_WEBHOOK_PORT must be a TCP port")
        if self.webhooks and self.peering and not self.webhook_cert_dir:
            raise SettingsError(
                "AMLOPS_WEBHOOKS with AMLOPS_PEERING needs AMLOPS_WEBHOOK_CERT_DIR (or "
                "--webhook-cert-dir): one certificate the replicas share, such as cert-manager's "
                "(operator/deploy/components/cert-manager); a self-made one would be a CA per "
                "replica, and the API server would trust only the last one written"
            )

    def retry_delay(self, hint: float | None, retry: int) -> float:
        """Exponential backoff: the core's hint (or the base) doubled per retry, capped."""
        first = hint if hint is not None else self.retry_base_s
        return float(min(self.retry_max_s, first * 2 ** min(retry, 20)))

    def drift_delay(self, **_: Any) -> float:
        """A random first delay spreads the objects' drift checks over the whole interval, so
        1,000 objects do not all hit the backend in the same second after a restart."""
        return random.uniform(0.0, self.drift_interval_s)

    def timer_options(self) -> dict[str, Any]:
        """``@kopf.timer`` arguments of every kind's drift check."""
        return {
            "interval": self.drift_interval_s,
            "initial_delay": self.drift_delay,
            # not while the object is being edited: its change handlers are on it
            "idle": self.drift_idle_s,
        }


# Read once at import: the timers' intervals are decorator arguments.
SETTINGS = Settings.from_env()
