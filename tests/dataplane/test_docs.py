"""docs/rules.md stays true: its example compiles to exactly the lines it shows,
and the packets it walks through get the verdicts it claims."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.cli import main
from agent.core.compile import CompileOptions, compile_ruleset
from agent.core.model import Family, Protocol
from agent.core.trace import Packet, trace
from agent.manifests.loader import build_state, load

DOC = Path(__file__).parents[2] / "docs" / "rules.md"


def _blocks(kind: str) -> list[str]:
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), flags=re.S)


def _lines(text: str) -> list[str]:
    return sorted(line for line in text.splitlines() if line.strip() and not line.startswith("#"))


@pytest.fixture
def example(tmp_path: Path) -> Path:
    (yaml_text,) = _blocks("yaml")
    path = tmp_path / "example.yaml"
    path.write_text(yaml_text)
    return path


def test_the_doc_shows_what_compile_prints(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", "-f", str(example), "--node", "node-0", "--family", "4"]) == 0
    out, _ = capsys.readouterr()
    shown = "\n".join(_blocks("text"))
    assert _lines(shown) == _lines(out)


@pytest.mark.parametrize(
    ("hook", "src", "dst", "proto", "port", "verdict"),
    [
        ("FORWARD", "10.244.0.10", "10.244.0.11", "TCP", 5432, "ACCEPT"),
        ("FORWARD", "10.244.0.10", "10.244.0.11", "TCP", 80, "DROP"),
        ("OUTPUT", "10.244.0.1", "10.244.0.10", "TCP", 8080, "PASS"),
        ("FORWARD", "10.244.0.10", "10.96.0.10", "UDP", 53, "ACCEPT"),
        ("FORWARD", "10.244.0.10", "10.96.0.1", "UDP", 53, "DROP"),
        ("FORWARD", "10.244.1.10", "10.244.0.10", "TCP", 8080, "ACCEPT"),
        ("INPUT", "10.244.0.10", "172.18.0.2", "TCP", 22, "PASS"),
        ("INPUT", "10.244.0.10", "10.244.0.1", "TCP", 22, "PASS"),
        ("FORWARD", "10.244.0.10", "172.18.0.3", "TCP", 22, "DROP"),
    ],
)
def test_the_walkthroughs(
    example: Path, hook: str, src: str, dst: str, proto: str, port: int, verdict: str
) -> None:
    state = build_state(load([str(example)]))
    rs = compile_ruleset(state, node="node-0", options=CompileOptions(families=(Family.V4,)))
    result = trace(rs, Packet(src, dst, Protocol(proto), port, hook=hook))
    assert result.verdict == verdict, str(result)
