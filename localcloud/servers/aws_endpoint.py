"""The local AWS endpoint: moto server (pinned in pyproject) on 127.0.0.1, with our patches applied.

Run as `python -m localcloud.servers.aws_endpoint --port 4566`. The patches live in `localcloud.servers.moto_patches`
and are applied before the server imports any backend, so every request sees them.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto server with the iotkpi local-cloud patches")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args(argv)

    from localcloud.servers import moto_patches

    moto_patches.apply()

    from moto import server
    from werkzeug.serving import run_simple

    from localcloud.servers.keep_alive import keep_alive_handler
    from localcloud.servers.request_guard import (
        ALLOWED_ORIGINS_ENV,
        RequestGuard,
        is_loopback_host,
        parse_allowed_origins,
    )

    try:
        allowed_origins = parse_allowed_origins(os.environ.get(ALLOWED_ORIGINS_ENV, ""))
    except ValueError as exc:
        parser.error(str(exc))
    # moto's server.main, with its app behind the request guard (web pages refused, no `*` CORS answers).
    # Bound to a non-loopback address on purpose, the endpoint is reached by other names: Host is not checked.
    app = RequestGuard(
        server.DomainDispatcherApplication(server.create_backend_app),
        allowed_origins,
        check_host=is_loopback_host(args.host),
    )
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some URLs (SQS queue URLs) with it
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    # No line per request in the log (werkzeug's access log): at the pipeline's hundreds of requests a second it
    # was a tenth of each request's cost. Errors are still logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    run_simple(args.host, args.port, app, threaded=True, request_handler=keep_alive_handler(server.MotoRequestHandler))


if __name__ == "__main__":
    main()
