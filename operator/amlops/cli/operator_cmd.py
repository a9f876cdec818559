"""``amlops operator``: the Kopf operator, as ``kopf run -m amlops.handlers --all-namespaces``
would run it, plus JSON logs, the liveness endpoint and the settings check up front.

Configuration comes from ``AMLOPS_*`` environment variables (see ``amlops.handlers.options``);
the kube context is the pod's ServiceAccount in a cluster, else the current kubeconfig.
"""

from __future__ import annotations

import argparse
import importlib
import os

from amlops.cli import common

HELP = "run the Kopf operator that reconciles the amlops custom resources"
EXITS = "Runs until SIGTERM/SIGINT. Exit 0 after a graceful stop, 2 on bad settings."


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = common.command(sub, "operator", HELP, EXITS)
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="serve only this namespace (repeatable; default: all namespaces)",
    )
    p.add_argument(
        "--liveness",
        metavar="URL",
        help="liveness endpoint (default: $AMLOPS_LIVENESS or http://0.0.0.0:8081/healthz; "
        "'' turns it off)",
    )
    p.add_argument(
        "--webhook-cert-dir",
        metavar="DIR",
        help="serve the admission webhooks with the certificate mounted here (tls.crt, tls.key, "
        "ca.crt: a cert-manager Secret); sets AMLOPS_WEBHOOKS=true and AMLOPS_WEBHOOK_CERT_DIR",
    )
    p.add_argument("--log-format", choices=("json", "text"), default="json")
    p.add_argument("--verbose", "-v", action="store_true", help="debug logs (Kopf's patches too)")
    p.set_defaults(func=run_operator)


def run_operator(args: argparse.Namespace) -> int:
    if args.webhook_cert_dir:  # before anything reads the settings (at import)
        os.environ["AMLOPS_WEBHOOKS"] = "true"
        os.environ["AMLOPS_WEBHOOK_CERT_DIR"] = args.webhook_cert_dir
    import kopf

    from amlops.handlers import logs
    from amlops.handlers.options import SettingsError

    try:
        from amlops.handlers.options import SETTINGS as settings

        # Importing registers the handlers, as `kopf run -m amlops.handlers` does.
        importlib.import_module("amlops.handlers")
    except SettingsError as exc:
        raise common.UsageError(str(exc)) from exc
    logs.configure(json_format=args.log_format == "json", verbose=args.verbose)
    liveness = settings.liveness if args.liveness is None else args.liveness
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=liveness or None,
    )
    return common.EXIT_OK
