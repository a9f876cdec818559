"""Pulumi entry point: config -> manifests -> components -> exports. Nothing else lives here."""

import sys
from pathlib import Path

# Pulumi runs this file by path, so the project root (the parent of infra/) is not on sys.path
# and `import infra` would fail; tests and `amlops plan --infra` import the package normally.
PROJECT_DIR = Path(__file__).resolve().parent.parent
if str(PROJECT_DIR) not in sys.path:
    sys.path.insert(0, str(PROJECT_DIR))

import pulumi  # noqa: E402

from infra import config, program  # noqa: E402

stack_config = config.from_pulumi(pulumi.Config(config.NAMESPACE), pulumi.get_stack(), PROJECT_DIR)
platform = program.load_platform(stack_config)
program.export(program.declare(platform, stack_config))
