"""Write economy: one reconcile ends in one status write; a no-change resume writes nothing.

Requests are counted by verb at a proxy between the operator and the API server, for one
object: its own paths (object, status) and the Events about it. With Kopf's progress and
diff-base kept in status (``amlops.handlers.settings``), a reconcile's result, its progress and
the "last handled" spec leave in the same PATCH.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.operator.harness import Kube, OperatorProcess, is_ready, model_spec, wait_for
from tests.operator.proxy import Proxy, Record, about, by_verb, writes

pytestmark = [pytest.mark.envtest, pytest.mark.slow]


def quiet(
    proxy: Proxy, since: float, match: Callable[[Record], bool], seconds: float = 1.5
) -> list[Record]:
    """The matching records since ``since``, once none has come for ``seconds`` (counted from
    this call too: a write the caller already sees may not be recorded yet, the proxy records
    it once its answer is through)."""
    called = time.monotonic()

    def settled() -> tuple[list[Record]] | None:
        got = [r for r in proxy.records(since) if match(r)]
        last = max([called, *(r.at for r in got)])
        return (got,) if time.monotonic() - last >= seconds else None

    return wait_for(settled, timeout=30, what="the operator to go quiet")[0]


def shape(records: list[Record]) -> list[tuple[str, str]]:
    """(verb, what) of each write: "object", "status" or "event"."""
    out = []
    for r in writes(records):
        what = "event" if r.path.endswith("/events") else r.path.rsplit("/", 1)[-1]
        out.append(
            (r.verb, "status" if what == "status" else "event" if what == "event" else "object")
        )
    return sorted(out)


def test_create_update_resume_delete_request_counts(
    op: OperatorProcess, kube: Kube, proxy: Proxy, namespace: str
) -> None:
    mine = about(namespace, "tiny")

    since = proxy.mark()
    kube.create(namespace, "Model", "tiny", model_spec())
    kube.wait(namespace, "Model", "tiny", is_ready, what="Ready")
    create = quiet(proxy, since, mine)
    # the finalizer (Kopf adds it before any handler runs), then ONE status write, one Event
    assert shape(create) == [("create", "event"), ("patch", "object"), ("patch", "status")]
    assert by_verb(create) == {"create": 1, "patch": 2}

    since = proxy.mark()
    kube.patch(namespace, "Model", "tiny", {"spec": {"model": {"version": "2"}}})
    kube.wait(namespace, "Model", "tiny", lambda o: is_ready(o) and o["status"]["version"] == "2")
    update = quiet(proxy, since, mine)
    assert shape(update) == [("create", "event"), ("patch", "status")]

    op.stop()
    since = proxy.mark()
    op.start()
    # the resume handler ran (it reconciled against the backend) and found nothing to change;
    # the window also covers a drift tick (every 2 s in these tests)
    wait_for(
        lambda: op.metric("amlops_reconciles_total", kind="Model", result="Ready") >= 1,
        what="the resume reconcile",
    )
    resume = quiet(proxy, since, mine, seconds=3)
    assert by_verb(resume) == {}, "a no-change resume must not even read the object"

    since = proxy.mark()
    kube.delete(namespace, "Model", "tiny")
    kube.wait_gone(namespace, "Model", "tiny")
    delete = quiet(proxy, since, mine)
    # the cleanup Event, then releasing the finalizer; no status write for a leaving object
    assert shape(delete) == [("create", "event"), ("patch", "object")]
