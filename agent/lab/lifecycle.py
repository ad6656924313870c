"""`lab up` / `lab down` / `lab status` from the command line's side.

`up` clears whatever an earlier lab of the same name left behind, starts the
lab process (agent.lab.daemon) in its own session, and returns once it wrote
`ready` (or reports why it could not start, with the tail of its log). `down`
works from what is on disk and in /run/netns, never from a live daemon alone,
so it also cleans up after a crash: it stops the daemon, every process still
inside a lab namespace and every recorded agent, deletes every namespace named
`npa-lab-<name>-*` (the lab's links live only there) and removes the state
directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.lab import topology
from agent.lab.agents import stop_container
from agent.lab.state import (
    DEFAULT_ROOT,
    LabConfig,
    LabPaths,
    alive_pid,
    read_json,
    write_json,
)
from agent.lab.topology import LabError
from agent.sandbox import processes

UP_TIMEOUT = 120.0
REAL_UP_TIMEOUT = 300.0  # etcd, kube-apiserver, ... on a busy machine


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab creates network namespaces: run it as root")


@dataclass
class DownReport:
    processes: list[int] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    files: bool = False

    @property
    def empty(self) -> bool:
        return not (self.processes or self.namespaces or self.files)


def up(config: LabConfig, *, base: Path = DEFAULT_ROOT, timeout: float | None = None) -> LabPaths:
    """Start the lab in the background; returns its paths once it is ready."""
    if timeout is None:
        timeout = REAL_UP_TIMEOUT if config.control_plane == "real" else UP_TIMEOUT
    require_root()
    topology.check_name(config.name)
    config.topology()  # validates --nodes and friends before anything is touched
    down(config.name, base=base)
    paths = LabPaths.of(config.name, base)
    paths.logs.mkdir(parents=True, exist_ok=True)
    write_json(paths.config, config.to_json())
    with paths.lab_log.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent.lab.daemon", "--state-dir", str(paths.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    try:
        while not paths.ready.exists():
            code = proc.poll()
            if code is not None or time.monotonic() > deadline:
                raise LabError(f"lab {config.name!r} did not start: {_failure(paths, code)}")
            time.sleep(0.05)
    except BaseException:  # a failure or Ctrl-C: leave nothing half-built behind
        down(config.name, base=base)
        raise
    return paths


def _failure(paths: LabPaths, code: int | None) -> str:
    failed = read_json(paths.root / "failed")
    if failed and failed.get("error"):
        return str(failed["error"])
    tail = ""
    with contextlib.suppress(OSError):
        tail = "\n".join(paths.lab_log.read_text().splitlines()[-15:])
    what = "timed out" if code is None else f"the lab process exited with {code}"
    return f"{what}; last lines of {paths.lab_log}:\n{tail}"


def _terminate(pids: list[int], *, timeout: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    return processes.state(pid) not in (None, "Z")


def down(name: str, *, base: Path = DEFAULT_ROOT) -> DownReport:
    """Remove every trace of lab `name`: processes, namespaces (and so links), files."""
    require_root()
    topology.check_name(name)
    paths = LabPaths.of(name, base)
    report = DownReport()
    before = topology.lab_namespaces(name)
    daemon = alive_pid(paths.daemon_pid)
    if daemon is not None:
        report.processes.append(daemon)
        _terminate([daemon], timeout=20.0)
    data = read_json(paths.config)
    if data and data.get("image"):  # containers outlive a crashed lab process
        config = LabConfig.from_json(data)
        for node in config.topology().nodes:
            stop_container(config, paths, node.name)
    agents = [pid for f in paths.root.glob("agent-*.pid") if (pid := alive_pid(f)) is not None]
    inside = [pid for ns in topology.lab_namespaces(name) for pid in topology.netns_pids(ns)]
    strays = sorted(set(agents + inside) - {os.getpid()})
    if strays:
        report.processes += strays
        _terminate(strays, timeout=5.0)
    report.namespaces = sorted(set(before) | set(topology.destroy(name)))
    if paths.root.exists():
        shutil.rmtree(paths.root, ignore_errors=True)
        report.files = True
    return report


def running_config(name: str, *, base: Path = DEFAULT_ROOT) -> tuple[LabConfig, LabPaths]:
    """The config of a running lab; LabError if there is none."""
    paths = LabPaths.of(name, base)
    data = read_json(paths.config)
    if data is None or not paths.ready.exists() or alive_pid(paths.daemon_pid) is None:
        hint = " (it crashed: run `netpol-agent lab down` to clean up)" if data else ""
        raise LabError(f"lab {name!r} is not running{hint}; start it with `netpol-agent lab up`")
    return LabConfig.from_json(data), paths
