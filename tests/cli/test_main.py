"""The command line as a process: what a user piping its output sees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = Path(sys.executable).parent / "netpol-agent"  # the venv's console script
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "002-three-tier"


def test_a_reader_that_goes_away_gets_no_traceback() -> None:
    # `netpol-agent reachability -f ... -o json | head -0`: the pipe is closed
    # before the first write, so every write fails with EPIPE.
    proc = subprocess.Popen(
        [str(CLI), "reachability", "-f", str(EXAMPLE), "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
