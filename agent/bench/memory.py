"""Stage 5: resident memory of `netpol-agent run` holding the whole cluster.

The agent runs as its own process (the DaemonSet's command line) inside a
scratch node namespace, against the lab API server whose socket lives in that
namespace (127.0.0.1 there) and which was pre-filled through its store. Once
/statusz says it has applied everything up to the server's current
resourceVersion, we read VmRSS (and the peak, VmHWM) from /proc. The time to
that point is the agent's start-to-enforcing time (list, compile, full apply).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.bench import labapi
from agent.bench.cluster import NODE, Manifests
from agent.bench.results import Goal, Result
from agent.dataplane.backend import Backend
from agent.sandbox import netns
from agent.sandbox.setns import inside

RSS_GOAL = Goal("<=", 150.0)
METRICS_PORT = 19848


def _statusz(ns: str) -> dict[str, Any] | None:
    try:
        with inside(ns):
            resp = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/statusz", timeout=2)
        return dict(json.loads(resp.read().decode()))
    except (OSError, ValueError):
        return None


def proc_memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def run_memory(
    backend: Backend,
    manifests: Manifests,
    *,
    label: str = "",
    timeout: float = 600.0,
    log: Callable[[str], None] = lambda s: None,
) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="npa-bench-") as tmp, netns.netns("rss") as ns:
        api = labapi.start_api(ns)
        proc: subprocess.Popen[bytes] | None = None
        agent_log = Path(tmp) / "agent.log"
        try:
            labapi.fill(api, manifests.objects())
            kubeconfig = api.write_kubeconfig(Path(tmp) / "kubeconfig")
            argv = [
                "ip", "netns", "exec", ns, sys.executable, "-m", "agent", "run",
                "--node-name", NODE, "--kubeconfig", str(kubeconfig),
                "--backend", backend.name, "--resync-interval", "3600",
                "--log-format", "text", "--log-level", "warning",
                "--metrics-bind-address", f"127.0.0.1:{METRICS_PORT}",
            ]  # fmt: skip
            started = time.perf_counter()
            with agent_log.open("wb") as out:
                proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            target = api.resource_version
            deadline = time.monotonic() + timeout
            while True:
                st = _statusz(ns)
                if st and st.get("ready") and int(st["synced_resource_version"]) >= target:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"netpol-agent run did not converge: {agent_log.read_text()[-2000:]}"
                    )
                time.sleep(0.05)
            ready_s = time.perf_counter() - started
            time.sleep(1.0)  # let the first sync's garbage go
            mem = proc_memory(proc.pid)
            status = _statusz(ns) or {}
        finally:
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            api.stop()
    suffix = f" {label}" if label else ""
    detail = {
        "vm_hwm_mib": round(mem.get("VmHWM", 0.0), 1),
        "start_to_enforcing_s": round(ready_s, 2),
        "objects": status.get("objects"),
        "local_pods": status.get("local_pods"),
    }
    log(f"memory {backend.name}: RSS {mem.get('VmRSS', 0):.0f} MiB, ready in {ready_s:.1f} s")
    return [
        Result(
            "memory",
            backend.name,
            f"agent RSS{suffix}",
            mem.get("VmRSS", 0.0),
            "MiB",
            RSS_GOAL,
            detail,
        ),
        Result(
            "memory",
            backend.name,
            f"agent peak RSS{suffix}",
            mem.get("VmHWM", 0.0),
            "MiB",
            None,
            detail,
        ),
        Result("memory", backend.name, f"start to enforcing{suffix}", ready_s, "s", None, detail),
    ]
