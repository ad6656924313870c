"""Traffic generators for the datapath benchmark, run as separate processes inside pod namespaces.

Two processes (server and client, each started with `ip netns exec`) so that
both ends run on their own core without sharing an interpreter lock. Stdlib
only. Each mode prints one JSON line; servers print `ready` first.

    tcp-accept PORT              accept and close connections until killed
    tcp-connect DST PORT SECS    connect+close in a loop (RST close, no TIME_WAIT) -> per_second
    udp-sink PORT SECS           count datagrams for SECS after the first -> per_second
    udp-blast DST PORT SECS      send 64-byte datagrams in a loop
    tcp-sink PORT                read one connection to its end -> bytes
    tcp-stream DST PORT SECS     send 128 KiB writes for SECS -> bytes_per_second
"""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import time
from types import FrameType


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def _listen(port: int, kind: socket.SocketKind) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    if kind == socket.SOCK_STREAM:
        sock.listen(4096)
    return sock


def tcp_accept(port: int) -> None:
    sock = _listen(port, socket.SOCK_STREAM)
    _say(ready=True)
    while True:
        conn, _ = sock.accept()
        conn.close()


def tcp_connect(dst: str, port: int, seconds: float) -> None:
    linger = struct.pack("ii", 1, 0)
    count = failures = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.settimeout(1.0)
        try:
            s.connect((dst, port))
            count += 1
        except OSError:
            failures += 1
        finally:
            s.close()
    elapsed = time.perf_counter() - start
    _say(count=count, failures=failures, seconds=elapsed, per_second=count / elapsed)


def udp_sink(port: int, seconds: float) -> None:
    sock = _listen(port, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    _say(ready=True)
    sock.recv(2048)
    count = 0
    start = time.perf_counter()
    end = start + seconds
    sock.settimeout(0.5)
    while time.perf_counter() < end:
        try:
            sock.recv(2048)
        except TimeoutError:
            break
        count += 1
    elapsed = time.perf_counter() - start
    _say(count=count, seconds=elapsed, per_second=count / elapsed)


def udp_blast(dst: str, port: int, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((dst, port))
    payload = b"x" * 64
    count = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(64):
            try:
                sock.send(payload)
                count += 1
            except OSError:
                pass
    _say(sent=count)


def tcp_sink(port: int) -> None:
    sock = _listen(port, socket.SOCK_STREAM)
    _say(ready=True)
    conn, _ = sock.accept()
    buf = bytearray(1 << 20)
    total = 0
    while n := conn.recv_into(buf):
        total += n
    _say(bytes=total)


def tcp_stream(dst: str, port: int, seconds: float) -> None:
    sock = socket.create_connection((dst, port), timeout=5)
    chunk = b"\0" * (128 << 10)
    total = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        sock.sendall(chunk)
        total += len(chunk)
    elapsed = time.perf_counter() - start
    sock.close()
    _say(bytes=total, seconds=elapsed, bytes_per_second=total / elapsed)


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop)
    mode, args = argv[0], argv[1:]
    if mode == "tcp-accept":
        tcp_accept(int(args[0]))
    elif mode == "tcp-connect":
        tcp_connect(args[0], int(args[1]), float(args[2]))
    elif mode == "udp-sink":
        udp_sink(int(args[0]), float(args[1]))
    elif mode == "udp-blast":
        udp_blast(args[0], int(args[1]), float(args[2]))
    elif mode == "tcp-sink":
        tcp_sink(int(args[0]))
    elif mode == "tcp-stream":
        tcp_stream(args[0], int(args[1]), float(args[2]))
    else:
        print(f"unknown mode {mode!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
