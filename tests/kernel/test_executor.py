"""Executors and backends on hand-written payloads: detection, failures, python-iptables parity."""

from __future__ import annotations

import subprocess

import pytest

from agent.core.errors import ApplyError, DataplaneError
from agent.core.model import Family
from agent.dataplane.backend import detect_mode, select_backend
from agent.sandbox.setns import inside
from tests.kernel.kit import BACKEND_NAMES, FAMILIES, assert_not_host, executor, saved

pytestmark = pytest.mark.kernel

IPSETS = {
    Family.V4: "create npa-s1-4 hash:ip family inet\nadd npa-s1-4 10.244.0.10\n"
    "create npa-b1-4 hash:net family inet\nadd npa-b1-4 10.0.0.0/8\nadd npa-b1-4 10.1.0.0/16 nomatch\n",
    Family.V6: "create npa-s1-6 hash:ip family inet6\nadd npa-s1-6 fd00:10:244::a\n"
    "create npa-b1-6 hash:net family inet6\nadd npa-b1-6 2001:db8::/32\n"
    "add npa-b1-6 2001:db8:1::/48 nomatch\n",
}


def payload(family: Family, *, pod_rule: str = "") -> str:
    v = "4" if family is Family.V4 else "6"
    pod = "10.244.0.10/32" if family is Family.V4 else "fd00:10:244::a/128"
    reject = "icmp-port-unreachable" if family is Family.V4 else "icmp6-port-unreachable"
    icmp = (
        "-p icmp -m icmp --icmp-type 8 -j ACCEPT"
        if family is Family.V4
        else "-p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT"
    )
    return f"""*filter
:NPA-FORWARD - [0:0]
:NPA-POD-ABC - [0:0]
:NPA-DROP-INGRESS - [0:0]
-A NPA-FORWARD {icmp}
-A NPA-FORWARD -m conntrack --ctstate INVALID -j DROP
-A NPA-FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A NPA-FORWARD -d {pod} -m comment --comment "x/a" -j NPA-POD-ABC
-A NPA-POD-ABC -p tcp -m tcp --dport 80:81 -m set --match-set npa-s1-{v} src -m comment --comment "x/allow-a" -j MARK --set-xmark 0x200000/0x200000
-A NPA-POD-ABC -p udp -m udp --dport 53 -m set ! --match-set npa-b1-{v} src -j MARK --set-xmark 0x200000/0x200000
-A NPA-POD-ABC -p sctp -m sctp --dport 80 -j RETURN
{pod_rule or "-A NPA-POD-ABC -p tcp -m multiport --dports 80,443 -j ACCEPT"}
-A NPA-POD-ABC -m mark --mark 0x200000/0x200000 -j ACCEPT
-A NPA-POD-ABC -j NPA-DROP-INGRESS
-A NPA-DROP-INGRESS -d {pod} -m comment --comment "x/a" -j DROP
-A NPA-DROP-INGRESS -j REJECT --reject-with {reject}
COMMIT
"""


def test_detection_fresh_namespace_is_nft(agent_ns: str) -> None:
    with inside(agent_ns):
        assert detect_mode() == "nft"
        # detection only reads: it instantiated no legacy table
        with open("/proc/thread-self/net/ip_tables_names") as names:
            assert names.read() == ""


def test_detection_follows_the_rules_present(agent_ns: str) -> None:
    with inside(agent_ns):
        assert_not_host()
        subprocess.run(["iptables-legacy", "-A", "FORWARD", "-j", "ACCEPT"], check=True)
        assert detect_mode() == "legacy"
        assert select_backend("auto").restore(Family.V6) == "ip6tables-legacy-restore"
        subprocess.run(["iptables-nft", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"], check=True)
        assert detect_mode() == "nft"  # kubelet's hint wins over counting


def test_python_iptables_refuses_nft_hosts(agent_ns: str) -> None:
    with inside(agent_ns):
        subprocess.run(["iptables-nft", "-A", "FORWARD", "-j", "ACCEPT"], check=True)
        with pytest.raises(DataplaneError, match="legacy only"):
            select_backend("python-iptables")


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(Exception, match="unknown backend 'iptables'"):
        select_backend("iptables")


@pytest.mark.parametrize("name", BACKEND_NAMES)
@pytest.mark.parametrize("family", FAMILIES, ids=["v4", "v6"])
def test_failed_apply_keeps_previous_rules_and_quotes_the_line(
    agent_ns: str, name: str, family: Family
) -> None:
    with inside(agent_ns):
        ex = executor(name)
        ex.ipset(IPSETS[family])
        ex.iptables(family, payload(family))
        before = saved(ex.backend.mode, family)
        bad = payload(family, pod_rule="-A NPA-POD-ABC -p tcp --bogus-option 7 -j ACCEPT")
        with pytest.raises(ApplyError) as info:
            ex.iptables(family, bad)
        message = str(info.value)
        assert ">>    12  -A NPA-POD-ABC -p tcp --bogus-option 7 -j ACCEPT" in message
        assert "-A NPA-POD-ABC -p sctp -m sctp --dport 80 -j RETURN" in message  # context
        assert saved(ex.backend.mode, family) == before


@pytest.mark.parametrize("family", FAMILIES, ids=["v4", "v6"])
def test_python_iptables_writes_the_same_rules_as_restore(family: Family) -> None:
    from agent.sandbox import netns

    outputs = []
    for name in ("legacy", "python-iptables"):
        with netns.netns("agent") as ns, inside(ns):
            ex = executor(name)
            ex.ipset(IPSETS[family])
            ex.iptables(family, payload(family))
            ex.iptables(family, payload(family))  # re-applying is idempotent
            outputs.append(saved("legacy", family, "filter"))
    assert outputs[0] == outputs[1]
    assert "-A NPA-POD-ABC" in outputs[0]


def test_ipset_failure_quotes_the_line(agent_ns: str) -> None:
    with inside(agent_ns):
        ex = executor("nft")
        with pytest.raises(
            ApplyError, match=r"(?s)Error in line 2.*>>     2  add npa-x 1\.2\.3\.x"
        ):
            ex.ipset("create npa-x hash:ip\nadd npa-x 1.2.3.x\n")
