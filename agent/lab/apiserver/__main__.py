"""`python -m agent.lab.apiserver`: run the lab API server as a process.

Prints one JSON line with the URL and kubeconfig path once it is listening, then serves until
SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from agent.lab.apiserver.server import ApiServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.lab.apiserver", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", action="store_true", help="serve HTTPS with a bearer token")
    parser.add_argument("--token", default=None)
    parser.add_argument("--kubeconfig", type=Path, default=None, help="write a kubeconfig here")
    parser.add_argument("--cert-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    server = ApiServer(
        host=args.host,
        port=args.port,
        tls_enabled=args.tls,
        token=args.token,
        cert_dir=args.cert_dir,
    )
    if args.kubeconfig is not None:
        server.write_kubeconfig(args.kubeconfig)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"url": server.url, "kubeconfig": str(args.kubeconfig or "")}), flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
