"""Revocation against the real kernel: conntrack entries in a node namespace, real flows.

- real packets: established TCP connections and UDP flows (IPv4 and IPv6) between
  pods of the Flannel-like node-0; a policy now forbids some; after the Revoker's
  pass those stop at once while the ones still allowed keep going;
- the conntrack level (entries made over ctnetlink, no packets): TCP, UDP and SCTP
  in both families, DNATed flows, and a table of 100,000 unrelated entries, whose
  revocation pass must only cost the filtered dumps of the changed pods (its time
  is printed; `pytest -s` shows it).
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
import time
from collections.abc import Iterator

import pytest

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.model import ClusterState, Family, NetworkPolicy, Node, Protocol
from agent.core.revoke import Flow
from agent.dataplane.conntrack import MAX_FILTERED_DUMPS, TCP_SYN_SENT, Conntrack
from agent.dataplane.ctscan import scan
from agent.node.revocation import Revoker
from agent.sandbox.setns import inside
from agent.sandbox.sockets import echo_ok, open_tcp
from tests.builders import make_ns, make_pod, make_policy, make_state
from tests.kernel.conntrack_kit import fill
from tests.kernel.harness import KernelNode, kernel_node

pytestmark = pytest.mark.kernel

TCP, UDP, SCTP = Protocol.TCP, Protocol.UDP, Protocol.SCTP
DENY_X = make_policy("x/deny", {"podSelector": {}})
Y_OPEN = make_policy("y/open", {"podSelector": {}, "ingress": [{}]})
NODE0 = Node("node-0", ("172.18.0.2",), ("10.244.0.0/24", "fd00:10:244::/64"))


@pytest.fixture
def knode() -> Iterator[KernelNode]:
    with kernel_node("legacy", "x", "y") as kn:
        yield kn


def udp_flow(src_ns: str, dst: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with inside(src_ns):
        sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.connect((dst, port))
    return sock


def udp_ok(sock: socket.socket, timeout: float = 0.5) -> bool:
    sock.settimeout(timeout)
    try:
        sock.send(b"npa-udp")
        return sock.recv(64) == b"npa-udp"
    except OSError:
        return False


def test_revoked_flows_stop_and_allowed_ones_keep_flowing(knode: KernelNode) -> None:
    a, b = knode.add_pod("x/a", "pod=a"), knode.add_pod("x/b", "pod=b")
    knode.add_pod("y/a", "pod=a")
    yb = knode.add_pod("y/b", "pod=b")
    box = knode.pod_sandboxes
    knode.apply(knode.state([]))
    tcp_cut = open_tcp(box["y/a"].netns, a.ips[0], 80)
    tcp_kept = open_tcp(box["x/a"].netns, yb.ips[0], 80)
    udp6_cut = udp_flow(box["y/b"].netns, b.ips[1], 81)
    udp_kept = udp_flow(box["y/a"].netns, yb.ips[0], 81)
    flows = (tcp_cut, tcp_kept, udp6_cut, udp_kept)
    try:
        assert echo_ok(tcp_cut) and echo_ok(tcp_kept)
        assert udp_ok(udp6_cut) and udp_ok(udp_kept)
        state = knode.state([DENY_X])
        ruleset = knode.compile(state)
        knode.apply_ruleset(ruleset)
        # without revocation the established flows still pass the new rules
        assert echo_ok(tcp_cut) and udp_ok(udp6_cut)
        with knode.agent():
            revoker = Revoker(node="node-0", table=Conntrack())  # first pass: every pod
            result = revoker.after_apply(state, ruleset)
        assert result is not None
        cut = {(f.protocol, f.reply_src, f.reply_sport) for f in result.revoked}
        assert cut == {(TCP, a.ips[0], 80), (UDP, b.ips[1], 81)}
        assert not echo_ok(tcp_cut, timeout=0.5)
        assert not udp_ok(udp6_cut)
        assert echo_ok(tcp_kept) and udp_ok(udp_kept)
    finally:
        for s in flows:
            s.close()


def test_a_revoked_connection_cannot_come_back_the_other_way(knode: KernelNode) -> None:
    """The server speaks next. Had the entry only been deleted, its segment would be a
    NEW packet x/a -> y/a, which the policies allow, conntrack would pick the connection
    up mid-stream, and the client's packets would ride that entry. The tombstone keeps
    the client's packets (its ACKs included) INVALID: the server's data is never
    acknowledged, nothing the client sends arrives."""
    a = knode.add_pod("x/a", "pod=a")
    knode.add_pod("y/a", "pod=a")
    box = knode.pod_sandboxes
    with inside(box["x/a"].netns):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((a.ips[0], 9000))
    listener.listen(1)
    knode.apply(knode.state([]))
    client = open_tcp(box["y/a"].netns, a.ips[0], 9000)
    server, _ = listener.accept()
    try:
        server.sendall(b"before")
        assert client.recv(16) == b"before"
        state = knode.state([DENY_X])
        ruleset = knode.compile(state)
        knode.apply_ruleset(ruleset)
        with knode.agent():
            result = Revoker(node="node-0", table=Conntrack()).after_apply(state, ruleset)
        assert result is not None and len(result.revoked) == 1
        server.sendall(b"after")
        client.sendall(b"from the client")
        time.sleep(1.5)  # several retransmissions
        assert unacknowledged(server) == len(b"after")
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.recv(64)
    finally:
        for sock in (client, server, listener):
            sock.close()


def unacknowledged(sock: socket.socket) -> int:
    """Bytes sent on a TCP socket that the peer has not acknowledged (SIOCOUTQ)."""
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    return int(struct.unpack("i", buf)[0])


def _state(*policies: NetworkPolicy) -> ClusterState:
    pods = [
        make_pod("x/a", "pod=a", ip=("10.244.0.10", "fd00:10:244::a")),
        make_pod("x/b", "pod=b", ip=("10.244.0.11", "fd00:10:244::b")),
        make_pod("y/a", "pod=a", ip=("10.244.0.12", "fd00:10:244::c")),
        make_pod("y/c", "pod=c", ip=("10.244.1.10", "fd00:10:244:1::a"), node="node-1"),
    ]
    return make_state(make_ns("x", "ns=x"), make_ns("y", "ns=y"), NODE0, *pods, *policies)


ENTRIES = (
    Flow(TCP, "10.244.0.12", 40001, "10.244.0.10", 80, "10.244.0.10", 80),  # y/a -> x/a: cut
    Flow(UDP, "10.244.1.10", 40002, "10.244.0.11", 53, "10.244.0.11", 53),  # y/c -> x/b: cut
    Flow(SCTP, "10.244.1.10", 40003, "10.244.0.10", 9, "10.244.0.10", 9),  # y/c -> x/a: cut
    Flow(UDP, "fd00:10:244:1::a", 40004, "fd00:10:244::b", 53, "fd00:10:244::b", 53),  # cut
    Flow(SCTP, "fd00:10:244::c", 40005, "fd00:10:244::a", 9, "fd00:10:244::a", 9),  # cut
    Flow(TCP, "10.244.0.12", 40006, "10.96.0.10", 443, "10.244.0.10", 8443),  # via a Service
    Flow(TCP, "10.244.0.10", 40007, "10.244.1.10", 80, "10.244.1.10", 80),  # x egress: kept
    Flow(UDP, "fd00:10:244::a", 40008, "fd00:10:244::c", 53, "fd00:10:244::c", 53),  # kept
    Flow(SCTP, "10.244.0.11", 40009, "10.244.0.12", 9, "10.244.0.12", 9),  # to y: kept
    Flow(TCP, "172.18.0.2", 40010, "10.244.0.10", 80, "10.244.0.10", 80),  # node: kept
)
CUT = ENTRIES[:6]


def test_the_conntrack_level_both_families_tcp_udp_sctp_and_dnat(agent_ns: str) -> None:
    before, after = _state(Y_OPEN), _state(Y_OPEN, DENY_X)
    options = CompileOptions()
    with inside(agent_ns):
        ct = Conntrack()
        for entry in ENTRIES:
            ct.add(entry)
        revoker = Revoker(node="node-0", table=ct)
        first = revoker.after_apply(before, compile_ruleset(before, node="node-0", options=options))
        assert first is not None and first.revoked == ()
        assert first.checked == len(ENTRIES)
        result = revoker.after_apply(after, compile_ruleset(after, node="node-0", options=options))
        left = set(ct.all_flows(Family.V4)) | set(ct.all_flows(Family.V6))
        states = {f: ct.tcp_state(f) for f in ENTRIES if f.protocol is TCP}
        ct.close()
    assert result is not None
    assert set(result.revoked) == set(CUT)
    # UDP and SCTP entries are deleted; TCP ones stay as tombstones in SYN_SENT
    assert left == set(ENTRIES) - {f for f in CUT if f.protocol is not TCP}
    assert {f: s for f, s in states.items()} == {
        f: (TCP_SYN_SENT if f in CUT else 3) for f in states
    }
    assert "10.244.0.12" not in result.changed  # y/a's view did not change


def test_one_unfiltered_dump_finds_what_the_filtered_dumps_find(agent_ns: str) -> None:
    addresses = {"10.244.0.10", "10.244.0.11", "fd00:10:244::a", "fd00:10:244::c"}
    with inside(agent_ns):
        ct = Conntrack()
        for entry in ENTRIES:
            ct.add(entry)
        filtered = set(ct.flows(addresses))
        scanned = set(scan(addresses))
        many = {f"10.244.9.{i}" for i in range(MAX_FILTERED_DUMPS)} | addresses
        by_scan = set(ct.flows(many))  # past MAX_FILTERED_DUMPS addresses: one scan
        ct.close()
    assert by_scan == filtered
    assert scanned == filtered
    assert {f for f in ENTRIES if f.src in addresses or f.reply_src in addresses} == filtered


def test_a_table_of_100000_unrelated_entries(agent_ns: str) -> None:
    """The pass is right whatever the table holds; its cost (printed, `pytest -s`) is one
    read of the whole table past MAX_FILTERED_DUMPS changed addresses, else a filtered dump
    per changed address and side."""
    before, after = _state(), _state(DENY_X)
    options = CompileOptions()
    with inside(agent_ns):
        ct = Conntrack()
        start = time.monotonic()
        fill(100_000)
        filled = time.monotonic() - start
        for entry in ENTRIES:
            ct.add(entry)
        revoker = Revoker(node="node-0", table=ct)
        revoker.after_apply(before, compile_ruleset(before, node="node-0", options=options))
        result = revoker.after_apply(after, compile_ruleset(after, node="node-0", options=options))
        with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
            count = int(f.read())
        ct.close()
    assert result is not None
    assert set(result.revoked) == set(CUT)
    assert count == 100_000 + len(ENTRIES) - len([f for f in CUT if f.protocol is not TCP])
    with inside(agent_ns):
        start = time.monotonic()
        scanned = scan({"10.244.0.10", "10.244.0.11", "10.244.0.12"})
        scan_seconds = time.monotonic() - start
        start = time.monotonic()
        one = Conntrack().flows({"10.244.0.12"})
        filtered_seconds = time.monotonic() - start
    assert {f.src for f in one} | {f.reply_src for f in one} >= {"10.244.0.12"}
    gone = {f for f in CUT if f.protocol is not TCP}
    assert set(scanned) == {f for f in ENTRIES if f.family is Family.V4} - gone
    print(
        f"\none unfiltered dump of 100,000 + entries (scan): {scan_seconds * 1000:.0f} ms"
        f"\nthe two filtered dumps of one address: {filtered_seconds * 1000:.0f} ms"
        f"\n100,000 unrelated entries (made in {filled:.2f}s): revocation pass "
        f"{result.seconds * 1000:.0f} ms for {len(result.changed)} changed addresses, "
        f"{result.checked} entries checked, {len(result.revoked)} deleted"
    )
