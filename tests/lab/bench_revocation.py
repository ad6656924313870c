"""Revocation latency in a two-node lab: API write -> established flow stops (not a test).

    .venv/bin/python -m tests.lab.bench_revocation --runs 20

Per run: pod a (node-1) streams a TCP connection and a UDP flow to the server
(node-0) every 10 ms; while they flow, a NetworkPolicy that forbids a is created
through the lab API server; the flow's stop time is the send time of the first
message after which no echo came back; latency = stop time - the moment just
before the create request. Then the policy is deleted, the agents converge, and
the next run opens new flows. Prints every run and p50/p99 per protocol.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agent.lab import probe as lab_probe
from tests.lab.conftest import start_lab
from tests.lab.flows import results, stop, stop_time
from tests.lab.test_windows import SERVER_ONLY_FROM_B, revocation_cluster


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--interval", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for lab in start_lab(Path(tmp), nodes=2):
            flows, server, target = revocation_cluster(lab)
            latencies: dict[str, list[float]] = {"tcp": [], "udp": []}
            try:
                for run in range(args.runs):
                    proc = flows.stream(
                        "rv", "a", tcp=target, udp=target, interval=args.interval, seconds=1.5
                    )
                    time.sleep(0.6)
                    written = time.time()
                    lab.apply([SERVER_ONLY_FROM_B])
                    got = results(proc)
                    line = [f"run {run + 1:2d}"]
                    for name, records in got.items():
                        stopped = stop_time(records)
                        if stopped is None:
                            line.append(f"{name} NOT CUT")
                            continue
                        latencies[name].append(stopped - written)
                        line.append(f"{name} {1000 * (stopped - written):6.1f} ms")
                    print("  ".join(line), flush=True)
                    lab.delete([SERVER_ONLY_FROM_B])
                    snap = lab_probe.snapshot(lab.client)
                    lab_probe.wait_converged(lab.topo, snap.resource_version, timeout=20)
            finally:
                stop(server)
            for name, values in latencies.items():
                if values:
                    print(
                        f"{name}: n={len(values)} p50 {1000 * statistics.median(values):.1f} ms "
                        f"p99 {1000 * percentile(values, 0.99):.1f} ms "
                        f"max {1000 * max(values):.1f} ms"
                    )


if __name__ == "__main__":
    main()
