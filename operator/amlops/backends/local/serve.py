"""``azmlinfsrv``, Microsoft's Azure ML inference server, listening on loopback only.

``python -m amlops.backends.local.serve --entry_script score.py --port 5001`` takes exactly
``azmlinfsrv``'s arguments and runs it. The only change: ``azmlinfsrv`` 1.x binds 0.0.0.0 with
no option to change it, which would let anyone on the network reach a deployment directly
and skip the endpoint's key check in the router; here it binds 127.0.0.1.
"""

from __future__ import annotations

import sys

from azureml_inference_server_http import amlserver  # type: ignore[import-untyped]

LOOPBACK = "127.0.0.1"


def main() -> int:
    amlserver.DEFAULT_HOST = LOOPBACK  # read by amlserver.run() when it starts gunicorn
    sys.argv[0] = "azmlinfsrv"
    amlserver.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
