"""Schedules of the fake (``Schedules_*``), as ``ml_client.schedules`` calls them.

* ``Schedules_CreateOrUpdate``: a new schedule answers ``201`` + ``Azure-AsyncOperation`` and
  is ``Creating`` for ``durations["schedules"]`` clock seconds (default 0: done at the next
  request); a change to an existing one is done at once (``200``, ``Succeeded``), the spec's
  other answer. What the service checks: a ``CreateJob`` action with a job definition, a
  ``Cron`` trigger with a five-field expression or a ``Recurrence`` one, and a Windows time
  zone name (the SDK's ``TimeZone`` list), else ``400 UserError`` naming the field.
* ``Schedules_List`` with ``listViewType`` (``EnabledOnly``, the default, ``DisabledOnly``,
  ``All``); ``Schedules_Get``.
* ``Schedules_Delete``: only a disabled schedule (``400 UserError`` for an enabled one, as the
  service says); ``204`` at once or ``202`` + ``Location`` per ``durations["delete"]``.

Tests read and change schedules behind the client's back with :meth:`SchedulesApi.schedule`
and :meth:`SchedulesApi.change`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from croniter import croniter

if TYPE_CHECKING:
    from .server import Call, FakeArm, Handler, Reply, Route

JsonDict = dict[str, Any]
SEGMENT = "schedules"
_VIEWS = {"enabledonly": True, "disabledonly": False, "all": None}


def _windows_time_zones() -> frozenset[str]:
    from azure.ai.ml.constants import TimeZone

    return frozenset(str(tz.value) for tz in TimeZone)


class SchedulesApi:
    """The schedules part of a :class:`FakeArm` (``fake.schedules``)."""

    def __init__(self, fake: FakeArm) -> None:
        from .server import _listed

        self.fake = fake
        self._time_zones = _windows_time_zones()
        fake.durations.setdefault(SEGMENT, 0.0)
        self.routes: list[Route] = _listed("Schedules", "/schedules")

    def handlers(self) -> dict[str, Handler]:
        return {
            "Schedules_List": self._list,
            "Schedules_Get": self.fake._get_resource,
            "Schedules_CreateOrUpdate": self._put,
            "Schedules_Delete": self._delete,
        }

    # ------------------------------------------------------------------ for tests
    def schedule(self, name: str, workspace: str | None = None) -> JsonDict | None:
        """The stored ARM body of a schedule."""
        fake = self.fake
        return fake.state.get(fake.state.resource_id(workspace or fake.workspace, SEGMENT, name))

    def change(self, name: str, workspace: str | None = None, **properties: Any) -> None:
        """Change a schedule's properties behind the client's back (drift): ``isEnabled``,
        ``trigger``, ``tags`` ..."""
        fake = self.fake
        rid = fake.state.resource_id(workspace or fake.workspace, SEGMENT, name)
        with fake.state.locked():
            body = fake.state.get(rid)
            if body is None:
                raise KeyError(rid)
            body["properties"].update(properties)
            fake.state.put(rid, body)

    # ------------------------------------------------------------------ handlers
    def _check(self, props: JsonDict) -> None:
        from .server import ArmError

        def refuse(where: str, message: str) -> ArmError:
            return ArmError(400, "UserError", f"properties.{where}: {message}")

        action = props.get("action")
        if not isinstance(action, dict) or action.get("actionType") != "CreateJob":
            raise refuse("action.actionType", "this fake schedules jobs only (CreateJob)")
        if not isinstance(action.get("jobDefinition"), dict):
            raise refuse("action.jobDefinition", "a job definition is required")
        trigger = props.get("trigger")
        if not isinstance(trigger, dict):
            raise refuse("trigger", "a trigger is required")
        kind = trigger.get("triggerType")
        if kind == "Cron":
            expression = trigger.get("expression")
            if (
                not isinstance(expression, str)
                or len(expression.split()) != 5
                or not croniter.is_valid(expression)
            ):
                raise refuse("trigger.expression", f"{expression!r} is not a cron expression")
        elif kind != "Recurrence":
            raise refuse("trigger.triggerType", f"{kind!r} is not Cron or Recurrence")
        zone = trigger.get("timeZone", "UTC")
        if zone not in self._time_zones:
            raise refuse("trigger.timeZone", f"{zone!r} is not a Windows time zone name")

    async def _put(self, call: Call) -> Reply:
        from .server import ArmError, Reply

        fake = self.fake
        if not isinstance(call.body, dict) or not isinstance(call.body.get("properties"), dict):
            raise ArmError(400, "UserError", "a JSON object with properties is required")
        self._check(call.body["properties"])
        existing = fake.state.get(call.path)
        resource = fake._envelope(call.path, SEGMENT, call.body, existing)
        props = resource["properties"]
        props.setdefault("isEnabled", True)
        if existing is not None and existing["properties"].get("provisioningState") in (
            "Succeeded",
            "Failed",
        ):
            props["provisioningState"] = "Succeeded"
            fake.state.put(call.path, resource)
            return Reply(200, fake.state.get(call.path))
        if existing is not None:
            raise ArmError(409, "Conflict", f"schedule {resource['name']} is being provisioned")
        props["provisioningState"] = "Creating"
        fake.state.put(call.path, resource)
        op = fake.state.start_operation(call.path, SEGMENT, "create", fake.durations[SEGMENT])
        return fake._lro_created(call, fake.state.get(call.path) or resource, op.id, 201)

    async def _list(self, call: Call) -> Reply:
        from .server import Reply

        fake = self.fake
        view = call.query.get("listViewType", "EnabledOnly").lower()
        enabled = _VIEWS.get(view)
        items = fake.state.children(call.path.rsplit("/", 1)[0], SEGMENT)
        if enabled is not None:
            items = [i for i in items if bool(i["properties"].get("isEnabled", True)) is enabled]
        return Reply(200, fake._page(call, items))  # paged as the fake's other lists

    async def _delete(self, call: Call) -> Reply:
        from .server import ArmError

        body = self.fake.state.get(call.path)
        if body is not None and body["properties"].get("isEnabled", True):
            raise ArmError(
                400,
                "UserError",
                f"schedule {body['name']} is enabled: disable it before deleting it",
            )
        return await self.fake._delete_lro(call)
