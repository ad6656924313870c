"""Real TCP/UDP traffic between scratch namespaces from one Python process.

Sockets are opened inside a namespace with `setns.inside` and then served or
polled from any thread, so one process can run listeners in many pods and
probe between them without `ip netns exec` per connection.

Public API:

    EchoServers()                        one background thread serving echo sockets
        .tcp(ns, port) / .udp(ns, port)  listen on [::]:port (dual-stack) inside ns
        .close()                         also a context manager
    Probe(src_ns, dst, port, protocol)   protocol "TCP" or "UDP"
    probe_many(probes, timeout=1.0) -> list[bool]
        all probes at once, non-blocking; a TCP probe succeeds when the
        connection is established, a UDP probe when the echo comes back
    open_tcp(src_ns, dst, port, timeout=1.0) -> socket.socket   an established connection
    echo_ok(sock, timeout=1.0) -> bool   does a message on this connection come back?
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import selectors
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from agent.sandbox.setns import inside


def _family(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _listen_socket(ns: str, port: int, kind: socket.SocketKind) -> socket.socket:
    with inside(ns):
        sock = socket.socket(socket.AF_INET6, kind)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("::", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(128)
    sock.setblocking(False)
    return sock


class EchoServers:
    """TCP and UDP echo servers in many namespaces, served by one thread."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._pending: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stop = threading.Event()
        self._owned: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, name="npa-echo", daemon=True)
        self._thread.start()

    def tcp(self, ns: str, port: int) -> None:
        self._add(_listen_socket(ns, port, socket.SOCK_STREAM))

    def udp(self, ns: str, port: int) -> None:
        self._add(_listen_socket(ns, port, socket.SOCK_DGRAM))

    def _add(self, sock: socket.socket) -> None:
        self._pending.put(sock)
        self._wake_w.send(b"x")

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.2):
                with contextlib.suppress(OSError):
                    self._handle(key)

    def _handle(self, key: selectors.SelectorKey) -> None:
        sock: socket.socket = key.fileobj  # type: ignore[assignment]
        if key.data == "wake":
            sock.recv(4096)
            while not self._pending.empty():
                new = self._pending.get()
                self._owned.append(new)
                kind = "listen" if new.type == socket.SOCK_STREAM else "udp"
                self._selector.register(new, selectors.EVENT_READ, kind)
        elif key.data == "listen":
            conn, _ = sock.accept()
            conn.setblocking(False)
            self._owned.append(conn)
            self._selector.register(conn, selectors.EVENT_READ, "conn")
        elif key.data == "udp":
            data, peer = sock.recvfrom(65535)
            sock.sendto(data, peer)
        else:
            try:
                data = sock.recv(65535)
            except OSError:
                data = b""
            if data:
                sock.sendall(data)
            else:
                self._selector.unregister(sock)
                sock.close()

    def close(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        self._thread.join(timeout=2)
        for sock in self._owned:
            sock.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> EchoServers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class Probe:
    """One connection attempt from namespace `src_ns` to `dst`:`port` over `protocol`."""

    src_ns: str
    dst: str
    port: int
    protocol: str = "TCP"


def _start(probe: Probe, token: bytes) -> socket.socket:
    kind = socket.SOCK_STREAM if probe.protocol == "TCP" else socket.SOCK_DGRAM
    with inside(probe.src_ns):
        sock = socket.socket(_family(probe.dst), kind)
    sock.setblocking(False)
    if kind == socket.SOCK_STREAM:
        code = sock.connect_ex((probe.dst, probe.port))
        if code not in (0, errno.EINPROGRESS):
            raise OSError(code, f"connect to {probe.dst}:{probe.port}")
    else:
        sock.connect((probe.dst, probe.port))
        with contextlib.suppress(OSError):
            sock.send(token)
    return sock


def probe_many(probes: Sequence[Probe], timeout: float = 1.0) -> list[bool]:
    """Run every probe concurrently; True where the connection succeeded within `timeout`."""
    results = [False] * len(probes)
    selector = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    nonce = os.urandom(4).hex()  # a late echo from an earlier call never counts
    tokens = [f"npa-probe-{nonce}-{i}".encode() for i in range(len(probes))]
    try:
        for i, probe in enumerate(probes):
            sock = _start(probe, tokens[i])
            socks.append(sock)
            events = selectors.EVENT_WRITE if probe.protocol == "TCP" else selectors.EVENT_READ
            selector.register(sock, events, i)
        deadline = time.monotonic() + timeout
        next_resend = time.monotonic() + 0.2
        while selector.get_map() and (now := time.monotonic()) < deadline:
            if now >= next_resend:  # UDP has no retransmission of its own
                next_resend = now + 0.2
                for key in list(selector.get_map().values()):
                    if probes[key.data].protocol != "TCP":
                        with contextlib.suppress(OSError):
                            key.fileobj.send(tokens[key.data])  # type: ignore[union-attr]
            for key, _ in selector.select(timeout=min(0.05, max(0.0, deadline - now))):
                i = key.data
                sock = socks[i]
                if probes[i].protocol == "TCP":
                    results[i] = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                else:
                    try:
                        results[i] = sock.recv(65535) == tokens[i]
                    except OSError:
                        results[i] = False
                selector.unregister(sock)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    return results


def open_tcp(src_ns: str, dst: str, port: int, timeout: float = 1.0) -> socket.socket:
    """An established TCP connection from `src_ns` (raises OSError if it cannot connect)."""
    with inside(src_ns):
        sock = socket.socket(_family(dst), socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((dst, port))
    except OSError:
        sock.close()
        raise
    return sock


def echo_ok(sock: socket.socket, timeout: float = 1.0) -> bool:
    """Send a message on an open connection; True if the echo server's copy comes back."""
    message = b"npa-established"
    sock.settimeout(timeout)
    try:
        sock.sendall(message)
        received = b""
        while len(received) < len(message):
            chunk = sock.recv(len(message) - len(received))
            if not chunk:
                return False
            received += chunk
    except OSError:
        return False
    return received == message
