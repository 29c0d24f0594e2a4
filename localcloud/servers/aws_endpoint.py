"""The local AWS endpoint: moto server (pinned in pyproject) on 127.0.0.1, with our patches applied.

Run as `python -m localcloud.servers.aws_endpoint --port 4566`. The patches live in `localcloud.servers.moto_patches`
and are applied before the server imports any backend, so every request sees them.
"""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="moto server with the iotkpi local-cloud patches")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args(argv)

    from localcloud.servers import moto_patches

    moto_patches.apply()

    from moto import server

    server.main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main()
