"""The list of command modules; each exposes ``register(subparsers)``."""

from __future__ import annotations

from amlops.cli import apply, common, operator_cmd, plan, up, validate

REGISTRY: list[common.Register] = [
    validate.register,
    plan.register,
    up.register,
    up.register_status,
    up.register_invoke,
    up.register_run,
    apply.register,
    operator_cmd.register,
]
