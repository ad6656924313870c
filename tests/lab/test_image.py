"""`lab up --image`: the agents run as the DaemonSet's container (podman) and enforce the same.

The image comes from tests/image/support.py's `ensure_image()` (one build per
test session, by deploy/image/build-local.sh); the seed examples (001-*) are
probed over TCP and UDP and compared with the engine.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core.table import format_diff
from agent.lab.apply import load_objects
from tests.image.support import ensure_image
from tests.lab.conftest import RunningLab, start_lab
from tests.lab.test_examples import EXAMPLES, with_udp_twins

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.fixture(scope="module")
def image_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl renders deploy/base for --image")
    build = ensure_image()  # one build per session, shared with tests/image
    yield from start_lab(tmp_path_factory.mktemp("imagelab"), nodes=2, image=build.tag)


SEEDS = sorted(p for p in EXAMPLES.glob("001-*") if p.is_dir()) if EXAMPLES.is_dir() else []


@pytest.mark.parametrize("scenario", SEEDS, ids=[p.name for p in SEEDS])
def test_containerised_agents_agree_with_engine(image_lab: RunningLab, scenario: Path) -> None:
    objects = with_udp_twins(load_objects([scenario]))
    image_lab.apply(objects)
    try:
        _, diff = image_lab.probe()
        assert diff.empty, format_diff(diff)
    finally:
        image_lab.delete(objects)
