"""Building the real image once per test session, and running podman for the tests.

`ensure_image()` runs deploy/image/build-local.sh (which installs podman,
buildah, runc and debootstrap when missing and caches the debootstrap base) and
remembers the result, so every test in the session, including the lab's
`--image` tests, shares one build. By default the build is `--clean` (no cached
layer used or kept: what a fresh machine does); NETPOL_IMAGE_TEST_CACHED=1
reuses layers for quick local iterations.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "deploy" / "image" / "build-local.sh"
CONTAINERS_CONF = REPO / "deploy" / "image" / "containers.conf"
TAG = "localhost/netpol-agent:dev"
BUILD_TIMEOUT = 900


@dataclass(frozen=True, slots=True)
class Build:
    tag: str
    seconds: float
    size_bytes: int
    clean: bool


_built: Build | None = None
_failed: str | None = None


def podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def podman(
    *args: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["podman", *args],
        capture_output=True, text=True, timeout=timeout, check=False, env=podman_env(),
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done


def ensure_image() -> Build:
    """Build the image once per session (skips when not root; fails when the build fails)."""
    global _built, _failed
    if _built is not None:
        return _built
    if _failed is not None:
        pytest.fail(_failed)
    if os.geteuid() != 0:
        pytest.skip("building the image needs root (debootstrap, podman)")
    if shutil.which("apt-get") is None and shutil.which("podman") is None:
        pytest.skip("needs podman, or apt-get to install it")
    clean = os.environ.get("NETPOL_IMAGE_TEST_CACHED") != "1"
    argv = ["bash", str(BUILD_SCRIPT), "--tag", TAG, *(["--clean"] if clean else [])]
    start = time.monotonic()
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False, cwd=REPO
    )
    seconds = time.monotonic() - start
    if done.returncode != 0:
        _failed = f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        pytest.fail(_failed)
    size = int(podman("image", "inspect", "--format", "{{.Size}}", TAG).stdout.strip())
    _built = Build(tag=TAG, seconds=seconds, size_bytes=size, clean=clean)
    return _built


def last_build() -> Build | None:
    return _built
