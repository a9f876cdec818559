"""The list of command modules; each exposes ``register(subparsers)``."""

from __future__ import annotations

from amlops.cli import (
    apply,
    comment,
    common,
    local_cmds,
    operator_cmd,
    plan,
    registry_cmd,
    up,
    validate,
)

REGISTRY: list[common.Register] = [
    validate.register,
    plan.register,
    comment.register,
    up.register,
    local_cmds.register_status,
    local_cmds.register_invoke,
    local_cmds.register_run,
    registry_cmd.register,
    apply.register,
    operator_cmd.register,
]
