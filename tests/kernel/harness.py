"""A Flannel-like node in namespaces with real pods, driven by the real Applier.

`KernelNode` builds node-0 (cni0, gateway 10.244.0.1 / fd00:10:244::1) with pod
namespaces serving TCP and UDP echo on ports 80 and 81, keeps their model Pods,
applies compiled rulesets from inside the node namespace (the agent's own
namespace) and compares what real packets do with the ReferenceEvaluator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.model import ClusterState, Family, Namespace, NetworkPolicy, Node, Pod, Protocol
from agent.core.ruleset import Ruleset
from agent.core.semantics import ReferenceEvaluator
from agent.dataplane.applier import Applier, ApplyResult
from agent.dataplane.backend import select_backend
from agent.dataplane.hostcheck import check_host
from agent.sandbox.netns import run
from agent.sandbox.setns import inside
from agent.sandbox.sockets import EchoServers, Probe, probe_many
from agent.sandbox.topology import NodeSandbox, PodSandbox, build_node
from tests.builders import make_ns, make_pod, make_state

PORTS = (80, 81)
PROTOCOLS = (Protocol.TCP, Protocol.UDP)
FAMILIES = (Family.V4, Family.V6)
NODE = Node("node-0", (), ("10.244.0.0/24", "fd00:10:244::/64"))
TIMEOUT = 0.4
RETRY_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class Check:
    """One probe and the reference's verdict for it."""

    label: str
    probe: Probe
    expected: bool


@dataclass
class KernelNode:
    sandbox: NodeSandbox
    servers: EchoServers
    applier: Applier
    namespaces: tuple[Namespace, ...]
    pods: dict[str, Pod] = field(default_factory=dict)
    pod_sandboxes: dict[str, PodSandbox] = field(default_factory=dict)
    options: CompileOptions = field(default_factory=CompileOptions)

    def add_pod(
        self, key: str, *labels: str, ports: tuple[tuple[int, str, str | None], ...] = ()
    ) -> Pod:
        box = self.sandbox.add_pod(key)
        for port in PORTS:
            self.servers.tcp(box.netns, port)
            self.servers.udp(box.netns, port)
        pod = make_pod(key, *labels, ip=(box.ipv4, box.ipv6), ports=ports)
        self.pods[key], self.pod_sandboxes[key] = pod, box
        return pod

    def state(self, policies: Iterable[NetworkPolicy]) -> ClusterState:
        return make_state(*self.namespaces, *self.pods.values(), *policies, NODE)

    def compile(self, state: ClusterState) -> Ruleset:
        return compile_ruleset(state, node=NODE.name, options=self.options)

    def apply(self, state: ClusterState) -> ApplyResult:
        return self.apply_ruleset(self.compile(state))

    def apply_ruleset(self, ruleset: Ruleset) -> ApplyResult:
        with inside(self.sandbox.netns):
            return self.applier.apply(ruleset)

    @contextlib.contextmanager
    def agent(self) -> Iterator[Applier]:
        """Run the body as the agent: inside the node namespace."""
        with inside(self.sandbox.netns):
            yield self.applier

    def checks(
        self,
        state: ClusterState,
        *,
        ports: Sequence[int] = PORTS,
        protocols: Sequence[Protocol] = PROTOCOLS,
        families: Sequence[Family] = FAMILIES,
    ) -> list[Check]:
        """Every pod pair (and node -> pod) on every port/protocol/family, with the verdict."""
        ref = ReferenceEvaluator(state)
        out: list[Check] = []
        for family in families:
            gateway = self.sandbox.gateway4 if family is Family.V4 else self.sandbox.gateway6
            for dst in self.pods.values():
                dst_ip = dst.ips_of(family)[0]
                sources: list[tuple[str, str, Pod | str]] = [
                    (f"node({gateway})", self.sandbox.netns, gateway)
                ]
                sources += [
                    (src.key, self.pod_sandboxes[src.key].netns, src)
                    for src in self.pods.values()
                    if src is not dst
                ]
                for label, src_ns, src in sources:
                    for port in ports:
                        for proto in protocols:
                            out.append(
                                Check(
                                    f"{label} -> {dst.key} {port}/{proto.value} IPv{int(family)}",
                                    Probe(src_ns, dst_ip, port, proto.value),
                                    ref.allowed(src, dst, port, proto, family=family),
                                )
                            )
        return out

    def mismatches(self, checks: Sequence[Check]) -> list[str]:
        """Checks whose real outcome differs from the reference (allowed ones retried once)."""
        got = probe_many([c.probe for c in checks], timeout=TIMEOUT)
        # A blocked probe only ever waits TIMEOUT; give allowed-but-slow ones a second chance.
        slow = [i for i, c in enumerate(checks) if c.expected and not got[i]]
        if slow:
            again = probe_many([checks[i].probe for i in slow], timeout=RETRY_TIMEOUT)
            for i, ok in zip(slow, again, strict=True):
                got[i] = ok
        return [
            f"{c.label}: kernel {'allows' if g else 'blocks'}, reference "
            f"{'allows' if c.expected else 'blocks'}"
            for c, g in zip(checks, got, strict=True)
            if g != c.expected
        ]

    def verify(self, state: ClusterState) -> None:
        # Verdicts are for NEW connections: flows the previous rules allowed stay
        # ESTABLISHED in conntrack (a policy change does not cut them), and a UDP
        # probe reusing such a flow's source port would ride that entry.
        run(self.sandbox.netns, "conntrack", "-F", check=False)
        problems = self.mismatches(self.checks(state))
        assert not problems, "\n".join(problems)


@contextlib.contextmanager
def kernel_node(backend: str, *namespaces: str) -> Iterator[KernelNode]:
    """node-0 with namespaces labelled ns=<name>; the agent checks the host, picks `backend`."""
    with build_node(0) as sandbox, EchoServers() as servers:
        with inside(sandbox.netns):
            check_host(load_module=False)
            applier = Applier(select_backend(backend))
        yield KernelNode(
            sandbox=sandbox,
            servers=servers,
            applier=applier,
            namespaces=tuple(make_ns(n, f"ns={n}") for n in namespaces),
        )
