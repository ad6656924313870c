"""Applier.apply_quick: set-only changes skip the hook read-back; anything else is apply().

No kernel: the executor records payloads and the kernel reads are stubbed, so
the test sees exactly which reads and writes a sync makes.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.errors import ApplyError
from agent.core.model import Family
from agent.core.ruleset import Ruleset
from agent.dataplane import applier as applier_module
from agent.dataplane.applier import Applier
from agent.dataplane.backend import Backend
from tests.builders import make_ns, make_pod, make_policy, make_state, sel


class RecordingExecutor:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.fail = False

    def ipset(self, text: str) -> None:
        if self.fail:
            raise ApplyError("ipset restore failed")
        self.calls.append(("ipset", text))

    def iptables(self, family: Family, payload: str) -> None:
        self.calls.append((f"iptables{int(family)}", payload))


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every kernel read the Applier makes (all answered with empty output)."""
    seen: list[list[str]] = []

    def read_command(argv: Sequence[str]) -> str:
        seen.append(list(argv))
        return ""

    def read_many(argvs: Sequence[Sequence[str]]) -> list[str | None]:
        seen.extend(list(a) for a in argvs)
        return ["" for _ in argvs]

    monkeypatch.setattr(applier_module, "read_command", read_command)
    monkeypatch.setattr(applier_module, "read_many", read_many)
    return seen


def _ruleset(b_label: str = "b", deny: bool = True, wide: bool = False) -> Ruleset:
    ports = [{"port": 8000, "endPort": 9000}] if wide else []
    policy = make_policy(
        "x/b-from-a",
        {
            "podSelector": sel("pod=b"),
            "ingress": [{"from": [{"podSelector": sel("pod=a")}], "ports": ports}],
        },
    )
    state = make_state(
        make_ns("x"),
        make_pod("x/a", "pod=a", ip="10.244.0.10", node="node-0"),
        make_pod("x/b", f"pod={b_label}", ip="10.244.1.10", node="node-1"),
        make_pod("x/c", "pod=b", ip="10.244.0.11", node="node-0"),
        *([policy] if deny else []),
    )
    return compile_ruleset(state, node="node-0", options=CompileOptions())


def _applier() -> tuple[Applier, RecordingExecutor]:
    executor = RecordingExecutor()
    return Applier(Backend("nft", "nft"), executor=executor), executor


def test_set_only_change_writes_ipset_lines_and_reads_nothing(reads: list[list[str]]) -> None:
    applier, executor = _applier()
    first = applier.apply_quick(_ruleset())
    assert first.full and reads  # the first apply is a full one, reading the kernel
    reads.clear()
    executor.calls.clear()
    result = applier.apply_quick(_ruleset(b_label="a"))  # a remote pod changes sets only
    assert not result.full and result.changed and result.counts.rules_written == 0
    assert reads == []
    assert [kind for kind, _ in executor.calls] == ["ipset"]
    assert applier.applied == _ruleset(b_label="a")


def test_chain_change_writes_only_the_plan_without_reading_the_hooks(
    reads: list[list[str]],
) -> None:
    applier, executor = _applier()
    applier.apply_quick(_ruleset(wide=True))
    reads.clear()
    executor.calls.clear()
    result = applier.apply_quick(_ruleset())  # the wide range is gone: its rule goes
    assert not result.full and result.counts.chains_written == 2  # NPA-INGRESS, v4 and v6
    assert reads == []  # hooks are the tamper check's and the full apply's job
    payloads = [text for kind, text in executor.calls if kind == "iptables4"]
    assert len(payloads) == 1 and ":NPA-INGRESS" in payloads[0]
    assert "-I FORWARD" not in payloads[0] and "-D FORWARD" not in payloads[0]
    assert "destroy npa-l4" in executor.calls[-1][1]  # its set goes after the rule


def test_a_family_appearing_takes_the_full_path(reads: list[list[str]]) -> None:
    applier, _ = _applier()
    only_v4 = compile_ruleset(
        make_state(make_ns("x")),
        node="node-0",
        options=CompileOptions(families=(Family.V4,)),
    )
    applier.apply_quick(only_v4)
    reads.clear()
    applier.apply_quick(_ruleset())
    assert any(argv[-1] == "FORWARD" for argv in reads)  # hooks re-asserted from a listing


def test_failure_forces_the_next_apply_to_be_full(reads: list[list[str]]) -> None:
    applier, executor = _applier()
    applier.apply_quick(_ruleset())
    executor.fail = True
    with pytest.raises(ApplyError):
        applier.apply_quick(_ruleset(b_label="a"))
    assert applier.needs_full and applier.applied == _ruleset()
    executor.fail = False
    assert applier.apply_quick(_ruleset(b_label="a")).full


def test_netlink_path_takes_only_address_add_del_on_hash_ip_sets() -> None:
    from agent.core.ruleset import SetType
    from agent.dataplane.netlinkset import NetlinkSets

    types = {"npa-s4-a": SetType.HASH_IP, "npa-b4-b": SetType.HASH_NET}
    sets = NetlinkSets()
    for text in (
        "create npa-s4-a hash:ip family inet maxelem 262144\n",
        "add npa-b4-b 10.0.0.0/8\n",
        "add npa-s4-a 10.0.0.1 nomatch\n",
        "add npa-s4-x 10.0.0.1\n",  # a set not in the ruleset
        "swap npa-t-a npa-s4-a\n",
        "",
    ):
        assert sets.apply(text, types) is False  # declined before any socket is opened
    assert sets.lines == 0 and sets._sock is None
