"""The lab's network: N node namespaces wired like a kind cluster running Flannel.

    npa-lab-<name>-net          br0 172.18.0.1/24  (the "docker network"; API server address)
      |  veth-n<i>  <->  eth0   172.18.0.<i+2>/24  (node underlay)
    npa-lab-<name>-n<i>         cni0 10.244.<i>.1/24 (pods' gateway), flannel.1 (VXLAN 1, :8472)
                                routes 10.244.<j>.0/24 via flannel.1 (or via 172.18.0.<j+2>)

Everything lives in namespaces whose names start with `npa-lab-<name>-`, so one
prefix finds (and removes) every trace of a lab, also after a crash: nothing is
linked to the host's own namespace. The plan is a pure value (`plan`,
`setup_commands`) so that the address plan is tested without a kernel; `build`
and `destroy` run it with `ip -batch`, one process per namespace.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

from agent.core.errors import InputError, NetpolError

NAME_RE = re.compile(r"^[a-z0-9]{1,12}$")
NETNS_DIR = "/run/netns"
VXLAN_PORT = 8472
VXLAN_MTU = 1450
API_IP = "172.18.0.1"
API_IP6 = "fd00:172:18::1"
OVERLAYS = ("vxlan", "host-gw")
# The real control plane's nodes: underlay only; flanneld and the CNI plugins build the rest.
FLANNELD = "flanneld"


class LabError(NetpolError):
    """The lab could not be built, reached or torn down."""


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One lab node: its namespace and its addresses (tests/conftest.py's plan)."""

    index: int
    name: str
    netns: str
    ip: str
    ip6: str
    pod_cidr: str
    pod_cidr6: str
    gateway: str
    gateway6: str
    vtep_mac: str

    def pod_ip(self, slot: int) -> str:
        """The IPv4 address of the pod in allocation slot 0, 1, ... (.10 upwards)."""
        return f"10.244.{self.index}.{10 + slot}"

    def pod_ip6(self, slot: int) -> str:
        return f"fd00:10:244:{self.index}::{10 + slot:x}"


@dataclass(frozen=True, slots=True)
class Topology:
    name: str
    nodes: tuple[NodeSpec, ...]
    net_netns: str
    ipv6: bool = False
    overlay: str = "vxlan"

    @property
    def prefix(self) -> str:
        return netns_prefix(self.name)

    @property
    def mtu(self) -> int:
        return 1500 if self.overlay == "host-gw" else VXLAN_MTU

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise LabError(f"lab {self.name!r} has no node {name!r}")


def node_labels(node: NodeSpec) -> dict[str, str]:
    """The well-known labels a kubelet puts on its Node object at registration."""
    return {
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    }


def netns_prefix(name: str) -> str:
    return f"npa-lab-{name}-"


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise InputError(f"lab name {name!r}: use 1-12 lowercase letters or digits")
    return name


def plan(name: str, *, nodes: int, ipv6: bool = False, overlay: str = "vxlan") -> Topology:
    """The lab's addresses and names; pure."""
    check_name(name)
    if not 1 <= nodes <= 64:
        raise InputError(f"--nodes {nodes}: a lab has 1 to 64 nodes")
    if overlay not in (*OVERLAYS, FLANNELD):
        raise InputError(f"overlay {overlay!r}: use one of {', '.join(OVERLAYS)}")
    prefix = netns_prefix(name)
    specs = tuple(
        NodeSpec(
            index=i,
            name=f"node-{i}",
            netns=f"{prefix}n{i}",
            ip=f"172.18.0.{i + 2}",
            ip6=f"fd00:172:18::{i + 2:x}",
            pod_cidr=f"10.244.{i}.0/24",
            pod_cidr6=f"fd00:10:244:{i:x}::/64",
            gateway=f"10.244.{i}.1",
            gateway6=f"fd00:10:244:{i:x}::1",
            vtep_mac=f"0e:6c:61:62:00:{i:02x}",
        )
        for i in range(nodes)
    )
    return Topology(name=name, nodes=specs, net_netns=f"{prefix}net", ipv6=ipv6, overlay=overlay)


def _node_sysctls(ipv6: bool) -> tuple[str, ...]:
    out = [
        "net.ipv4.ip_forward=1",
        "net.bridge.bridge-nf-call-iptables=1",
        "net.bridge.bridge-nf-call-ip6tables=1",
        "net.ipv4.conf.all.rp_filter=0",
        "net.ipv4.conf.default.rp_filter=0",
    ]
    if ipv6:
        out += [
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.accept_dad=0",
        ]
    else:
        out += ["net.ipv6.conf.default.disable_ipv6=1"]
    return tuple(out)


def underlay_commands(topo: Topology) -> list[str]:
    """`ip -batch` lines run inside the underlay namespace."""
    lines = [
        "link set lo up",
        "link add br0 type bridge",
        f"addr add {API_IP}/24 dev br0",
    ]
    if topo.ipv6:
        lines.append(f"addr add {API_IP6}/64 dev br0 nodad")
    lines.append("link set br0 up")
    for node in topo.nodes:
        lines += [
            f"link add veth-n{node.index} type veth peer name eth0 netns {node.netns}",
            f"link set veth-n{node.index} master br0 up",
        ]
    return lines


def node_commands(topo: Topology, node: NodeSpec) -> list[str]:
    """`ip -batch` lines run inside one node namespace (after the underlay's)."""
    mtu = topo.mtu
    lines = [
        "link set lo up",
        f"addr add {node.ip}/24 dev eth0",
        "link set eth0 up",
    ]
    if topo.overlay == FLANNELD:
        return lines
    lines += [
        "link add cni0 type bridge",
        f"link set cni0 mtu {mtu}",
        f"addr add {node.gateway}/24 dev cni0",
        "link set cni0 up",
    ]
    if topo.ipv6:
        lines += [
            f"addr add {node.ip6}/64 dev eth0 nodad",
            f"addr add {node.gateway6}/64 dev cni0 nodad",
        ]
    others = [n for n in topo.nodes if n.index != node.index]
    if topo.overlay == "vxlan":
        lines += [
            f"link add flannel.1 type vxlan id 1 local {node.ip} dev eth0 "
            f"dstport {VXLAN_PORT} nolearning",
            f"link set flannel.1 address {node.vtep_mac} mtu {mtu}",
            f"addr add 10.244.{node.index}.0/32 dev flannel.1",
            "link set flannel.1 up",
        ]
        for other in others:
            vtep = f"10.244.{other.index}.0"
            lines += [
                f"neigh add {vtep} lladdr {other.vtep_mac} dev flannel.1 nud permanent",
                f"route add {other.pod_cidr} via {vtep} dev flannel.1 onlink",
            ]
            if topo.ipv6:
                vtep6 = f"fd00:10:244:{other.index:x}::"
                lines += [
                    f"neigh add {vtep6} lladdr {other.vtep_mac} dev flannel.1 nud permanent",
                    f"route add {other.pod_cidr6} via {vtep6} dev flannel.1 onlink",
                ]
    else:
        for other in others:
            lines.append(f"route add {other.pod_cidr} via {other.ip}")
            if topo.ipv6:
                lines.append(f"route add {other.pod_cidr6} via {other.ip6}")
    return lines


def fdb_commands(topo: Topology, node: NodeSpec) -> list[str]:
    """`bridge -batch` lines: where each other node's VTEP lives on the underlay."""
    if topo.overlay != "vxlan":
        return []
    return [
        f"fdb append {other.vtep_mac} dev flannel.1 dst {other.ip}"
        for other in topo.nodes
        if other.index != node.index
    ]


def run(argv: Sequence[str], *, stdin: str | None = None) -> str:
    """Run a command; a failure becomes a LabError quoting its stderr."""
    try:
        proc = subprocess.run(
            list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{' '.join(argv)}: {exc}") from exc
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        raise LabError(f"{' '.join(argv)} failed: {detail}")
    return proc.stdout


def ip_batch(netns: str | None, lines: Sequence[str], *, tool: str = "ip") -> None:
    if not lines:
        return
    argv = [tool] + (["-n", netns] if netns else []) + ["-batch", "-"]
    run(argv, stdin="\n".join(lines) + "\n")


def add_netns(names: Sequence[str]) -> None:
    """`ip netns add` each name; retried, since concurrent `ip netns add`s elsewhere on
    the machine can race on the first mount of /run/netns."""
    for name in names:
        for attempt in range(3):
            try:
                run(["ip", "netns", "add", name])
                break
            except LabError:
                if os.path.exists(os.path.join(NETNS_DIR, name)) or attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))


def sysctl(netns: str, settings: Sequence[str]) -> None:
    run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *settings])


def build(topo: Topology) -> None:
    """Create the lab's namespaces and links. Call `destroy` first to clear leftovers."""
    ensure_br_netfilter()
    names = [topo.net_netns, *(n.netns for n in topo.nodes)]
    add_netns(names)
    for node in topo.nodes:
        # Before any link exists, so that the defaults (accept_dad, disable_ipv6) apply.
        sysctl(node.netns, _node_sysctls(topo.ipv6))
    ip_batch(topo.net_netns, underlay_commands(topo))
    for node in topo.nodes:
        ip_batch(node.netns, node_commands(topo, node))
        ip_batch(node.netns, fdb_commands(topo, node), tool="bridge")


def ensure_br_netfilter() -> None:
    """Node namespaces need bridged packets to traverse iptables (br_netfilter)."""
    if not os.path.exists("/proc/sys/net/bridge"):
        run(["modprobe", "br_netfilter"])


def lab_namespaces(name: str) -> list[str]:
    """Every network namespace that belongs to the lab `name` (by prefix)."""
    prefix = netns_prefix(name)
    try:
        entries = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(e for e in entries if e.startswith(prefix))


def netns_pids(netns: str) -> list[int]:
    """Processes running inside a namespace (`ip netns pids`)."""
    try:
        out = run(["ip", "netns", "pids", netns])
    except LabError:
        return []
    return [int(tok) for tok in out.split() if tok.isdigit()]


def destroy(name: str) -> list[str]:
    """Delete every namespace of the lab (links inside go with them); returns their names.

    Processes still inside a namespace are the caller's to stop first
    (`netns_pids`); deleting the name works either way.
    """
    names = lab_namespaces(name)
    if names:
        ip_batch(None, [f"netns del {n}" for n in names])
    return names
