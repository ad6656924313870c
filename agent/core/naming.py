"""Names of the kernel objects we own: chains, ipsets and rule comments.

Everything we put in the kernel carries a fixed prefix (`NPA-` for chains,
`npa-` for ipsets) so that `netpol-agent cleanup` can remove exactly what is
ours and nothing else. Names derived from cluster objects are a short kind tag
plus a base32 hash of a stable key (a pod UID, `ns/policy`, a canonical
selector), never of membership: a pod joining a selector must not rename a
set. The kernel limits names to 28 (chains) and 31 (sets) characters; readers
of `iptables-save` follow the rule comments (`ns/policy`, `ns/pod`) instead.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re

from agent.core.model import Family, LabelSelector

CHAIN_PREFIX = "NPA-"
SET_PREFIX = "npa-"
MAX_CHAIN = 28
MAX_SET = 31
MAX_COMMENT = 255
_HASH_CHARS = 16

TOP_FORWARD = "NPA-FORWARD"
TOP_INPUT = "NPA-INPUT"
TOP_OUTPUT = "NPA-OUTPUT"
DROP_INGRESS = "NPA-DROP-INGRESS"
DROP_EGRESS = "NPA-DROP-EGRESS"
VERDICT_INGRESS = "NPA-INGRESS"  # the NetworkPolicy verdict for isolated local pods, ingress
VERDICT_EGRESS = "NPA-EGRESS"
ACCEPT_FORWARD = "NPA-ACCEPT"  # allowed for good: set the fast-path connmark bit, ACCEPT
ACCEPT_OUTPUT = "NPA-ACCEPT-OUT"  # the same from NPA-OUTPUT, RETURN instead of ACCEPT

# Set kinds: one letter each, then the family digit. A kind's set type must never
# change: `ipset swap` refuses to swap in a set of another type left by an older agent.
SET_SELECTOR = "s"  # hash:ip, pods matched by (namespace scope, pod selector)
SET_BLOCK = "b"  # hash:net, an ipBlock with its excepts as nomatch entries
SET_NAMED_PORT = "p"  # hash:ip,port, (pod IP, proto:number) of a named containerPort
SET_NODE = "n"  # hash:net, the node's own addresses, bridge gateways, --allow-cidr
SET_GATE = "g"  # hash:ip, local pods isolated for a direction
SET_COUNTERS = "c"  # hash:ip counters comment, the same pods: per-pod drop counters
SET_PORTS = "q"  # hash:ip,port,net, local pod,proto:port,peer allowed
SET_LOCALS = "l"  # hash:ip, local pods allowed (every port, a wide range) from one peer set
_TEMP_MARK = "t"  # npa-t<kind><family>-...: scratch copy for create-fill-swap


@functools.lru_cache(maxsize=1 << 16)
def digest(key: str, n: int = _HASH_CHARS) -> str:
    """The first n base32 characters of sha256(key): 5 bits each, 80 bits by default."""
    raw = hashlib.sha256(key.encode("utf-8")).digest()
    return base64.b32encode(raw).decode("ascii")[:n]


def pod_chain(direction: str, pod_uid: str) -> str:
    """NPA-I-<hash> / NPA-E-<hash>: one local pod's ingress or egress chain (keyed by UID)."""
    tag = "I" if direction == "ingress" else "E"
    return f"{CHAIN_PREFIX}{tag}-{digest(pod_uid)}"


def policy_chain(direction: str, policy_key: str) -> str:
    """NPA-PI-<hash> / NPA-PE-<hash>: one policy's ingress or egress rules."""
    tag = "PI" if direction == "ingress" else "PE"
    return f"{CHAIN_PREFIX}{tag}-{digest('policy|' + policy_key)}"


@functools.lru_cache(maxsize=1 << 16)
def set_name(kind: str, family: Family, key: str) -> str:
    """npa-<kind><4|6>-<hash of key>, e.g. `npa-s4-MZXW6YTBOI2DGNBV`, lower-cased."""
    return f"{SET_PREFIX}{kind}{int(family)}-{digest(key).lower()}"


def temp_set_name(name: str) -> str:
    """The scratch name used to fill a replacement for `name` before `ipset swap`."""
    assert name.startswith(SET_PREFIX)
    return f"{SET_PREFIX}{_TEMP_MARK}{name[len(SET_PREFIX) :]}"


@functools.lru_cache(maxsize=1 << 14)
def selector_key(selector: LabelSelector) -> str:
    """A canonical text for a selector: equal selectors, equal keys, whatever the order."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(selector.match_labels))
    exprs = ";".join(
        f"{r.key} {r.operator.value} {','.join(sorted(r.values))}"
        for r in sorted(selector.match_expressions, key=lambda r: (r.key, r.operator.value))
    )
    return f"{{{labels}|{exprs}}}"


_UNSAFE = re.compile(r"[^A-Za-z0-9 _.,:;/=+@#()\[\]<>!*-]")


def comment(text: str) -> str:
    """A rule comment safe for iptables-restore and python-iptables.

    Quotes, backslashes, control and non-ASCII characters become `_`; the
    result is cut to the kernel's 255 bytes. Kubernetes names are DNS labels,
    so `ns/name` survives unchanged.
    """
    return _UNSAFE.sub("_", " ".join(text.split()))[:MAX_COMMENT]


def owned_chain(name: str) -> bool:
    return name.startswith(CHAIN_PREFIX)


def owned_set(name: str) -> bool:
    return name.startswith(SET_PREFIX)
