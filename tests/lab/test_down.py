"""`lab down` leaves no namespace, link, process or file behind, also after a crash,
and `lab up` clears what a crashed lab of the same name left."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from pathlib import Path

import pytest

from agent.lab import lifecycle, topology
from agent.lab.state import LabConfig, LabPaths, alive_pid
from agent.sandbox import processes

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def lab_pids(paths: LabPaths, name: str) -> set[int]:
    pids = {alive_pid(paths.daemon_pid)} | {alive_pid(f) for f in paths.root.glob("agent-*.pid")}
    for ns in topology.lab_namespaces(name):
        pids |= set(topology.netns_pids(ns))
    return {p for p in pids if p is not None}


def gone(pid: int) -> bool:
    return processes.state(pid) in (None, "Z")


def test_down_after_a_crash_and_up_over_leftovers(tmp_path: Path) -> None:
    links = host_links()
    config = LabConfig(name=f"t{secrets.token_hex(4)}", nodes=2)
    try:
        paths = lifecycle.up(config, base=tmp_path)
        crashed = lab_pids(paths, config.name)
        daemon = alive_pid(paths.daemon_pid)
        assert daemon is not None and len(crashed) == 3  # the lab process and two agents
        os.kill(daemon, signal.SIGKILL)  # a crash: agents, namespaces and files stay
        assert topology.lab_namespaces(config.name)

        paths = lifecycle.up(config, base=tmp_path)  # clears the leftovers first
        assert all(gone(p) for p in crashed)
        running = lab_pids(paths, config.name)
        assert len(running) == 3 and not running & crashed
        daemon = alive_pid(paths.daemon_pid)
        assert daemon is not None
        os.kill(daemon, signal.SIGKILL)
    finally:
        report = lifecycle.down(config.name, base=tmp_path)
    assert report.namespaces and report.processes
    assert topology.lab_namespaces(config.name) == []
    assert all(gone(p) for p in running)
    assert not (tmp_path / config.name).exists()
    assert host_links() == links
    assert lifecycle.down(config.name, base=tmp_path).empty
