"""``amlops registry share WORKSPACE/NAME:VERSION --registry REG``: a registered model version
into a local registry (``<state>/registries/``), where the local backend finds the catalog
models serverless endpoints and deployments name (``azureml://registries/REG/models/...``)."""

from __future__ import annotations

import argparse
import re

from amlops.backends.base import BackendError
from amlops.cli import common, state

_MODEL_RE = re.compile(r"^(?P<workspace>[^/]+)/(?P<name>[^:/]+):(?P<version>[^:/]+)$")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = common.command(
        sub,
        "registry",
        "share registered models into a local registry (the offline model catalog)",
        "exit 0: shared; 1: refused (no such model, other files under that version); 2: usage",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    share = actions.add_parser("share", help="copy a model version into a local registry")
    share.add_argument("model", metavar="WORKSPACE/NAME:VERSION")
    share.add_argument("--registry", required=True, metavar="REG", help="e.g. azureml-meta")
    state.add_state_dir_option(share)
    share.set_defaults(func=run_share)


@state.reports_state_errors
def run_share(args: argparse.Namespace) -> int:
    match = _MODEL_RE.match(args.model)
    if match is None:
        raise common.UsageError(f"{args.model!r}: write WORKSPACE/NAME:VERSION")
    if not state.has_state(args.state_dir):
        raise common.UsageError(f"no state in {args.state_dir}: run `amlops up` first")
    backend = state.open_writable(args.state_dir)
    try:
        shared = backend.share_model(
            match["workspace"], match["name"], match["version"], args.registry
        )
    except BackendError as exc:
        state.show_error(str(exc))
        return common.EXIT_FINDINGS
    finally:
        backend.close()
    common.print_lines([f"shared {shared.ref}"])
    return common.EXIT_OK
