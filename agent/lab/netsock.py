"""Sockets inside lab namespaces: the pods' listeners and the probe's concurrent connections.

A socket belongs to the network namespace its creating thread was in, so one
process can serve every pod's ports and probe every pair: the sandbox's
`inside(netns)` moves the calling thread in just long enough to create the
socket. Listeners accept TCP (and SCTP) connections and echo UDP datagrams;
all of them are served by one selector thread. Probes are non-blocking
connects (or UDP echo requests) driven by one selector loop with a deadline.

Every probe is a new flow: its source port is the next one of its (namespace,
destination, port, protocol) in PROBE_SOURCE_PORTS, never the kernel's random
pick. A 5-tuple reused while conntrack still holds an entry of an earlier probe
(UDP: 30-120 s) is that old flow to the kernel, and the agent revokes flows a
narrowed policy forbids only after the sync (docs/limitations.md: "Established
flows are cut after the sync, not by it"; a revoked TCP flow stays a tombstone
that a new connection from the same source port rides).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import random
import resource
import selectors
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.core.model import Family, Protocol, family_of
from agent.sandbox.setns import inside

PROBE_PAYLOAD = b"npa-probe"
# Below the kernel's default ephemeral range (32768-60999), so that no socket of the lab
# picks one of them by itself.
PROBE_SOURCE_PORTS = range(20000, 32768)
_TYPES = {
    Protocol.TCP: (socket.SOCK_STREAM, socket.IPPROTO_TCP),
    Protocol.UDP: (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
    Protocol.SCTP: (socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132)),
}


def _af(family: Family) -> socket.AddressFamily:
    return socket.AF_INET6 if family is Family.V6 else socket.AF_INET


def open_socket(netns: str | None, family: Family, protocol: Protocol) -> socket.socket:
    """A socket created inside `netns` (None: the calling thread's own namespace)."""
    kind, proto = _TYPES[protocol]
    if netns is None:
        return socket.socket(_af(family), kind, proto)
    with inside(netns):
        return socket.socket(_af(family), kind, proto)


@functools.cache
def sctp_supported() -> bool:
    """True if this kernel can open SCTP sockets (the module may be absent)."""
    try:
        socket.socket(socket.AF_INET, *_TYPES[Protocol.SCTP]).close()
    except OSError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Port:
    port: int
    protocol: Protocol


class ListenerServer:
    """Serves every lab pod's declared ports from one thread (TCP/SCTP accept, UDP echo)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._owned: dict[str, list[socket.socket]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="lab-listeners", daemon=True)
        self._thread.start()

    def add(
        self, key: str, netns: str | None, ports: Iterable[Port], families: Sequence[Family]
    ) -> list[str]:
        """Listen on `ports` for pod `key` inside `netns`; returns problems (not fatal)."""
        problems: list[str] = []
        opened: list[socket.socket] = []
        for port in ports:
            if port.protocol is Protocol.SCTP and not sctp_supported():
                problems.append(f"{port.port}/SCTP: this kernel has no SCTP")
                continue
            for family in families:
                try:
                    opened.append(self._listen(netns, family, port))
                except OSError as exc:
                    problems.append(f"{port.port}/{port.protocol.value} (IPv{family.value}): {exc}")
        with self._lock:
            self._owned.setdefault(key, []).extend(opened)
            for sock in opened:
                self._selector.register(sock, selectors.EVENT_READ, sock.type)
        return problems

    @staticmethod
    def _listen(netns: str | None, family: Family, port: Port) -> socket.socket:
        sock = open_socket(netns, family, port.protocol)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family is Family.V6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(("::" if family is Family.V6 else "0.0.0.0", port.port))
            if sock.type == socket.SOCK_STREAM:
                sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def remove(self, key: str) -> None:
        with self._lock:
            socks = self._owned.pop(key, [])
            for sock in socks:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
                sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with self._lock:
            for key in list(self._owned):
                for sock in self._owned.pop(key):
                    sock.close()
            self._selector.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                events = self._selector.select(timeout=0.2)
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if key.data == socket.SOCK_STREAM:
                        conn, _addr = sock.accept()
                        conn.close()
                    else:
                        data, addr = sock.recvfrom(2048)
                        sock.sendto(data, addr)
                except OSError:
                    continue


class SourcePorts:
    """Hands out a source port per probe: for one (namespace, destination, port,
    protocol) the ports follow each other from a random start, so a 5-tuple comes back
    only after len(PROBE_SOURCE_PORTS) probes of that same pair."""

    def __init__(self, ports: range = PROBE_SOURCE_PORTS) -> None:
        self.ports = ports
        self._next: dict[tuple[str, str, int, Protocol], int] = {}
        self._lock = threading.Lock()

    def take(self, att: Attempt) -> int:
        key = (att.src_netns, att.dst_ip, att.port, att.protocol)
        with self._lock:
            n = self._next.get(key)
            if n is None:
                n = random.randrange(len(self.ports))
            self._next[key] = n + 1
        return self.ports[n % len(self.ports)]


SOURCE_PORTS = SourcePorts()


def bind_source_port(sock: socket.socket, att: Attempt, *, tries: int = 8) -> int | None:
    """Bind `sock` to the attempt's next source port (skipping ports in use in its
    namespace, e.g. a pod listening there); None leaves the choice to the kernel."""
    host = "::" if family_of(att.dst_ip) is Family.V6 else "0.0.0.0"
    for _ in range(tries):
        port = SOURCE_PORTS.take(att)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
                continue
            return None
        return port
    return None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One probe: from a namespace to an address, port and protocol."""

    src_netns: str
    dst_ip: str
    port: int
    protocol: Protocol


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def probe(attempts: Sequence[Attempt], *, timeout: float, batch: int = 0) -> dict[Attempt, bool]:
    """Try every attempt concurrently; True where a connection (or UDP echo) succeeded.

    Refused connections and silence until `timeout` count as blocked.
    """
    limit = batch or max(64, min(2000, raise_fd_limit() // 2 - 64))
    results: dict[Attempt, bool] = {}
    for start in range(0, len(attempts), limit):
        results.update(_probe_batch(attempts[start : start + limit], timeout))
    return results


def _probe_batch(attempts: Sequence[Attempt], timeout: float) -> dict[Attempt, bool]:
    results: dict[Attempt, bool] = {}
    sel = selectors.DefaultSelector()
    udp: dict[socket.socket, tuple[str, int]] = {}
    by_netns: dict[str, list[Attempt]] = {}
    for att in attempts:
        by_netns.setdefault(att.src_netns, []).append(att)
    socks: list[socket.socket] = []
    try:
        for netns, group in by_netns.items():
            created: list[tuple[Attempt, socket.socket]] = []
            try:
                with inside(netns):
                    for att in group:
                        try:
                            kind, proto = _TYPES[att.protocol]
                            created.append(
                                (att, socket.socket(_af(family_of(att.dst_ip)), kind, proto))
                            )
                        except OSError:  # e.g. no SCTP in this kernel
                            results[att] = False
            except OSError:  # the source namespace is gone (pod deleted meanwhile)
                results.update((att, False) for att in group if att not in results)
            for att, sock in created:
                socks.append(sock)
                sock.setblocking(False)
                bind_source_port(sock, att)
                addr = (att.dst_ip, att.port)
                if att.protocol is Protocol.UDP:
                    try:
                        sock.connect(addr)
                        sock.send(PROBE_PAYLOAD)
                    except OSError:
                        results[att] = False
                        continue
                    udp[sock] = addr
                    sel.register(sock, selectors.EVENT_READ, att)
                    continue
                err = sock.connect_ex(addr)
                if err in (0, errno.EINPROGRESS):
                    sel.register(sock, selectors.EVENT_WRITE, att)
                else:
                    results[att] = False
        deadline = time.monotonic() + timeout
        next_resend = time.monotonic() + min(0.25, timeout / 4)
        while len(results) < len(attempts):
            now = time.monotonic()
            last = now >= deadline  # one last non-blocking look, in case we were descheduled
            for key, _ in sel.select(timeout=max(0.0, min(deadline, next_resend) - now)):
                probe_sock = key.fileobj
                assert isinstance(probe_sock, socket.socket)
                att = key.data
                sel.unregister(probe_sock)
                if att.protocol is Protocol.UDP:
                    try:
                        results[att] = probe_sock.recv(2048) == PROBE_PAYLOAD
                    except OSError:
                        results[att] = False
                    udp.pop(probe_sock, None)
                else:
                    err = probe_sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    results[att] = err == 0
            if last:
                break
            if time.monotonic() >= next_resend:
                next_resend = time.monotonic() + 0.25
                for sock in list(udp):
                    with contextlib.suppress(OSError):
                        sock.send(PROBE_PAYLOAD)
    finally:
        for sock in socks:
            sock.close()
        sel.close()
    for att in attempts:
        results.setdefault(att, False)
    return results
