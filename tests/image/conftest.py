"""The image tests share one build (tests/image/support.py) and report its size and time."""

from __future__ import annotations

import pytest

from tests.image.support import Build, ensure_image, last_build


@pytest.fixture(scope="session")
def image() -> Build:
    return ensure_image()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    build = last_build()
    if build is not None:
        kind = "clean" if build.clean else "cached"
        terminalreporter.write_line(
            f"netpol-agent image {build.tag}: {build.size_bytes / 1e6:.0f} MB, "
            f"{kind} build {build.seconds:.0f} s"
        )
