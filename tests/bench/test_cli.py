"""`netpol-agent bench` flag checking (no kernel needed)."""

from __future__ import annotations

import pytest

from agent.cli import main


def test_bad_flags_are_refused_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--only", "compile,nonsense"]) == 2
    assert "unknown stage" in capsys.readouterr().err
