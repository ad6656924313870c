"""`netpol-agent bench` end to end on a small cluster: every stage runs, no timing asserted."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from agent.cli import main

TOOLS = ("ip", "ipset", "iptables-nft", "iptables-legacy", "iptables-nft-restore")
pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        os.geteuid() != 0 or any(shutil.which(t) is None for t in TOOLS),
        reason="needs root and the iptables/ipset tools",
    ),
]


def test_every_stage_runs_on_a_small_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bench",
            "--pods", "300",
            "--policies", "40",
            "--local-pods", "10",
            "--events", "2",
            "--compile-sizes", "300x40x10",
            "--seconds", "0.3",
            "--rounds", "1",
            "--backend", "both",
            "-o", "json",
            "-q",
        ]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == []
    assert code == 0
    seen = {(r["stage"], r["backend"]) for r in report["results"]}
    assert ("compile", "-") in seen
    for backend in ("nft", "legacy"):
        for stage in ("cold", "incremental", "datapath", "memory"):
            assert (stage, backend) in seen, (stage, backend)
    incremental = [r for r in report["results"] if r["stage"] == "incremental"]
    assert all(r["detail"]["missed"] == 0 for r in incremental)
    assert all(r["detail"]["events"] == 2 for r in incremental)
    datapath = [r for r in report["results"] if r["stage"] == "datapath" and "ratio" in r["name"]]
    assert all(r["value"] > 0 for r in datapath)  # traffic flowed with and without rules


def test_drop_flood_runs_and_logs_at_the_hashlimit_rate(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bench", "--only", "datapath", "--drop-flood",
            "--pods", "300", "--policies", "40", "--local-pods", "10",
            "--seconds", "0.5", "--rounds", "1", "--backend", "nft", "-o", "json", "-q",
        ]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["problems"] == [] and code == 0
    values = {r["name"]: r["value"] for r in report["results"]}
    assert values["new TCP connections, blocked flood, logged/not"] > 0
    assert values["blocked flood, packets dropped"] > 100
    # the flood is one source/destination pair: 10 a second after a burst of 5
    assert 1 <= values["drops logged and read under the flood"] <= 10 * 2 + 5
