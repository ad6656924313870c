"""Long-lived flows between lab pods, run with `netpol-agent lab exec` (tests and benches).

    python -m tests.lab.flows serve PORT
        TCP and UDP echo on PORT (IPv4), until killed.
    python -m tests.lab.flows stream --tcp HOST:PORT --udp HOST:PORT --interval S --seconds S
        one TCP connection and/or one UDP socket; every interval a numbered message on
        each; prints one JSON object: {"tcp": [[seq, sent, received|null], ...], "udp": ...}
        with wall-clock times (time.time()), after waiting a little for late echoes.

`Flows` drives them from the test process: each runs as `lab exec` inside its pod.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).parents[2]
Record = tuple[int, float, float | None]


def serve(port: int) -> None:
    sel = selectors.DefaultSelector()
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind(("0.0.0.0", port))
    tcp.listen(64)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", port))
    sel.register(tcp, selectors.EVENT_READ, "accept")
    sel.register(udp, selectors.EVENT_READ, "udp")
    print("serving", flush=True)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if key.data == "accept":
                    conn, _ = sock.accept()
                    sel.register(conn, selectors.EVENT_READ, "conn")
                elif key.data == "udp":
                    data, addr = sock.recvfrom(2048)
                    sock.sendto(data, addr)
                else:
                    data = sock.recv(4096)
                    if not data:
                        sel.unregister(sock)
                        sock.close()
                    else:
                        sock.sendall(data)
            except OSError:
                if key.data == "conn":
                    sel.unregister(sock)
                    sock.close()


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def stream(tcp_to: str | None, udp_to: str | None, interval: float, seconds: float) -> None:
    socks: dict[str, socket.socket] = {}
    if tcp_to:
        t = socket.create_connection(_addr(tcp_to), timeout=2)
        t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t.setblocking(False)
        socks["tcp"] = t
    if udp_to:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.connect(_addr(udp_to))
        u.setblocking(False)
        socks["udp"] = u
    sent: dict[str, dict[int, float]] = {k: {} for k in socks}
    got: dict[str, dict[int, float]] = {k: {} for k in socks}
    buffers = {k: b"" for k in socks}
    print("streaming", flush=True)
    start = time.time()
    seq = 0
    end = start + seconds
    while True:
        now = time.time()
        if now < end:
            for name, sock in socks.items():
                try:
                    sock.send(b"%08d\n" % seq)
                    sent[name][seq] = now
                except OSError:
                    pass
            seq += 1
        elif now > end + 0.5:
            break
        deadline = now + interval
        while time.time() < deadline:
            for name, sock in socks.items():
                try:
                    while True:
                        data = sock.recv(4096)
                        if not data:
                            break
                        buffers[name] += data
                        *lines, buffers[name] = buffers[name].split(b"\n")
                        for line in lines:
                            if line.strip():
                                got[name].setdefault(int(line), time.time())
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    pass
            time.sleep(min(0.002, interval / 10))
    out = {
        name: [[s, t, got[name].get(s)] for s, t in sorted(sent[name].items())] for name in socks
    }
    print(json.dumps(out), flush=True)


@dataclass
class Flows:
    """Runs the programs above inside lab pods with `lab exec`."""

    lab_name: str
    state_dir: Path

    def _exec(self, namespace: str, pod: str, *argv: str) -> subprocess.Popen[str]:
        cmd = [
            sys.executable, "-m", "agent", "lab", "exec", "--name", self.lab_name,
            "--state-dir", str(self.state_dir), "-n", namespace, pod, "--",
            sys.executable, "-m", "tests.lab.flows", *argv,
        ]  # fmt: skip
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if not first:
            raise RuntimeError(f"{' '.join(argv)} in {namespace}/{pod} did not start")
        return proc

    def serve(self, namespace: str, pod: str, port: int) -> subprocess.Popen[str]:
        return self._exec(namespace, pod, "serve", str(port))

    def stream(
        self,
        namespace: str,
        pod: str,
        *,
        tcp: str | None = None,
        udp: str | None = None,
        interval: float = 0.05,
        seconds: float = 5.0,
    ) -> subprocess.Popen[str]:
        argv = ["stream", "--interval", str(interval), "--seconds", str(seconds)]
        if tcp:
            argv += ["--tcp", tcp]
        if udp:
            argv += ["--udp", udp]
        return self._exec(namespace, pod, *argv)


def stop(proc: subprocess.Popen[str]) -> None:
    """End a program started by Flows, and the `ip netns exec` child with it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.communicate(timeout=5)


def results(proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, list[Record]]:
    out, _ = proc.communicate(timeout=timeout)
    data = json.loads(out.strip().splitlines()[-1])
    return {k: [(int(s), float(t), r) for s, t, r in v] for k, v in data.items()}


def stop_time(records: Sequence[Record]) -> float | None:
    """When the flow stopped: the send time of the first message after which none came
    back (None: it never stopped)."""
    last_ok = max((i for i, r in enumerate(records) if r[2] is not None), default=-1)
    if last_ok == len(records) - 1:
        return None
    return records[last_ok + 1][1]


def largest_gap(records: Sequence[Record]) -> float:
    """The longest time between two consecutive echoes (a lost message counts as a gap)."""
    times = [r[2] for r in records]
    if any(t is None for t in times):
        return float("inf")
    received = sorted(t for t in times if t is not None)
    return max((b - a for a, b in itertools.pairwise(received)), default=0.0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.flows")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("port", type=int)
    c = sub.add_parser("stream")
    c.add_argument("--tcp")
    c.add_argument("--udp")
    c.add_argument("--interval", type=float, default=0.05)
    c.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.port)
    else:
        stream(args.tcp, args.udp, args.interval, args.seconds)


if __name__ == "__main__":
    main()
