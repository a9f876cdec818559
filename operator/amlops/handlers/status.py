"""Pure helpers between a reconcile ``Result`` and what goes to the API server: the smallest
status patch, whether a change is a transition worth an Event, and secret redaction.

Nothing here talks to Kubernetes or a backend, so all of it is unit-tested without a cluster.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from amlops.handlers.options import KOPF_STATUS_KEY
from amlops.reconcile.conditions import READY, Outcome, Phase, find, phase_of

REDACTED = "***"
# the drift timer's actions put back what had drifted from a Ready object ...
DRIFT_CORRECTED = "DriftCorrected"
# ... or finished what was waiting (a dependency now ready, files now there, an error gone)
RECOVERED = "Recovered"
# ``status.scoringUriScope`` of a scoring URI on a loopback address: only the operator's pod
# (the local backend's routers listen on 127.0.0.1 there) can reach it
SCORING_URI_SCOPE = "scoringUriScope"
POD_LOCAL = "PodLocal"
# Errors from SDKs and HTTP clients quote credentials in a few recognisable shapes.
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{6,}")
_ASSIGNED = re.compile(
    r"(?i)\b((?:primary|secondary)?[-_]?key|api[-_]?key|account[-_]?key|access[-_]?key"
    r"|shared[-_]?access[-_]?key|password|passwd|secret|token|sig|signature|authorization)"
    r"(\"?\s*[=:]\s*\"?)(?!(?:bearer|basic)\s)([^\s\"'&;,]+)"
)
_MIN_SECRET_LEN = 8  # shorter "secrets" would blank out ordinary words


def merge_patch(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``: only what changed,
    ``None`` for what went away. Lists are replaced whole, as merge patches do. Kopf's own
    bookkeeping under ``status.kopf`` is left alone."""
    before = old or {}
    patch: dict[str, Any] = {
        key: None for key in before if key not in new and key != KOPF_STATUS_KEY
    }
    for key, value in new.items():
        previous = before.get(key)
        if isinstance(value, Mapping) and isinstance(previous, Mapping):
            nested = merge_patch(previous, value)
            if nested:
                patch[key] = nested
        elif key not in before or previous != value:
            patch[key] = value
    return patch


def _signature(status: Mapping[str, Any] | None) -> tuple[Any, ...] | None:
    if not status or not status.get("conditions"):
        return None
    ready = find(status["conditions"], READY) or {}
    return (phase_of(status), ready.get("reason"), status.get("observedGeneration"))


def is_transition(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """A new phase, a new reason, or a new generation handled: what an Event reports. The
    same "waiting for model x" on every retry is not a transition."""
    return _signature(old) != _signature(new)


def event_type(outcome: Outcome) -> str:
    if outcome.phase is Phase.STALLED or outcome.reason == "RetryingAfterError":
        return "Warning"
    return "Normal"


def result_label(outcome: Outcome) -> str:
    """The ``result`` label of the reconcile counter."""
    return "Error" if outcome.reason == "RetryingAfterError" else str(outcome.phase)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with known secret values and credential-looking assignments masked."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_LEN:
            text = text.replace(secret, REDACTED)
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return _ASSIGNED.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


def redact_status(status: Mapping[str, Any], secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The status with every condition message redacted (messages carry backend errors)."""
    known = list(secrets)
    out = dict(status)
    out["conditions"] = [
        {**c, "message": redact(str(c.get("message", "")), known)}
        for c in status.get("conditions") or []
    ]
    return out


def correction(
    previous: Mapping[str, Any] | None, generation: int, what: str, message: str
) -> tuple[str, str]:
    """(Event reason, message) for the actions a drift check carried out. Only an object that
    was Ready for its generation can have drifted; for any other the actions are the work it
    was waiting to do, now done: a recovery, named after what it recovered from."""
    conditions = (previous or {}).get("conditions") or []
    applied = (previous or {}).get("observedGeneration") == generation
    if phase_of(previous) is Phase.READY and applied:
        return DRIFT_CORRECTED, f"{what}: {message}"
    was = (find(conditions, READY) or {}).get("reason")
    since = f"recovered from {was}" if was else "reconciled"
    return RECOVERED, f"{since}: {what}: {message}"


def _loopback(uri: str) -> bool:
    host = urlsplit(uri).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_scoring_scope(status: Mapping[str, Any]) -> dict[str, Any]:
    """The status with ``scoringUriScope: PodLocal`` when its scoring URI is a loopback
    address (the local backend's routers): the URI answers inside the operator's pod only, so
    whoever reads it from status must not expect to reach it through a Service."""
    out = {k: v for k, v in status.items() if k != SCORING_URI_SCOPE}
    uri = status.get("scoringUri")
    if isinstance(uri, str) and _loopback(uri):
        out[SCORING_URI_SCOPE] = POD_LOCAL
    return out
