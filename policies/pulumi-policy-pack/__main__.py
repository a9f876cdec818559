"""The policy pack's entry point; the validators live in infra/policypack.py (tested there)."""

import sys
from pathlib import Path

# Pulumi runs this file by path from the pack's directory; the repository root holds `infra`.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from pulumi_policy import PolicyPack  # noqa: E402

from infra.policypack import policies  # noqa: E402

PolicyPack(name="amlops", policies=policies())
