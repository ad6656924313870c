"""Upgrading the agents from release 0.1.0 to this code, node by node, leaves no hole.

A 2-node lab without its own agents runs the nine-pods model (the upstream e2e
model) with policies. This test starts release 0.1.0's agent on every node:
commit RELEASE_0_1_0 (as CHANGELOG.md records it), installed with pip from
`git archive` into a virtualenv of its own (its /metrics says 0.1.0). Then it
replaces the agents with the current code one node at a time, as the
DaemonSet's rolling update does, while two pods per node open new
connections continuously to every other pod (TCP 80, UDP 81). Every attempt
is checked against the policy engine: no forbidden connection may get through,
no allowed one may be refused (a failed allowed attempt is retried at once
with a longer timeout, as `lab probe` does, so that a slow handshake on a
loaded machine is not counted; a hole lasting more than that still is). After
the upgrade every node's NPA-* chains and npa-* sets are exactly those a fresh
current agent programs: nothing of the old layout is left. Then the same
rolling replacement goes back to 0.1.0 (a rollback), with the same checks on
traffic and on what is left (exactly what a fresh 0.1.0 agent programs).
"""

from __future__ import annotations

import http.client
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent import __version__
from agent.core.model import ClusterState, Family, Pod, Protocol
from agent.core.table import format_diff
from agent.lab import probe as lab_probe
from agent.lab.agents import METRICS_PORT, agent_command
from agent.lab.netsock import Attempt, open_socket, probe
from agent.lab.topology import NodeSpec
from tests.lab.conftest import RunningLab, start_lab

pytestmark = [pytest.mark.kernel, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
RELEASE_0_1_0 = "f96da26dc32a373562cfddb77c52e9890156e9f7"
RELEASES = Path("/var/cache/netpol-agent/releases")
CASES = ((80, Protocol.TCP), (81, Protocol.UDP))
SETTLE = 3.0  # seconds of probing between two node replacements


@dataclass(frozen=True)
class Release:
    """An agent to run: its interpreter, and a directory to run it from (`python -m agent`
    imports `agent` from the working directory first)."""

    version: str
    python: str
    cwd: Path


CURRENT = Release(__version__, sys.executable, REPO)


@pytest.fixture(scope="module")
def release_0_1_0() -> Release:
    """Release 0.1.0 installed from its commit into a virtualenv of its own.

    Kept outside the repo (RELEASES, like the upstream binaries) and reused while it
    imports as 0.1.0; built with `git archive` + `pip install` (about 20 s) otherwise.
    """
    home = RELEASES / f"0.1.0-{RELEASE_0_1_0[:7]}"
    python = home / "venv" / "bin" / "python"
    if version_of(python, home) != "0.1.0":
        shutil.rmtree(home, ignore_errors=True)
        (home / "src").mkdir(parents=True)
        git = subprocess.run(
            ["git", "-C", str(REPO), "archive", "-o", str(home / "src.tar"), RELEASE_0_1_0],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert git.returncode == 0, f"release 0.1.0 ({RELEASE_0_1_0}) not in git: {git.stderr}"
        with tarfile.open(home / "src.tar") as tar:
            tar.extractall(home / "src", filter="data")
        for argv in (
            [sys.executable, "-m", "venv", str(home / "venv")],
            [str(python), "-m", "pip", "install", "-q", str(home / "src")],
        ):
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
            assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}{done.stderr}"
        assert version_of(python, home) == "0.1.0"
    return Release("0.1.0", str(python), home)


def version_of(python: Path, cwd: Path) -> str | None:
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import agent; print(agent.__version__)"],
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.stdout.strip() or None


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    yield from start_lab(tmp_path_factory.mktemp("lab"), nodes=2, agents=False)


class Agents:
    """Each node's `netpol-agent run`, from a chosen source tree, started and stopped by us."""

    def __init__(self, lab: RunningLab) -> None:
        self.lab = lab
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: NodeSpec, release: Release) -> None:
        argv = agent_command(
            config=self.lab.config, node=node, paths=self.lab.paths, python=release.python
        )
        with self.lab.paths.agent_log(node.name).open("ab") as log:
            self.procs[node.name] = subprocess.Popen(
                argv, cwd=release.cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def stop(self, node: NodeSpec) -> None:
        proc = self.procs.pop(node.name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"the agent on {node.name} did not stop on SIGTERM")

    def stop_all(self) -> None:
        for node in self.lab.topo.nodes:
            if node.name in self.procs:
                self.stop(node)

    def wait_ready(self, node: NodeSpec, version: str, target_rv: int) -> None:
        deadline = time.monotonic() + 60
        while True:
            proc = self.procs[node.name]
            assert proc.poll() is None, f"the {version} agent on {node.name} exited"
            try:
                status = lab_probe.fetch_statusz(self.lab.topo, node)
                if status.get("ready") and lab_probe.synced(status) >= target_rv:
                    break
            except (OSError, ValueError):
                pass
            assert time.monotonic() < deadline, f"the {version} agent on {node.name} not ready"
            time.sleep(0.1)
        assert agent_version(self.lab, node) == version


def agent_version(lab: RunningLab, node: NodeSpec) -> str:
    """The version label of netpol_build_info on the node's /metrics."""
    sock = open_socket(lab.topo.net_netns, Family.V4, Protocol.TCP)
    try:
        sock.settimeout(2)
        sock.connect((node.ip, METRICS_PORT))
        conn = http.client.HTTPConnection(node.ip, METRICS_PORT, timeout=2)
        conn.sock = sock
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        sock.close()
    found = re.search(r'^netpol_build_info\{[^}]*version="([^"]+)"', text, re.M)
    assert found, "no netpol_build_info on /metrics"
    return found.group(1)


@dataclass
class Prober:
    """Two pods per node connect to every other pod, round after round, in a thread."""

    lab: RunningLab
    state: ClusterState
    tried: int = 0
    forbidden_through: list[str] = field(default_factory=list)
    allowed_refused: list[str] = field(default_factory=list)
    first_try_failures: int = 0
    rounds: int = 0
    per_round: tuple[int, int] = (0, 0)  # allowed, forbidden attempts in each round
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def attempts(self) -> dict[Attempt, tuple[Pod, Pod, int, Protocol]]:
        pods = lab_probe.probe_pods(self.state)
        clients: list[Pod] = []
        for node in self.lab.topo.nodes:
            on_node = [p for p in pods if p.node == node.name]
            assert len(on_node) >= 2, f"fewer than two pods on {node.name}"
            clients += on_node[:2]
        out: dict[Attempt, tuple[Pod, Pod, int, Protocol]] = {}
        for src in clients:
            for dst in pods:
                if src.uid != dst.uid:
                    for port, protocol in CASES:
                        att = Attempt(
                            lab_probe.netns_of(self.lab.topo, src),
                            dst.ips_of(Family.V4)[0],
                            port,
                            protocol,
                        )
                        out[att] = (src, dst, port, protocol)
        return out

    def run(self) -> None:
        verdict = lab_probe.engine_verdict(self.state)
        attempts = self.attempts()
        expected = {att: verdict(*what) for att, what in attempts.items()}
        self.per_round = (sum(expected.values()), len(expected) - sum(expected.values()))
        while not self._stop.is_set():
            results = probe(list(attempts), timeout=1.0)
            again = [a for a, ok in results.items() if not ok and expected[a]]
            self.first_try_failures += len(again)
            if again:
                results.update(probe(again, timeout=3.0))
            stamp = time.strftime("%H:%M:%S")
            for att, ok in results.items():
                src, dst, port, protocol = attempts[att]
                what = f"{stamp} {src.key} -> {dst.key} {port}/{protocol.value}"
                if ok and not expected[att]:
                    self.forbidden_through.append(what)
                elif not ok and expected[att]:
                    self.allowed_refused.append(what)
            self.tried += len(results)
            self.rounds += 1

    def __enter__(self) -> Prober:
        self._thread = threading.Thread(target=self.run, name="upgrade-prober", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=30)

    def assert_no_hole(self, what: str) -> None:
        allowed, forbidden = self.per_round
        print(
            f"{what}: {self.tried} connections in {self.rounds} rounds "
            f"({allowed} allowed + {forbidden} forbidden each), "
            f"{len(self.forbidden_through)} forbidden through, "
            f"{len(self.allowed_refused)} allowed refused "
            f"({self.first_try_failures} allowed attempts needed the retry)"
        )
        assert self.rounds >= 3, f"{what}: too few probe rounds"
        assert allowed >= 10 and forbidden >= 10, f"{what}: the policies test too little"
        assert not self.forbidden_through, f"{what}: {self.forbidden_through[:10]}"
        assert not self.allowed_refused, f"{what}: {self.allowed_refused[:10]}"


def kernel_objects(lab: RunningLab, node: NodeSpec) -> dict[str, list[str]]:
    """The node's NPA-* chains and every rule that names one or an npa-* set (both
    iptables variants, both families, in order), and the npa-* sets with their members."""
    out: dict[str, list[str]] = {}
    for save in ("iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save",
                 "ip6tables-nft-save"):  # fmt: skip
        text = subprocess.run(
            ["ip", "netns", "exec", node.netns, save],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout  # fmt: skip
        out[save] = [
            line.split()[0] if line.startswith(":") else line
            for line in text.splitlines()
            if line.startswith(":NPA") or (line.startswith("-A") and re.search("NPA|npa-", line))
        ]
    sets = subprocess.run(
        ["ip", "netns", "exec", node.netns, "ipset", "save"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    # (a set's hash seed, initval, is random at each creation; member counters count traffic)
    out["ipset"] = sorted(
        re.sub(r" initval 0x[0-9a-f]+| packets \d+ bytes \d+", "", line)
        for line in sets.splitlines()
        if " npa-" in line
    )
    return out


def leftovers(
    after: dict[str, dict[str, list[str]]], fresh: dict[str, dict[str, list[str]]]
) -> dict[str, dict[str, list[str]]]:
    """Per node and listing: what `after` has that a fresh start does not."""
    return {
        node: extra
        for node in after
        if (extra := {k: sorted(set(v) - set(fresh[node][k])) for k, v in after[node].items()
                      if set(v) - set(fresh[node][k])})
    }  # fmt: skip


def cleanup(lab: RunningLab, node: NodeSpec) -> None:
    subprocess.run(
        ["ip", "netns", "exec", node.netns, sys.executable, "-m", "agent", "cleanup"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip


def roll(lab: RunningLab, agents: Agents, *, to: Release, state: ClusterState, rv: int) -> Prober:
    """Replace every node's agent with `to`'s, one node at a time, probing throughout."""
    with Prober(lab, state) as prober:
        time.sleep(SETTLE)
        for node in lab.topo.nodes:
            agents.stop(node)
            agents.start(node, to)
            agents.wait_ready(node, to.version, rv)
            time.sleep(SETTLE)
    return prober


def test_rolling_upgrade_from_0_1_0_and_back_without_a_hole(
    lab: RunningLab, release_0_1_0: Release
) -> None:
    lab.apply_files(DATA / "nine-pods.yaml", DATA / "upgrade-policies.yaml")
    snap = lab_probe.settled_snapshot(lab.client, lab.topo, timeout=30)
    agents = Agents(lab)
    try:
        for node in lab.topo.nodes:
            agents.start(node, release_0_1_0)
        for node in lab.topo.nodes:
            agents.wait_ready(node, "0.1.0", snap.resource_version)
        _, diff = lab.probe(list(CASES))
        assert diff.empty, f"0.1.0 before the upgrade:\n{format_diff(diff)}"

        up = roll(lab, agents, to=CURRENT, state=snap.state, rv=snap.resource_version)
        up.assert_no_hole(f"upgrade 0.1.0 -> {__version__}")
        upgraded = {node.name: kernel_objects(lab, node) for node in lab.topo.nodes}

        down = roll(lab, agents, to=release_0_1_0, state=snap.state, rv=snap.resource_version)
        down.assert_no_hole(f"rollback {__version__} -> 0.1.0")
        rolled_back = {node.name: kernel_objects(lab, node) for node in lab.topo.nodes}

        # What a fresh 0.1.0 agent programs, from clean nodes.
        agents.stop_all()
        for node in lab.topo.nodes:
            cleanup(lab, node)
            agents.start(node, release_0_1_0)
        for node in lab.topo.nodes:
            agents.wait_ready(node, "0.1.0", snap.resource_version)
        fresh_old = {node.name: kernel_objects(lab, node) for node in lab.topo.nodes}
        print("left after the rollback:", leftovers(rolled_back, fresh_old))
        assert rolled_back == fresh_old, "chains or sets of the new layout left after rollback"

        # What a fresh current agent programs, from clean nodes.
        agents.stop_all()
        for node in lab.topo.nodes:
            cleanup(lab, node)
            agents.start(node, CURRENT)
        for node in lab.topo.nodes:
            agents.wait_ready(node, __version__, snap.resource_version)
        fresh = {node.name: kernel_objects(lab, node) for node in lab.topo.nodes}
        print("left after the upgrade:", leftovers(upgraded, fresh))
        for name in fresh:
            changed = [k for k in fresh[name] if fresh[name][k] != fresh_old[name][k]]
            print(f"{name}: the layouts differ in {changed}")
        assert upgraded == fresh, "chains or sets of the old layout left after the upgrade"
    finally:
        agents.stop_all()
