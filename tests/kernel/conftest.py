"""Kernel-test fixtures: every test gets fresh `npa-` namespaces, removed even on failure.

`agent_ns` is a scratch namespace the test's dataplane code runs in (via
`inside(agent_ns)`), standing in for a node; `node` is a Flannel-like node
namespace with a `cni0` bridge to which tests add pods. Kernel tests never run
iptables/ipset in the test process's own namespace.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from agent.sandbox import netns
from agent.sandbox.topology import NodeSandbox, build_node

KERNEL_TOOLS = ("ip", "ipset", "iptables-legacy", "iptables-nft", "iptables-legacy-restore")


def _kernel_ready() -> str | None:
    if os.geteuid() != 0:
        return "kernel tests need root"
    missing = [tool for tool in KERNEL_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _kernel_ready()
    if reason is None:
        return
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def _sweep_stale_namespaces() -> None:
    netns.sweep_stale()


@pytest.fixture
def agent_ns() -> Iterator[str]:
    with netns.netns("agent") as name:
        yield name


@pytest.fixture
def node() -> Iterator[NodeSandbox]:
    with build_node(0) as sandbox:
        yield sandbox
