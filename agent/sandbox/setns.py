"""Move the calling thread into a network namespace for a `with` block (ctypes `setns`).

Python 3.11 has no `os.setns`, so we call libc's. `setns(CLONE_NEWNET)` acts on
the calling OS thread only, which lets one Python process open sockets in many
namespaces: a socket stays in the namespace it was created in, so it can be
served from any thread afterwards. Subprocesses started and `/proc/sys/net`
files opened inside the block belong to the target namespace too, which is how
tests run the dataplane "as an agent inside a node namespace".

Public functions:

    inside(name) -> context manager      the calling thread is in namespace `name`
    current_netns_id() -> int            inode of the calling thread's namespace
    netns_id(name) -> int                inode of a named namespace
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator

from agent.sandbox.netns import NETNS_DIR, PREFIX

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def current_netns_id() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def netns_id(name: str) -> int:
    return os.stat(NETNS_DIR / name).st_ino


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the body with the calling thread inside namespace `name`, then switch back."""
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to enter a namespace not named {PREFIX}*: {name!r}")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            if current_netns_id() != netns_id(name):
                raise OSError(f"setns into {name} did not take effect")
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)
