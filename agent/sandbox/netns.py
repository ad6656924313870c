"""Scratch network namespaces: unique names, creation, running commands inside, guaranteed removal.

Every namespace we create is named `npa-<purpose>-<8 hex>` and is recorded in an
owner file (`/run/npa-sandbox/<name>`: pid and process start time of the
creator), so that a later run can sweep namespaces whose creator died without
cleaning up (`sweep_stale()`), and never touches a namespace somebody else owns.

Public functions:

    new_name(purpose) -> str                  a fresh `npa-<purpose>-<hex>` name
    create(purpose) -> str                    create a namespace (loopback up), return its name
    remove(name)                              delete it (idempotent) and its owner record
    exists(name) -> bool
    netns(purpose) -> context manager         create, yield the name, always remove
    run(name, *argv, input=None, check=True)  run a command inside (`ip netns exec`)
    ip(name, *args) -> str                    run `ip -n name ARGS` (raises SandboxError)
    sweep_stale() -> list[str]                remove `npa-` namespaces whose creator is dead

Namespaces created here are also removed at interpreter exit (atexit), even if
the caller forgot. Nothing in this module ever runs a command in the caller's
own namespace except `ip netns add/del` themselves.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import secrets
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from agent.sandbox import processes

NETNS_DIR = Path("/run/netns")
OWNER_DIR = Path("/run/npa-sandbox")
PREFIX = "npa-"
_PURPOSE_RE = re.compile(r"^[a-z0-9]{1,12}$")

_lock = threading.Lock()
_created: set[str] = set()


class SandboxError(RuntimeError):
    """A sandbox command failed; the message carries the command and its stderr."""


def new_name(purpose: str) -> str:
    """A fresh namespace name `npa-<purpose>-<8 hex>`; purpose is 1-12 of [a-z0-9]."""
    if not _PURPOSE_RE.match(purpose):
        raise ValueError(f"namespace purpose must match {_PURPOSE_RE.pattern}: {purpose!r}")
    return f"{PREFIX}{purpose}-{secrets.token_hex(4)}"


def _check(argv: Sequence[str], *, input: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SandboxError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ip(name: str, *args: str) -> str:
    """Run `ip -n <name> ARGS` and return its output; raise SandboxError on failure."""
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to configure a namespace not named {PREFIX}*: {name!r}")
    return _check(["ip", "-n", name, *args])


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def create(purpose: str) -> str:
    """Create a namespace named `npa-<purpose>-<hex>`, bring its loopback up, return the name."""
    name = new_name(purpose)
    OWNER_DIR.mkdir(parents=True, exist_ok=True)
    # Record the owner before the namespace exists: a crash in between leaves
    # only a harmless owner file, never an ownerless namespace.
    (OWNER_DIR / name).write_text(processes.record(os.getpid()))
    with _lock:
        _created.add(name)
    try:
        _check(["ip", "netns", "add", name])
        _check(["ip", "-n", name, "link", "set", "lo", "up"])
    except BaseException:
        remove(name)
        raise
    return name


def remove(name: str) -> None:
    """Delete a namespace we created (idempotent). Its links and sockets go with it."""
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to remove a namespace not named {PREFIX}*: {name!r}")
    if exists(name):
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    with contextlib.suppress(FileNotFoundError):
        (OWNER_DIR / name).unlink()
    with _lock:
        _created.discard(name)


@contextlib.contextmanager
def netns(purpose: str) -> Iterator[str]:
    """Create a namespace for the duration of a `with` block; removed even on error."""
    name = create(purpose)
    try:
        yield name
    finally:
        remove(name)


def run(
    name: str,
    *argv: str,
    input: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside namespace `name` (via `ip netns exec`); raise SandboxError on failure."""
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to run in a namespace not named {PREFIX}*: {name!r}")
    full = ["ip", "netns", "exec", name, *argv]
    proc = subprocess.run(full, input=input, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SandboxError(f"{' '.join(full)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def sweep_stale() -> list[str]:
    """Remove `npa-` namespaces whose recorded creator process is gone; return their names.

    Namespaces without an owner record are left alone (somebody else's).
    """
    removed: list[str] = []
    if not OWNER_DIR.is_dir():
        return removed
    for record in sorted(OWNER_DIR.iterdir()):
        name = record.name
        if not name.startswith(PREFIX):
            continue
        try:
            alive = processes.alive(record.read_text()) is not None
        except OSError:
            continue
        if not alive:
            if exists(name):
                removed.append(name)
            remove(name)
    return removed


@atexit.register
def _remove_all_created() -> None:
    with _lock:
        names = sorted(_created)
    for name in names:
        remove(name)
