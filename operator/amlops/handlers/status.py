"""Pure helpers between a reconcile ``Result`` and what goes to the API server: the smallest
status patch, whether a change is a transition worth an Event, and secret redaction.

Nothing here talks to Kubernetes or a backend, so all of it is unit-tested without a cluster.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from amlops.handlers.options import KOPF_STATUS_KEY
from amlops.reconcile.conditions import READY, Outcome, Phase, find, phase_of

REDACTED = "***"
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
