"""HTTP/1.1 transport: one thread per connection, chunked JSON event streams for watches.

Keeps the REST logic (handlers.py) free of sockets. Applies the fault hooks and the bearer
token check before a request reaches the handlers.
"""

from __future__ import annotations

import hmac
import logging
import select
import socket
import ssl
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from agent.lab.apiserver import errors
from agent.lab.apiserver.faults import Faults
from agent.lab.apiserver.handlers import Handlers
from agent.lab.apiserver.messages import Request, Response, WatchStream, json_response
from agent.lab.apiserver.store import Store, bookmark_object
from agent.lab.apiserver.watch import BOOKMARK, STOP, encode_event

log = logging.getLogger(__name__)

_ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})


class HttpServer(ThreadingHTTPServer):
    """The listening server; request handler threads reach the API state through it."""

    daemon_threads = True
    request_queue_size = 128
    block_on_close = False
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        *,
        handlers: Handlers,
        store: Store,
        faults: Faults,
        token: str | None,
        ssl_context: ssl.SSLContext | None,
        bookmark_interval: float,
    ) -> None:
        self.handlers = handlers
        self.store = store
        self.faults = faults
        self.token = token
        self.ssl_context = ssl_context
        self.bookmark_interval = bookmark_interval
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _RequestHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is not None:
            sock = self.ssl_context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
        return sock, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return not self.faults.refusing()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s failed", client_address, exc_info=True)


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HttpServer
    timeout = 600

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.settimeout(10)
            self.connection.do_handshake()
            self.connection.settimeout(self.timeout)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self, path: str) -> bool:
        token = self.server.token
        if token is None or path in _ANONYMOUS_PATHS:
            return True
        header = self.headers.get("Authorization", "")
        return header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token)

    def _serve(self) -> None:
        faults = self.server.faults
        if faults.refusing():
            self.close_connection = True
            return
        body = self._read_body()
        delay = faults.current_delay
        if delay > 0:
            time.sleep(delay)
        url = urlsplit(self.path)
        if not self._authorized(url.path):
            self._send(json_response(401, errors.unauthorized().status()))
            return
        failure = faults.take_failure(self.command, url.path)
        if failure is not None:
            self._send(json_response(failure.code, failure.status()))
            return
        request = Request(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        result = self.server.handlers.handle(request)
        if isinstance(result, WatchStream):
            self._stream(result)
        else:
            self._send(result)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(response.body)

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _stream(self, stream: WatchStream) -> None:
        watcher, store = stream.watcher, self.server.store
        tick = self.server.bookmark_interval
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache, private")
            # We close the connection when the stream ends: say so, or a client's
            # connection pool reuses the dead socket for its next request.
            self.send_header("Connection", "close")
            self.end_headers()
            start = time.monotonic()
            deadline = start + stream.timeout if stream.timeout is not None else None
            next_tick = start + tick
            while True:
                now = time.monotonic()
                wait = next_tick - now if deadline is None else min(next_tick, deadline) - now
                delivery = watcher.next(timeout=max(wait, 0.0))
                if delivery is STOP:
                    break
                if delivery is not None:
                    render = stream.render
                    self._chunk(delivery.data if render is None else render(delivery.data))
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if now >= next_tick:
                    next_tick = now + tick
                    if self._client_gone():
                        break
                    rv = store.bookmark_rv(watcher) if watcher.bookmarks else None
                    if rv is not None:
                        self._chunk(encode_event(BOOKMARK, bookmark_object(stream.info, rv)))
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, ValueError):
            log.debug("watch stream to %s ended by the client", self.address_string())
        finally:
            store.unwatch(watcher)
