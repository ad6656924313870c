"""The connmark fast path on a real kernel: an allowed one-way UDP flow carries the bit and
its later datagrams skip the verdict; a narrowing apply clears the bit, so the flow is
judged again and dropped."""

from __future__ import annotations

import sys

import pytest

from agent.sandbox.netns import run
from tests.builders import make_policy, sel
from tests.kernel.harness import kernel_node

PORT = 9999  # nobody listens: the flow stays UNREPLIED (NEW) in conntrack
BIT = 1 << 22
SEND = (
    "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); "
    "s.bind(('', 40999)); s.sendto(b'x', (sys.argv[1], int(sys.argv[2])))"
)


def _marks(netns: str) -> list[int]:
    out = run(netns, "conntrack", "-L", "-p", "udp", "--dport", str(PORT), check=False).stdout
    return [int(f.split("=")[1]) for line in out.splitlines() for f in line.split() if "mark=" in f]


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_fast_path_bit_is_set_when_allowed_and_cleared_when_narrowed(backend: str) -> None:
    allow = make_policy(
        "x/b-udp",
        {
            "podSelector": sel("pod=b"),
            "ingress": [
                {
                    "from": [{"podSelector": sel("pod=a")}],
                    "ports": [{"protocol": "UDP", "port": PORT}],
                }
            ],
        },
    )
    deny = make_policy("x/b-deny", {"podSelector": sel("pod=b")})
    with kernel_node(backend, "x") as node:
        node.add_pod("x/a", "pod=a")
        b = node.add_pod("x/b", "pod=b")
        node.apply(node.state([allow]))
        a_ns = node.pod_sandboxes["x/a"].netns
        dst = b.ips[0]
        run(a_ns, sys.executable, "-c", SEND, dst, str(PORT))
        marks = _marks(node.sandbox.netns)
        assert marks and all(m & BIT for m in marks), marks
        run(a_ns, sys.executable, "-c", SEND, dst, str(PORT))  # rides the fast path
        with node.agent() as applier:
            before = applier.drop_counters().get(("x/b", "ingress"))
        assert before is not None and before.packets == 0

        result = node.apply(node.state([deny]))  # narrows: the allow is gone
        assert result.changed and node.applier.fast_path_clears >= 1
        marks = _marks(node.sandbox.netns)
        assert marks and not any(m & BIT for m in marks), marks
        run(a_ns, sys.executable, "-c", SEND, dst, str(PORT))  # judged again: dropped
        with node.agent() as applier:
            after = applier.drop_counters()[("x/b", "ingress")]
        assert after.packets >= 1
