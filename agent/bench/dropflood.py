"""Datapath stage, `--drop-flood`: what logging drops costs allowed traffic under a flood.

The datapath stage's node, pods and cluster (agent.bench.datapath), plus a
third pod that blasts UDP at a port of the server no policy allows, for the
whole of each measurement. Two conditions alternate, both under that flood:
the agent's ruleset without drop logging, and with it (the drop path's
hashlimit'ed NFLOG rule) while an NFLOG reader in the node namespace drains
the group and names every packet, as the agent does. The ratio of their
medians is the cost of logging; the flood's rate and the packets logged per
second are reported with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from agent.bench.cluster import NODE
from agent.bench.datapath import dp_objects, measure
from agent.bench.results import Result, median
from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.convert import state_from_dicts
from agent.core.dropevents import EventNamer
from agent.core.droplogging import DropLogging
from agent.core.model import ClusterState
from agent.dataplane.applier import Applier
from agent.dataplane.backend import Backend
from agent.dataplane.nflog import NflogReader
from agent.sandbox.setns import inside
from agent.sandbox.topology import NodeSandbox, PodSandbox, build_node

FLOOD_PORT = 5300  # no policy allows it
GROUP = 100


class _Drain:
    """The agent's reading side: bind the group, read, name every packet."""

    def __init__(self, netns: str, state: ClusterState) -> None:
        with inside(netns):
            self.reader = NflogReader(GROUP).open()
        self.namer = EventNamer(state, NODE)
        self.read = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.reader.read(0.1):
                self.namer.event(prefix=p.prefix, family=p.family, payload=p.payload, time=p.time)
                self.read += 1

    def close(self) -> int:
        self._stop.set()
        self._thread.join(2)
        self.reader.close()
        return self.reader.lost


def _flooded(
    flooder: PodSandbox, server: PodSandbox, seconds: float, body: Callable[[], Any]
) -> Any:
    """Run `body` while `flooder` blasts UDP at the server's blocked port."""
    argv = ["ip", "netns", "exec", flooder.netns, sys.executable, "-m", "agent.bench.loadgen"]
    argv += ["udp-blast", server.ipv4, str(FLOOD_PORT), "3600"]
    flood = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        return body()
    finally:
        flood.terminate()
        flood.wait(timeout=30)


def _dropped(applier: Applier, netns: str) -> int:
    """Packets the server's drop rules have dropped so far (the flood)."""
    with inside(netns):
        counters = applier.drop_counters()
    return sum(c.packets for (pod, _), c in counters.items() if pod.endswith("/server"))


def run_drop_flood(
    backends: Sequence[Backend],
    *,
    pods: int,
    policies: int,
    seconds: float,
    rounds: int = 2,
    seed: int = 1,
    log: Callable[[str], None] = lambda s: None,
) -> list[Result]:
    out: list[Result] = []
    with build_node(0, purpose="dpflood") as node:
        client, server = node.add_pod("client"), node.add_pod("server")
        flooder = node.add_pod("flooder")
        objs = dp_objects(
            client=client,
            server=server,
            selecting=min(100, policies),
            policies=policies,
            pods=pods,
            seed=seed,
        )
        state = state_from_dicts(objs)
        rulesets = {
            "not logged": compile_ruleset(state, node=NODE, options=CompileOptions()),
            "logged": compile_ruleset(
                state, node=NODE, options=CompileOptions(extensions=(DropLogging(GROUP),))
            ),
        }
        for backend in backends:
            out += _one_backend(
                node, backend, rulesets, state, (client, server, flooder), seconds, rounds, log
            )
    return out


def _one_backend(
    node: NodeSandbox,
    backend: Backend,
    rulesets: dict[str, Any],
    state: ClusterState,
    pods: tuple[PodSandbox, PodSandbox, PodSandbox],
    seconds: float,
    rounds: int,
    log: Callable[[str], None],
) -> list[Result]:
    client, server, flooder = pods
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in rulesets}
    for _ in range(rounds):
        for condition, ruleset in rulesets.items():
            applier = Applier(backend)
            with inside(node.netns):
                applier.apply(ruleset)
            drain = _Drain(node.netns, state) if condition == "logged" else None
            try:
                started, dropped = time.monotonic(), _dropped(applier, node.netns)
                result = _flooded(
                    flooder, server, seconds, lambda: measure(client, server, seconds)
                )
                flood = _dropped(applier, node.netns) - dropped
                result["flood_packets_per_s"] = flood / (time.monotonic() - started)
                if drain is not None:
                    result["logged_per_s"] = drain.read / (time.monotonic() - started)
                    result["lost"] = float(drain.close())
                    drain = None
                runs[condition].append(result)
            finally:
                if drain is not None:
                    drain.close()
                with inside(node.netns):
                    applier.cleanup()
    med = {c: {k: median([r[k] for r in rs]) for k in rs[0]} for c, rs in runs.items()}
    log(f"datapath drop flood {backend.name}: {json.dumps(med)}")
    detail = {"runs": runs, "seconds": seconds}
    name = backend.name
    out: list[Result] = []
    for key, label, unit in (
        ("tcp_connections_per_s", "new TCP connections", "/s"),
        ("udp_packets_per_s", "UDP packets (one flow)", "/s"),
        ("tcp_stream_bytes_per_s", "TCP stream throughput", "MB/s"),
    ):
        scale = 1e-6 if unit == "MB/s" else 1.0
        plain, logged = med["not logged"][key], med["logged"][key]
        for cond, value in (("drops not logged", plain), ("drops logged", logged)):
            out.append(
                Result(
                    "datapath",
                    name,
                    f"{label}, blocked flood, {cond}",
                    value * scale,
                    unit,
                    None,
                    detail,
                )
            )
        ratio = logged / plain if plain else 0.0
        out.append(
            Result(
                "datapath", name, f"{label}, blocked flood, logged/not", ratio, "x", None, detail
            )
        )
    out.append(
        Result(
            "datapath",
            name,
            "blocked flood, packets dropped",
            med["logged"]["flood_packets_per_s"],
            "/s",
            None,
            detail,
        )
    )
    out.append(
        Result(
            "datapath",
            name,
            "drops logged and read under the flood",
            med["logged"]["logged_per_s"],
            "/s",
            None,
            detail,
        )
    )
    return out
