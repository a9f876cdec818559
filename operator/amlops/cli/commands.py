"""The list of command modules; each exposes ``register(subparsers)``."""

from __future__ import annotations

from amlops.cli import common, plan, validate

REGISTRY: list[common.Register] = [
    validate.register,
    plan.register,
]
