"""Processes named by pid *and* start time, so a recycled pid is never taken for the old one.

Both the sandbox's namespace owner files and the lab's pid files record
"<pid> <start time>" and later ask whether that very process still runs; both
read `/proc/<pid>/stat` the same way, here.

    start_time(pid) -> str | None     the process start time (clock ticks since boot)
    state(pid) -> str | None          the one-letter process state ("R", "S", "Z", ...)
    record(pid) -> str                "<pid> <start time>\\n", for a pid or owner file
    alive(record) -> int | None       the recorded pid if that very process still runs
"""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The comm field may contain spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


def state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if not fields else fields[0]


def record(pid: int) -> str:
    return f"{pid} {start_time(pid)}\n"


def alive(text: str) -> int | None:
    """The pid in a `record()` text if the process that wrote it still runs, else None."""
    try:
        pid_text, started = text.split()
        pid = int(pid_text)
    except ValueError:
        return None
    return pid if start_time(pid) == started else None
