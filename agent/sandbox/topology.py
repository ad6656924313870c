"""Flannel-like node topologies in scratch namespaces: a node with a `cni0` bridge and pods.

The address plan is the one in tests/conftest.py: node i has pod CIDRs
10.244.<i>.0/24 and fd00:10:244:<i>::/64, the bridge gateway is .1 / ::1 and
pods get .10 / ::a upwards. Links are created directly inside the namespaces
(`ip -n NS link add ... peer ... netns OTHER`), never in the caller's namespace.

Public API (the lab builds multi-node clusters on these):

    add_veth(ns_a, dev_a, ns_b, dev_b)        a veth pair between two namespaces
    add_address(ns, dev, cidr)                an address (IPv6 without DAD)
    sysctl(ns, key, value)                    set a sysctl inside ns
    build_node(index=0, purpose="node") -> NodeSandbox
        a node namespace with `cni0` (gateway addresses), forwarding on and the
        br_netfilter sysctls set to 1 inside it
    NodeSandbox.add_pod(name) -> PodSandbox   a pod namespace on a veth into cni0 with
        its next IPv4 + IPv6 addresses and default routes via the gateway
    NodeSandbox.close()                       remove the node and all its pods
    NodeSandbox is also a context manager (removal guaranteed).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from types import TracebackType

from agent.sandbox import netns

BRIDGE = "cni0"


def add_veth(ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
    """Create a veth pair `dev_a`@ns_a <-> `dev_b`@ns_b and bring both ends up."""
    _ip(ns_a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
    _ip(ns_a, "link", "set", dev_a, "up")
    _ip(ns_b, "link", "set", dev_b, "up")


def add_address(ns: str, dev: str, cidr: str) -> None:
    """Add an address to a device; IPv6 addresses skip duplicate address detection."""
    extra = ["nodad"] if ":" in cidr else []
    _ip(ns, "addr", "add", cidr, "dev", dev, *extra)


def sysctl(ns: str, key: str, value: str) -> None:
    netns.run(ns, "sysctl", "-q", "-w", f"{key}={value}")


def _ip(ns: str, *args: str) -> None:
    netns.ip(ns, *args)


def node_cidrs(index: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    """The pod CIDRs of node `index` from the address plan."""
    return (
        ipaddress.IPv4Network(f"10.244.{index}.0/24"),
        ipaddress.IPv6Network(f"fd00:10:244:{index:x}::/64"),
    )


@dataclass(frozen=True, slots=True)
class PodSandbox:
    """A pod: its namespace, its addresses (v4, v6) and the veth name on the node side."""

    name: str
    netns: str
    ipv4: str
    ipv6: str
    host_veth: str

    @property
    def ips(self) -> tuple[str, str]:
        return (self.ipv4, self.ipv6)


@dataclass(slots=True)
class NodeSandbox:
    """A node namespace with a `cni0` bridge; pods are added with `add_pod`."""

    index: int
    netns: str
    gateway4: str
    gateway6: str
    pods: list[PodSandbox] = field(default_factory=list)

    @property
    def gateways(self) -> tuple[str, str]:
        return (self.gateway4, self.gateway6)

    def add_pod(self, name: str) -> PodSandbox:
        """A new pod namespace bridged into cni0 with the next free addresses."""
        n = len(self.pods)
        v4, v6 = node_cidrs(self.index)
        ipv4 = str(v4.network_address + 10 + n)
        ipv6 = str(v6.network_address + 10 + n)
        pod_ns = netns.create("pod")
        host_veth = f"veth{n}"
        try:
            add_veth(self.netns, host_veth, pod_ns, "eth0")
            _ip(self.netns, "link", "set", host_veth, "master", BRIDGE)
            add_address(pod_ns, "eth0", f"{ipv4}/{v4.prefixlen}")
            add_address(pod_ns, "eth0", f"{ipv6}/{v6.prefixlen}")
            _ip(pod_ns, "route", "add", "default", "via", self.gateway4, "dev", "eth0")
            _ip(pod_ns, "-6", "route", "add", "default", "via", self.gateway6, "dev", "eth0")
        except BaseException:
            netns.remove(pod_ns)
            raise
        pod = PodSandbox(name=name, netns=pod_ns, ipv4=ipv4, ipv6=ipv6, host_veth=host_veth)
        self.pods.append(pod)
        return pod

    def close(self) -> None:
        for pod in self.pods:
            netns.remove(pod.netns)
        self.pods.clear()
        netns.remove(self.netns)

    def __enter__(self) -> NodeSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def build_node(index: int = 0, *, purpose: str = "node") -> NodeSandbox:
    """A node namespace with `cni0`, its gateway addresses and bridge netfilter on."""
    v4, v6 = node_cidrs(index)
    gw4 = str(v4.network_address + 1)
    gw6 = str(v6.network_address + 1)
    name = netns.create(purpose)
    try:
        _ip(name, "link", "add", BRIDGE, "type", "bridge")
        _ip(name, "link", "set", BRIDGE, "up")
        add_address(name, BRIDGE, f"{gw4}/{v4.prefixlen}")
        add_address(name, BRIDGE, f"{gw6}/{v6.prefixlen}")
        for key in (
            "net.bridge.bridge-nf-call-iptables",
            "net.bridge.bridge-nf-call-ip6tables",
            "net.ipv4.ip_forward",
            "net.ipv6.conf.all.forwarding",
        ):
            sysctl(name, key, "1")
    except BaseException:
        netns.remove(name)
        raise
    return NodeSandbox(index=index, netns=name, gateway4=gw4, gateway6=gw6)
