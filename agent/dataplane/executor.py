"""Feed rendered payloads to the kernel: `ipset restore` and `iptables-restore --noflush --wait`.

Each call is one transaction of the kernel tool (iptables-restore commits a
table atomically). On failure we raise ApplyError quoting the tool's complaint
and the payload lines around the line it names (three either side, like
kube-proxy's ExtractLines), so an operator sees what the kernel refused.

    PayloadExecutor                                the seam (Protocol) both executors implement
    Executor(backend).ipset(text)                  ipset restore < text
    Executor(backend).iptables(family, payload)    {ip,ip6}tables-<mode>-restore --noflush --wait
    describe_failure(command, stderr, payload) -> str
    read_command(argv) -> str                      a read-only query (DataplaneError on failure)
    read_many(argvs) -> list[str | None]           several queries at once (None: it failed)
    failed_line(stderr) -> int | None              the 1-based payload line a tool complains about
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from typing import Protocol

from agent.core.errors import ApplyError, DataplaneError
from agent.core.model import Family
from agent.dataplane.backend import Backend

CONTEXT_LINES = 3
_LINE_PATTERNS = (
    re.compile(r"Error occurred at line: (\d+)"),
    re.compile(r"line (\d+) failed"),
    re.compile(r"Error in line (\d+)"),
    re.compile(r"\bline:? (\d+)"),
)


def failed_line(stderr: str) -> int | None:
    """The 1-based payload line number an iptables-restore or ipset error names."""
    for pattern in _LINE_PATTERNS:
        match = pattern.search(stderr)
        if match:
            return int(match.group(1))
    return None


def extract_lines(payload: str, line: int, context: int = CONTEXT_LINES) -> str:
    """Lines `line`-context .. `line`+context of payload, numbered, the named one marked."""
    lines = payload.splitlines()
    first = max(1, line - context)
    last = min(len(lines), line + context)
    return "\n".join(
        f"{'>>' if n == line else '  '} {n:5d}  {lines[n - 1]}" for n in range(first, last + 1)
    )


def describe_failure(command: Sequence[str], stderr: str, payload: str) -> str:
    complaint = stderr.strip() or "(no message)"
    text = f"{' '.join(command)} failed: {complaint}"
    line = failed_line(stderr)
    if line is not None and payload:
        text += f"\npayload around line {line}:\n{extract_lines(payload, line)}"
    return text


def run_restore(command: Sequence[str], payload: str) -> None:
    """Run a restore-style command with `payload` on stdin; ApplyError on failure."""
    try:
        proc = subprocess.run(
            list(command), input=payload, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise ApplyError(f"{command[0]}: {exc}") from exc
    if proc.returncode != 0:
        raise ApplyError(describe_failure(command, proc.stderr, payload))


class PayloadExecutor(Protocol):
    """The seam between the Applier and the kernel: two kinds of transaction.

    Implemented by Executor (restore binaries) and PyIptcExecutor (libiptc).
    """

    def ipset(self, text: str) -> None: ...

    def iptables(self, family: Family, payload: str) -> None: ...


def ipset_restore(text: str) -> None:
    """`ipset restore` with `text` on stdin (nothing to do for empty text)."""
    if text.strip():
        run_restore(["ipset", "restore"], text)


class Executor:
    """Runs payloads through the kernel tools of one backend (iptables-restore flavours)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def ipset(self, text: str) -> None:
        ipset_restore(text)

    def iptables(self, family: Family, payload: str) -> None:
        if payload.strip():
            run_restore([self.backend.restore(family), "--noflush", "--wait"], payload)


def read_command(argv: Sequence[str]) -> str:
    """Run a read-only kernel query and return its stdout; DataplaneError on failure."""
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DataplaneError(f"{argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        raise DataplaneError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def read_many(argvs: Sequence[Sequence[str]]) -> list[str | None]:
    """Run read-only queries concurrently; each one's stdout, or None where it failed."""
    procs: list[subprocess.Popen[str] | None] = []
    for argv in argvs:
        try:
            procs.append(
                subprocess.Popen(
                    list(argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
                )
            )
        except OSError:
            procs.append(None)
    out: list[str | None] = []
    for proc in procs:
        if proc is None:
            out.append(None)
            continue
        stdout, _ = proc.communicate()
        out.append(stdout if proc.returncode == 0 else None)
    return out
