"""Host checks: br_netfilter sysctls are set where allowed and fail loudly where not."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import HostCheckError
from agent.dataplane.hostcheck import check_host
from agent.sandbox import netns
from agent.sandbox.setns import inside

pytestmark = pytest.mark.kernel


def test_sets_bridge_sysctls_in_its_own_namespace(agent_ns: str) -> None:
    netns.run(agent_ns, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=0")
    netns.run(agent_ns, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-ip6tables=0")
    with inside(agent_ns):
        changes = check_host(load_module=False)
        assert changes == (
            "set net.bridge.bridge-nf-call-iptables=1 (was 0)",
            "set net.bridge.bridge-nf-call-ip6tables=1 (was 0)",
        )
        assert check_host(load_module=False) == ()
    out = netns.run(agent_ns, "sysctl", "-n", "net.bridge.bridge-nf-call-ip6tables").stdout
    assert out.strip() == "1"


def test_missing_br_netfilter_is_reported(tmp_path: Path) -> None:
    with pytest.raises(HostCheckError, match=r"br_netfilter is not loaded.*modprobe br_netfilter"):
        check_host(proc_sys=tmp_path, load_module=False)


def test_unwritable_sysctl_is_reported_with_the_reason(tmp_path: Path) -> None:
    bridge = tmp_path / "net" / "bridge"
    bridge.mkdir(parents=True)
    (bridge / "bridge-nf-call-iptables").write_text("1\n")
    # A file that reads fine but refuses writes even to root, like a read-only /proc/sys.
    (bridge / "bridge-nf-call-ip6tables").symlink_to("/proc/version")
    with pytest.raises(
        HostCheckError, match=r"bridge-nf-call-ip6tables is Linux.*setting it failed"
    ):
        check_host(proc_sys=tmp_path, load_module=False)
