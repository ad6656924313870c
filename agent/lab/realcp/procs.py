"""Upstream programs as child processes inside lab namespaces, each with a log and a pid file.

`ip netns exec <ns> <program> ...` enters the namespace and execs the program
(same pid), so the pid file names the program itself and `lab down`, which
stops every process inside `npa-lab-<name>-*`, finds it even after the lab
process died. Each program's command line is kept in `procs/<name>.json` so
that a test can stop one (the API server for ten seconds, say) and start it
again exactly as it was.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.lab.state import alive_pid, write_pid
from agent.sandbox import processes

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    """One program to run: `name` names its log, pid and command files."""

    name: str
    netns: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *self.argv]

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "netns": self.netns,
            "argv": list(self.argv),
            "env": dict(self.env),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ProgramSpec:
        argv = data.get("argv")
        env = data.get("env")
        return cls(
            name=str(data["name"]),
            netns=str(data["netns"]),
            argv=tuple(str(a) for a in argv) if isinstance(argv, list) else (),
            env={str(k): str(v) for k, v in env.items()} if isinstance(env, dict) else {},
        )


class Programs:
    """Starts and stops the lab's upstream programs; files under `<root>/procs` and logs/."""

    def __init__(self, root: Path, logs: Path) -> None:
        self.dir = root / "procs"
        self.logs = logs
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def log_path(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def start(self, spec: ProgramSpec) -> int:
        (self.dir / f"{spec.name}.json").write_text(json.dumps(spec.to_json(), indent=2) + "\n")
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **spec.env}
        with self.log_path(spec.name).open("ab") as out:
            proc = subprocess.Popen(
                spec.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
            )
        self._children[spec.name] = proc
        write_pid(self.pid_path(spec.name), proc.pid)
        log.info("started %s (pid %d) in %s", spec.name, proc.pid, spec.netns)
        return proc.pid

    def spec(self, name: str) -> ProgramSpec:
        return ProgramSpec.from_json(json.loads((self.dir / f"{name}.json").read_text()))

    def pid(self, name: str) -> int | None:
        return alive_pid(self.pid_path(name))

    def exited(self, name: str) -> int | None:
        """The exit code if this process's child `name` has ended, else None."""
        proc = self._children.get(name)
        return None if proc is None else proc.poll()

    def stop(self, name: str, *, timeout: float = 10.0) -> None:
        pid = self.pid(name)
        if pid is not None:
            terminate(pid, timeout=timeout)
        proc = self._children.pop(name, None)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        self.pid_path(name).unlink(missing_ok=True)

    def stop_all(self, *, timeout: float = 2.0) -> None:
        """Stop every program at once; what is still running after `timeout` is killed
        (the lab's state is thrown away, and kube-apiserver waits >10 s for a gone etcd)."""
        names = list(self._children)
        pids = [pid for name in names if (pid := self.pid(name)) is not None]
        terminate_all(pids, timeout=timeout)
        for name in names:
            self.stop(name, timeout=0.0)


def terminate(pid: int, *, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    terminate_all([pid], timeout=timeout)


def terminate_all(pids: Sequence[int], *, timeout: float) -> None:
    """SIGTERM to all, then SIGKILL to those still running after `timeout` seconds."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive:
        alive = [pid for pid in alive if processes.state(pid) not in (None, "Z")]
        if not alive or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
