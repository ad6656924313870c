"""The agent's HTTP endpoints on the metrics address: /metrics /healthz /readyz /statusz.

- /metrics  Prometheus exposition of the registry (OpenMetrics when asked for).
- /healthz  liveness: 500 when a due sync has not succeeded within the threshold.
- /readyz   readiness: 200 once every kind was listed and the first apply succeeded,
            503 naming the kind while the API server refuses a list or watch (401/403).
- /statusz  JSON: {"version", "ready", "synced_resource_version" (a string),
            "last_sync_unix", "node", ...}; the lab's convergence probe reads it.
- /drops    JSON: {"events": [...]}, the recent drop/audit events, oldest first
            (agent.node.droplog; `netpol-agent lab drops` reads it).

A stdlib ThreadingHTTPServer in a daemon thread: scrapes never block syncs.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)


class HealthSource(Protocol):
    def healthy(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...

    def statusz(self) -> Mapping[str, Any]: ...


DropsSource = Callable[[], list[dict[str, Any]]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        source: HealthSource,
        drops: DropsSource | None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.registry = registry
        self.source = source
        self.drops = drops
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        routes: dict[str, Callable[[], None]] = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/livez": self._healthz,
            "/readyz": self._readyz,
            "/statusz": self._statusz,
            "/drops": self._drops,
        }
        handler = routes.get(path)
        if handler is None:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            handler()
        except Exception as exc:  # never let a scrape kill the server thread
            log.exception("HTTP %s failed", path)
            self._send(500, "text/plain; charset=utf-8", f"error: {exc}\n".encode())

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        self._send(200, content_type, encoder(self.server.registry))

    def _healthz(self) -> None:
        ok, why = self.server.source.healthy()
        self._send(200 if ok else 500, "text/plain; charset=utf-8", f"{why}\n".encode())

    def _readyz(self) -> None:
        ok, why = self.server.source.ready()
        self._send(200 if ok else 503, "text/plain; charset=utf-8", f"{why}\n".encode())

    def _statusz(self) -> None:
        body = json.dumps(self.server.source.statusz(), indent=1, sort_keys=True) + "\n"
        self._send(200, "application/json", body.encode())

    def _drops(self) -> None:
        events = self.server.drops() if self.server.drops is not None else []
        body = json.dumps({"events": events}, sort_keys=True) + "\n"
        self._send(200, "application/json", body.encode())

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)


class HealthServer:
    """Serve the endpoints on (host, port) in a daemon thread; port 0 picks a free one."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        registry: CollectorRegistry,
        source: HealthSource,
        drops: DropsSource | None = None,
    ) -> None:
        self._server = _Server((host, port), registry, source, drops)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="netpol-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
