"""Structured logs: one JSON object per line with the object's namespace/name under
``object`` (Kopf's JSON format), and waiting that is not an error not logged as one."""

from __future__ import annotations

import logging

import kopf

OBJECT_KEY = "object"


class RoutineNotError(logging.Filter):
    """Kopf logs every ``TemporaryError`` at ERROR. We raise it for waiting too (a deployment
    starting, a model not registered yet, a run in progress), retried with backoff, and the
    condition (and an Event on the transition) already says why; an ERROR line per retry would
    be noise that hides real errors. Real errors are logged once, by ``flow.settle``.

    A drift check that found nothing is not news either: one line per object every interval
    would be most of the log. They show with ``--verbose``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.ERROR and " failed temporarily: " in message:
            record.levelno, record.levelname = logging.INFO, "INFO"
        if message.startswith("Timer ") and message.endswith(" succeeded."):
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


def configure(*, json_format: bool = True, verbose: bool = False) -> None:
    """``amlops operator``'s logging (``kopf run`` configures its own from its flags)."""
    kopf.configure(
        verbose=verbose,
        log_format=kopf.LogFormat.JSON if json_format else kopf.LogFormat.FULL,
        log_refkey=OBJECT_KEY,
    )


def install_filters() -> None:
    """Called by the startup hook, so that ``kopf run -m amlops.handlers`` gets it too."""
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, RoutineNotError) for f in objects.filters):
        objects.addFilter(RoutineNotError())
