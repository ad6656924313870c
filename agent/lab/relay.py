"""Makes the API server (127.0.0.1 in the host namespace) reachable at 172.18.0.1:6443.

The lab process listens once on loopback for kubectl and once more inside the
underlay namespace, on the underlay bridge's address, for the agents in the
node namespaces (the way kind's control plane sits on the docker network). The
second listener is a plain TCP relay to the first: it knows nothing about HTTP,
so watches, chunked streams and any server implementation pass unchanged, and
no interface of the lab is ever linked to the host's own namespace (only a
socket of this process is). The other way round, a relay listening on the
host's 127.0.0.1 makes the lab's Prometheus (127.0.0.1:9090 inside the
underlay namespace, `lab up --prometheus`) reachable from the host.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

from agent.core.model import Family, Protocol
from agent.lab.netsock import open_socket

log = logging.getLogger(__name__)


class Relay:
    """Listen in `netns` (None: here), connect each client to `target` in `target_netns`."""

    def __init__(
        self,
        *,
        netns: str | None,
        listen: tuple[str, int],
        target: tuple[str, int],
        target_netns: str | None = None,
    ) -> None:
        self.target = target
        self.target_netns = target_netns
        self._sock = open_socket(netns, Family.V4, Protocol.TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(listen)
        self._sock.listen(256)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="lab-api-relay", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream = open_socket(self.target_netns, Family.V4, Protocol.TCP)
        try:
            upstream.settimeout(5)
            upstream.connect(self.target)
        except OSError as exc:
            log.warning("relay: cannot reach %s: %s", self.target, exc)
            upstream.close()
            conn.close()
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
        back.start()
        _pump(conn, upstream)
        back.join()
        conn.close()
        upstream.close()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)
