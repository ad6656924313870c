"""The desired ruleset: what one node's kernel should hold, as a plain value.

`compile_ruleset` produces it, `render.plan` turns the difference between two
of them into iptables-restore / ipset text, the python-iptables backend builds
`iptc` rules from the same structured fields, and the tracer runs packets
through it. Rules are structured (matches and a target), not strings, so each
consumer reads the fields it needs; `Rule.spec()` is the one canonical text,
written the way `iptables-save` prints it (`-s/-d/-i/-o/-p` first, then the
matches in order, then `-j`), so a payload and a read-back compare as text.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.core.model import Family, Protocol


class TargetKind(enum.Enum):
    JUMP = "JUMP"
    ACCEPT = "ACCEPT"
    DROP = "DROP"
    REJECT = "REJECT"
    RETURN = "RETURN"
    MARK = "MARK"
    CONNMARK = "CONNMARK"  # --set-xmark value/mask on the flow's conntrack entry
    NFLOG = "NFLOG"  # log to userspace (the agent's drop events); not terminal


@dataclass(frozen=True, slots=True)
class Target:
    kind: TargetKind
    chain: str = ""  # JUMP
    mark_value: int = 0  # MARK, CONNMARK: --set-xmark value/mask
    mark_mask: int = 0
    reject_with: str = ""  # REJECT: icmp-port-unreachable / icmp6-port-unreachable
    nflog_group: int = 0  # NFLOG
    nflog_prefix: str = ""

    @property
    def terminal(self) -> bool:
        return self.kind in (TargetKind.ACCEPT, TargetKind.DROP, TargetKind.REJECT)

    def spec(self) -> str:
        if self.kind is TargetKind.JUMP:
            return f"-j {self.chain}"
        if self.kind in (TargetKind.MARK, TargetKind.CONNMARK):
            return f"-j {self.kind.value} --set-xmark {self.mark_value:#x}/{self.mark_mask:#x}"
        if self.kind is TargetKind.REJECT:
            return f"-j REJECT --reject-with {self.reject_with}"
        if self.kind is TargetKind.NFLOG:  # in iptables-save's order; group 0 is not printed
            prefix = f" --nflog-prefix {quote(self.nflog_prefix)}" if self.nflog_prefix else ""
            group = f" --nflog-group {self.nflog_group}" if self.nflog_group else ""
            return f"-j NFLOG{prefix}{group}"
        return f"-j {self.kind.value}"


def jump(chain: str) -> Target:
    return Target(TargetKind.JUMP, chain=chain)


ACCEPT = Target(TargetKind.ACCEPT)
DROP = Target(TargetKind.DROP)
RETURN = Target(TargetKind.RETURN)


@dataclass(frozen=True, slots=True)
class SetMatch:
    """`-m set [!] --match-set NAME FLAGS`: FLAGS src, dst, or dst,dst for hash:ip,port."""

    name: str
    direction: str  # "src", "dst" or "dst,dst" (destination address and port)
    negate: bool = False


@dataclass(frozen=True, slots=True)
class MarkMatch:
    """`-m mark [!] --mark VALUE/MASK`."""

    value: int
    mask: int
    negate: bool = False


@dataclass(frozen=True, slots=True)
class HashLimit:
    """`-m hashlimit`: at most `rate` per second (burst `burst`) per source/destination pair."""

    name: str  # the kernel's table of buckets, per family
    rate: int
    burst: int = 5
    mode: str = "srcip,dstip"

    def spec(self) -> str:  # iptables-save leaves out the default burst of 5
        burst = f" --hashlimit-burst {self.burst}" if self.burst != 5 else ""
        return (
            f"-m hashlimit --hashlimit-upto {self.rate}/sec{burst} "
            f"--hashlimit-mode {self.mode} --hashlimit-name {self.name}"
        )


@dataclass(frozen=True, slots=True)
class Rule:
    """One iptables rule: all matches ANDed, then the target."""

    target: Target
    comment: str = ""
    src: str | None = None  # CIDR with prefix length, e.g. 10.244.0.10/32
    dst: str | None = None
    in_interface: str | None = None
    out_interface: str | None = None
    protocol: Protocol | None = None
    dport: tuple[int, int] | None = None  # inclusive range; (80, 80) is one port
    sets: tuple[SetMatch, ...] = ()
    ctstate: tuple[str, ...] = ()  # e.g. ("RELATED", "ESTABLISHED")
    mark: MarkMatch | None = None
    connmark: MarkMatch | None = None  # `-m connmark [!] --mark VALUE/MASK`
    icmpv6_type: int | None = None  # `-p ipv6-icmp -m icmp6 --icmpv6-type N` (protocol unset)
    hashlimit: HashLimit | None = None

    def spec(self) -> str:
        """The rule as `iptables-save` prints it, without `-A CHAIN`."""
        out: list[str] = []
        if self.src is not None:
            out.append(f"-s {self.src}")
        if self.dst is not None:
            out.append(f"-d {self.dst}")
        if self.in_interface is not None:
            out.append(f"-i {self.in_interface}")
        if self.out_interface is not None:
            out.append(f"-o {self.out_interface}")
        if self.protocol is not None:
            out.append(f"-p {self.protocol.value.lower()}")
        elif self.icmpv6_type is not None:
            out.append("-p ipv6-icmp")
        if self.comment:
            out.append(f"-m comment --comment {quote(self.comment)}")
        if self.ctstate:
            out.append(f"-m conntrack --ctstate {','.join(self.ctstate)}")
        if self.mark is not None:
            neg = "! " if self.mark.negate else ""
            out.append(f"-m mark {neg}--mark {self.mark.value:#x}/{self.mark.mask:#x}")
        if self.connmark is not None:
            neg = "! " if self.connmark.negate else ""
            cm = self.connmark
            out.append(f"-m connmark {neg}--mark {cm.value:#x}/{cm.mask:#x}")
        for s in self.sets:
            neg = "! " if s.negate else ""
            out.append(f"-m set {neg}--match-set {s.name} {s.direction}")
        if self.icmpv6_type is not None:
            out.append(f"-m icmp6 --icmpv6-type {self.icmpv6_type}")
        if self.dport is not None:
            assert self.protocol is not None, "a port needs a protocol"
            lo, hi = self.dport
            ports = str(lo) if lo == hi else f"{lo}:{hi}"
            proto = self.protocol.value.lower()
            out.append(f"-m {proto} --dport {ports}")
        if self.hashlimit is not None:
            out.append(self.hashlimit.spec())
        out.append(self.target.spec())
        return " ".join(out)

    def render(self, chain: str) -> str:
        return f"-A {chain} {self.spec()}"


_NO_QUOTE = frozenset("_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def quote(value: str) -> str:
    """Quote like xtables_save_string: bare when only [-_A-Za-z0-9], else in double quotes."""
    if value and all(c in _NO_QUOTE for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class Chain:
    name: str
    rules: tuple[Rule, ...] = ()

    def render(self) -> list[str]:
        return [r.render(self.name) for r in self.rules]


class SetType(enum.Enum):
    HASH_IP = "hash:ip"
    HASH_NET = "hash:net"
    HASH_IP_PORT = "hash:ip,port"  # entries "10.244.0.10,tcp:80"
    HASH_IP_PORT_NET = "hash:ip,port,net"  # entries "10.244.0.10,tcp:80,10.0.0.0/8"

    @property
    def dimensions(self) -> tuple[str, ...]:
        """What each dimension of an entry is: "ip" (address or net) or "port"."""
        return _DIMENSIONS[self]


_DIMENSIONS = {
    SetType.HASH_IP: ("ip",),
    SetType.HASH_NET: ("ip",),
    SetType.HASH_IP_PORT: ("ip", "port"),
    SetType.HASH_IP_PORT_NET: ("ip", "port", "ip"),
}
_PROTOCOLS = frozenset({"tcp", "udp", "sctp"})
MAXELEM = 262144
COMMENT = " comment "  # an entry "10.244.0.10 comment \"ns/pod\"" carries a comment


@dataclass(frozen=True, slots=True)
class IPSet:
    """An ipset: members (addresses or CIDRs) plus `nomatch` CIDRs (hash:net only).

    `counters` sets get per-entry packet/byte counters and comments (members
    may then read `10.244.0.10 comment "ns/pod"`).
    """

    name: str
    type: SetType
    family: Family
    members: frozenset[str] = frozenset()
    nomatch: frozenset[str] = frozenset()
    description: str = ""  # what it holds, for humans (not sent to the kernel)
    counters: bool = False
    maxelem: int = MAXELEM

    def create_line(self, name: str | None = None) -> str:
        fam = "inet" if self.family is Family.V4 else "inet6"
        extra = " counters comment" if self.counters else ""
        return (
            f"create {name or self.name} {self.type.value} family {fam} "
            f"maxelem {self.maxelem}{extra}"
        )

    def entries(self) -> list[tuple[str, bool]]:
        """(entry, is_nomatch), canonically sorted (by address, then prefix)."""
        out = [(m, False) for m in self.members] + [(m, True) for m in self.nomatch]
        out.sort(key=lambda e: (entry_sort_key(e[0]), e[1]))
        return out

    def add_lines(self, name: str | None = None) -> list[str]:
        target = name or self.name
        return [f"add {target} {e}{' nomatch' if nm else ''}" for e, nm in self.entries()]

    def contains(self, ip: str, protocol: str = "", port: int = 0) -> bool:
        """The kernel's answer to `--match-set NAME` for one address (and port).

        hash:net looks the address up from the most specific prefix to the
        least; the first entry found decides, and a `nomatch` entry means no.
        hash:ip,port needs the protocol (lower case) and port too.
        """
        if self.type is SetType.HASH_IP_PORT:
            return self.lookup((ip, f"{protocol}:{port}"))
        return self.lookup((ip,))

    def lookup(self, key: tuple[str, ...]) -> bool:
        """Membership of one packet key: an address per "ip" dimension, "proto:port" per
        "port" dimension (agent.core.traceindex has the fast version for the tracer)."""
        if len(key) != len(self.type.dimensions):
            return False
        addrs = [_address(k) for k, d in zip(key, self.type.dimensions, strict=True) if d == "ip"]
        if any(a.version != int(self.family) for a in addrs):
            return False
        if self.type is SetType.HASH_IP:
            return str(addrs[0]) in self._plain()
        if self.type is SetType.HASH_IP_PORT:
            return f"{addrs[0]},{key[1]}" in self._plain()
        best: tuple[tuple[int, ...], bool] | None = None
        for entries, nomatch in ((self._plain(), False), (self.nomatch, True)):
            for entry in entries:
                parts = entry.split(",")
                prefixes: list[int] = []
                for part, want, dim in zip(parts, key, self.type.dimensions, strict=True):
                    if dim == "port":
                        if part != want:
                            break
                        continue
                    net = _network(part)
                    if _address(want) not in net:
                        break
                    prefixes.append(net.prefixlen)
                else:
                    if best is None or tuple(prefixes) > best[0]:
                        best = (tuple(prefixes), nomatch)
        return best is not None and not best[1]

    def _plain(self) -> frozenset[str]:
        if not self.counters:
            return self.members
        return frozenset(entry_key(m) for m in self.members)


def entry_key(entry: str) -> str:
    """An entry without its comment (what `del` and lookups use)."""
    return entry.split(COMMENT, 1)[0]


@functools.lru_cache(maxsize=65536)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(ip)


@functools.lru_cache(maxsize=65536)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


@functools.lru_cache(maxsize=1 << 17)
def entry_sort_key(entry: str) -> tuple[int, ...]:
    """Sort set entries by address (numerically), then prefix length (or port), dimension
    by dimension."""
    out: list[int] = []
    for part in entry_key(entry).split(","):
        if part.partition(":")[0] in _PROTOCOLS:  # proto:port
            out += [0, 0, int(part.rpartition(":")[2])]
        elif "/" not in part:
            addr = ipaddress.ip_address(part)
            out += [addr.version, int(addr), addr.max_prefixlen]
        else:
            net = ipaddress.ip_network(part, strict=False)
            out += [net.version, int(net.network_address), net.prefixlen]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Hook:
    """The jump at position 1 of a built-in chain into one of our top chains."""

    builtin: str
    chain: str

    def rule(self) -> Rule:
        return Rule(jump(self.chain), comment="netpol-agent")


@dataclass(frozen=True, slots=True)
class Table:
    """The filter table of one family: our chains, in order (top chains first)."""

    family: Family
    chains: tuple[Chain, ...] = ()
    hooks: tuple[Hook, ...] = ()

    def chain(self, name: str) -> Chain | None:
        for c in self.chains:
            if c.name == name:
                return c
        return None

    def by_name(self) -> dict[str, Chain]:
        return {c.name: c for c in self.chains}

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains)

    def render(self) -> str:
        """The table as `iptables-save` would show our part: chains sorted, then rules."""
        lines = ["*filter"]
        lines += [f":{c.name} - [0:0]" for c in sorted(self.chains, key=lambda c: c.name)]
        lines += [h.rule().render(h.builtin) for h in self.hooks]
        for c in sorted(self.chains, key=lambda c: c.name):
            lines += c.render()
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Everything for one node: a filter table per family, and the ipsets they use."""

    tables: Mapping[Family, Table] = field(default_factory=dict)
    sets: Mapping[str, IPSet] = field(default_factory=dict)
    mark: int = 0  # the one mark bit we use, e.g. 0x200000
    connmark: int = 0  # the fast path's conntrack mark bit, e.g. 0x400000 (0: none)

    def table(self, family: Family) -> Table:
        return self.tables.get(family) or Table(family)

    def sets_of(self, family: Family) -> list[IPSet]:
        return sorted((s for s in self.sets.values() if s.family is family), key=lambda s: s.name)

    def render_sets(self, family: Family | None = None) -> str:
        """`ipset save`-like text of our sets (all families unless one is given)."""
        lines: list[str] = []
        for s in sorted(self.sets.values(), key=lambda s: s.name):
            if family is not None and s.family is not family:
                continue
            if s.description:
                lines.append(f"# {s.description}")
            lines.append(s.create_line())
            lines += s.add_lines()
        return "\n".join(lines) + ("\n" if lines else "")
