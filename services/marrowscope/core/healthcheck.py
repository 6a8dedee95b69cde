"""Container health check: ``python -m marrowscope.core.healthcheck SERVICE``.

Used by the images' HEALTHCHECK and, when inter-service TLS is on, by the Helm chart's exec
probes (the kubelet's native gRPC probe cannot speak TLS). Exit 0 = serving, 1 = not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.request

from .rpc import check_health
from .settings import DEFAULT_PORTS, GRPC_SERVICES, PeerSettings


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 (our own URL)
            return bool(response.status == 200)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=[*GRPC_SERVICES, "lis_api"])
    parser.add_argument("--port", type=int, help="default: the service's default port")
    parser.add_argument("--tls-server-name", default="", help="name in the server certificate")
    args = parser.parse_args(argv)
    port = args.port or DEFAULT_PORTS[args.service]
    if args.service == "lis_api":
        ok = http_ok(f"http://127.0.0.1:{port}/healthz")
    else:
        # In a pod this is the service's own identity: health is open to any TLS peer.
        state = asyncio.run(
            check_health(
                f"127.0.0.1:{port}",
                timeout_s=3,
                tls=PeerSettings().tls(),
                tls_server_name=args.tls_server_name,
            )
        )
        ok = state == "SERVING"
    print("serving" if ok else "not serving")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
