"""``azmlinfsrv``, Microsoft's Azure ML inference server, reachable by its router alone.

``python -m amlops.backends.local.serve --socket PATH --entry_script score.py`` takes
``azmlinfsrv``'s arguments plus ``--socket`` and runs it. The only change: instead of a TCP
port (``azmlinfsrv`` 1.x binds 0.0.0.0, and even on loopback any local user could connect and
skip the endpoint's key check in the router), gunicorn listens on the Unix socket ``PATH``,
created mode 0600, so only this user's processes (the router, its health checks) can connect.
``--port`` and ``--health_port`` are accepted as ``azmlinfsrv`` accepts them, and ignored.
"""

from __future__ import annotations

import argparse
import sys

import gunicorn.app.wsgiapp  # type: ignore[import-untyped]
from azureml_inference_server_http import amlserver  # type: ignore[import-untyped]

# gunicorn binds the socket under this umask: the socket file is created 0600 from the start
SOCKET_UMASK = 0o177


class _SocketBound(gunicorn.app.wsgiapp.WSGIApplication):  # type: ignore[misc]
    """gunicorn's own application with its listeners replaced by one Unix socket.

    azmlinfsrv passes ``-b host:port`` (and a second ``-b`` for a separate health port) on
    gunicorn's command line, the highest-priority source, with no way to pass a socket; so the
    bind is set after gunicorn has read every source, here and on every reload."""

    socket_path = ""

    def load_config(self) -> None:
        super().load_config()
        self.cfg.set("bind", [f"unix:{self.socket_path}"])
        self.cfg.set("umask", SOCKET_UMASK)


def _print_routes() -> None:
    """azmlinfsrv's banner names a port; the server log should name where it really listens."""
    print()
    print("Server Routes")
    print("---------------")
    print(f"Liveness Probe: GET   unix:{_SocketBound.socket_path} /")
    print(f"Score:          POST  unix:{_SocketBound.socket_path} /score")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--socket", required=True)
    ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    _SocketBound.socket_path = ours.socket
    # this process exists only to run this one server: replacing the class in gunicorn's module
    # is how amlserver_linux.run() (which looks it up there when it starts) gets to use it
    gunicorn.app.wsgiapp.WSGIApplication = _SocketBound
    amlserver.print_routes = _print_routes
    sys.argv = ["azmlinfsrv", *rest]
    amlserver.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
