"""How every call to Azure ML is made: a deadline, no console noise, errors without secrets.

* **Retries** are azure-core's ``RetryPolicy``, configured through MLClient's keyword
  arguments (``retry_total``, ``retry_backoff_factor``, ``retry_backoff_max``): 429 and 5xx are
  retried after the ``Retry-After`` the service sends. Nothing here retries again; a 429 also
  holds back the workspace's other calls until then (``snapshots.WorkspaceGate``).
* **Deadlines.** Each request has a connect and a read timeout. A call that uploads (model
  files, a deployment's code) runs in a worker thread and is given up after
  ``upload_timeout_s``: azure-ai-ml can wait forever on an upload that failed, so the thread is
  left behind (a daemon) and the caller gets ``AzureTimeoutError``, retried by the reconcile.
* **Noise.** The SDK prints upload progress bars and colour resets to stderr and logs "Check:
  endpoint exists" at INFO. Its loggers are turned down to errors, and an upload's prints go to
  a buffer (``sys.stdout`` / ``sys.stderr`` are swapped for the duration, one upload at a time;
  logging handlers keep their own streams, so the operator's logs are not affected).
* **Errors.** What the service refuses (4xx but 408/429) is a ``BackendError`` (Stalled until
  the spec changes); what may pass (timeouts, 429 and 5xx after the retries, connection
  errors) is ``AzureTransientError`` (retried). Messages lose SAS query strings, account keys,
  bearer tokens and any endpoint key the backend has seen.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

from amlops.backends.base import BackendError

T = TypeVar("T")

# azure-ai-ml's own loggers; "azure" covers azure-core's HTTP logging and azure-identity
_QUIET_LOGGERS = {
    "azure": logging.WARNING,
    "azure.ai.ml": logging.ERROR,
    # activity records, one ERROR per 404 (how "does it exist?" is asked)
    "azure.ai.ml._telemetry": logging.CRITICAL,
}
_CONSOLE = threading.Lock()

_SAS = re.compile(r"\?[^\s\"'<>]*\b(?:sig|sv|se|sp|skoid|sktid)=[^\s\"'<>]*", re.IGNORECASE)
_SECRET_PAIRS = re.compile(
    r"\b(AccountKey|SharedAccessSignature|sig|primaryKey|secondaryKey|key|password|"
    r"accessToken|token)([\"']?\s*[=:]\s*[\"']?)[^\s\"';,&}]+",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_MAX_MESSAGE = 600


class AzureTransientError(Exception):
    """Azure did not answer, or answered "later" (429, 5xx) after the retries: try again."""


class AzureTimeoutError(AzureTransientError):
    """A call did not finish within its deadline."""


class OwnershipError(BackendError):
    """The asset belongs to someone else (another owner tag, or none)."""


class Scrubber:
    """Removes secrets from text meant for a condition, an event or a log."""

    def __init__(self) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()

    def remember(self, *secrets: str) -> None:
        with self._lock:
            self._known.update(s for s in secrets if s and len(s) >= 8)

    def __call__(self, text: str) -> str:
        with self._lock:
            known = sorted(self._known, key=len, reverse=True)
        for secret in known:
            text = text.replace(secret, "***")
        text = _ANSI.sub("", text)
        text = _SAS.sub("?***", text)
        text = _BEARER.sub("Bearer ***", text)
        text = _JWT.sub("***", text)
        text = _SECRET_PAIRS.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
        text = " ".join(text.split())  # one line: conditions and log lines
        if len(text) > _MAX_MESSAGE:
            text = text[: _MAX_MESSAGE - 1] + "…"
        return text


def _discard(*_args: object, **_kwargs: object) -> None:
    pass


def quiet_sdk() -> None:
    """Turn the SDK's console output down; call after ``azure.ai.ml`` is imported (its import
    sets its loggers to INFO with a stderr handler of their own)."""
    for name, level in _QUIET_LOGGERS.items():
        logger = logging.getLogger(name)
        if logger.level < level:
            logger.setLevel(level)
    # AzureMLPolling prints a dot on every poll, from the poller's thread, for as long as a
    # long-running operation runs: outside any call we could wrap. A module-level ``print``
    # shadows the builtin for that module only.
    try:
        from azure.ai.ml._utils import _azureml_polling
    except ImportError:  # a later SDK moved it: dots on the console, nothing worse
        return
    if getattr(_azureml_polling, "print", None) is not _discard:
        _azureml_polling.print = _discard  # type: ignore[attr-defined]


@contextlib.contextmanager
def captured_console() -> Iterator[io.StringIO]:
    """The SDK's prints (progress bars) go to a buffer, one call at a time."""
    buffer = io.StringIO()
    with _CONSOLE, contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield buffer


def within(seconds: float, what: str, fn: Callable[[], T]) -> T:
    """``fn()`` in a worker thread; AzureTimeoutError after ``seconds`` (the worker is left
    running: nothing can stop an SDK call from outside)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"azureml: {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise AzureTimeoutError(f"{what}: no answer within {seconds:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def translate(exc: Exception, what: str, scrub: Scrubber) -> Exception:
    """The exception the reconcile core should see for an SDK error (``raise ... from None``:
    the original may quote a secret)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
        ServiceResponseError,
    )

    if isinstance(exc, (BackendError, AzureTransientError)):
        return exc
    text = scrub(f"{what}: {_describe(exc)}")
    if isinstance(exc, ClientAuthenticationError):
        return BackendError(
            f"{text} (check the credential: workload identity in a cluster, `az login` on a "
            "laptop, AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET in CI)"
        )
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if status in (408, 429) or status >= 500 or status == 0:
            return AzureTransientError(text)
        return BackendError(text)
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, OSError, TimeoutError)):
        return AzureTransientError(text)
    # azure-ai-ml's ValidationException and friends: the request as written cannot be made
    from azure.ai.ml.exceptions import MlException

    if isinstance(exc, MlException):
        return BackendError(text)
    return AzureTransientError(text)


def _describe(exc: Exception) -> str:
    from azure.core.exceptions import HttpResponseError

    if isinstance(exc, HttpResponseError):
        error = exc.error
        code = getattr(error, "code", None)
        message = getattr(error, "message", None) or exc.message or str(exc)
        status = f"{exc.status_code} " if exc.status_code else ""
        return f"{status}{code}: {message}" if code else f"{status}{message}"
    from azure.ai.ml.exceptions import MlException

    if isinstance(exc, MlException):
        # the SDK's validation text: coloured, with boilerplate after the details
        text = _ANSI.sub("", str(exc.message or exc))
        text = text.split("Resolutions:", 1)[0]
        return " ".join(text.replace("Details:", "").split())
    return f"{type(exc).__name__}: {exc}"
