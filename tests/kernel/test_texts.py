"""The dataplane's pure text helpers (no kernel): error quoting, cleanup payloads, counters."""

from __future__ import annotations

from agent.core.model import Family
from agent.dataplane.backend import Backend, detect_mode
from agent.dataplane.cleanup import owned_in_save, removal_payload
from agent.dataplane.executor import describe_failure, extract_lines, failed_line

PAYLOAD = "\n".join(f"line {n}" for n in range(1, 11)) + "\n"


def test_failed_line_understands_both_tools() -> None:
    assert failed_line("iptables-restore v1.8.9 (legacy): x\nError occurred at line: 4\n") == 4
    assert failed_line("iptables-restore: line 7 failed\n") == 7
    assert failed_line("ipset v7.17: Error in line 3: Syntax error") == 3
    assert failed_line("something else") is None


def test_extract_lines_marks_the_line_with_three_either_side() -> None:
    text = extract_lines(PAYLOAD, 5)
    assert text.splitlines() == [
        "       2  line 2",
        "       3  line 3",
        "       4  line 4",
        ">>     5  line 5",
        "       6  line 6",
        "       7  line 7",
        "       8  line 8",
    ]
    assert extract_lines(PAYLOAD, 1).splitlines()[0] == ">>     1  line 1"


def test_describe_failure_quotes_command_complaint_and_payload() -> None:
    text = describe_failure(["ipset", "restore"], "ipset: Error in line 10: bad\n", PAYLOAD)
    assert text.startswith(
        "ipset restore failed: ipset: Error in line 10: bad\npayload around line 10:"
    )
    assert text.endswith(">>    10  line 10")


def test_removal_payload_deletes_references_then_flushes_then_deletes() -> None:
    owned = owned_in_save(
        "*filter\n:FORWARD ACCEPT [0:0]\n:NPA-A - [0:0]\n:NPA-B - [0:0]\n"
        "-A FORWARD -j NPA-A\n-A NPA-A -j NPA-B\nCOMMIT\n"
    )
    assert removal_payload(owned) == (
        "*filter\n-D FORWARD -j NPA-A\n:NPA-A - [0:0]\n:NPA-B - [0:0]\n-X NPA-A\n-X NPA-B\nCOMMIT\n"
    )
    assert removal_payload({}) == ""


def test_backend_binaries() -> None:
    nft = Backend(name="nft", mode="nft")
    assert (nft.save(Family.V4), nft.restore(Family.V6)) == (
        "iptables-nft-save",
        "ip6tables-nft-restore",
    )
    assert Backend(name="python-iptables", mode="legacy").in_process


def test_detection_counts_rules_like_the_iptables_wrapper() -> None:
    import subprocess

    def fake(outputs: dict[str, str]):  # type: ignore[no-untyped-def]
        def run(argv):  # type: ignore[no-untyped-def]
            return subprocess.CompletedProcess(argv, 0, outputs.get(" ".join(argv), ""), "")

        return run

    rules = "*filter\n-A FORWARD -j ACCEPT\n-A INPUT -j ACCEPT\nCOMMIT\n"
    assert detect_mode(fake({"iptables-legacy-save": rules})) == "legacy"
    assert detect_mode(fake({"iptables-nft-save": rules})) == "nft"
    assert detect_mode(fake({})) == "nft"  # nothing anywhere: nft, like the wrapper
    hint = "*mangle\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n"
    both = {"iptables-legacy-save": rules, "iptables-nft-save -t mangle": hint}
    assert detect_mode(fake(both)) == "nft"  # kubelet's hint beats counting
