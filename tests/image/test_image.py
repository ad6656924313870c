"""The container image, built for real from a clean state with podman (issue 9).

It builds, its entrypoint is `netpol-agent run`, the CLI inside is this
checkout's, it carries the kernel tools and no compilers or package caches,
and its size is reported (and kept in bounds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.image.support import REPO, Build, podman

# The first test also pays for the build (podman install, debootstrap, a clean build).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MAX_SIZE_BYTES = 350_000_000
SHELL = ("--entrypoint", "/bin/sh")


def _sh(image: Build, script: str) -> subprocess.CompletedProcess[str]:
    return podman("run", "--rm", "--network", "none", *SHELL, image.tag, "-c", script, check=False)


def test_image_builds_from_a_clean_state(image: Build) -> None:
    print(f"\nimage {image.tag}: {image.size_bytes} bytes, built in {image.seconds:.1f} s")
    assert image.size_bytes > 0


def test_version_runs_inside(image: Build) -> None:
    from agent import __version__

    done = podman("run", "--rm", "--network", "none", image.tag, "--version")
    assert done.stdout.strip() == f"netpol-agent {__version__}"


def test_run_help_inside_is_this_checkouts(image: Build) -> None:
    inside = podman(
        "run", "--rm", "--network", "none", "--env", "COLUMNS=100", image.tag, "run", "--help"
    ).stdout
    here = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--help"],
        capture_output=True, text=True, check=True, cwd=REPO,
        env={**os.environ, "COLUMNS": "100"},
    ).stdout  # fmt: skip
    assert inside == here


def test_entrypoint_is_netpol_agent_run_with_oci_labels(image: Build) -> None:
    (info,) = json.loads(podman("image", "inspect", image.tag).stdout)
    config = info["Config"]
    assert config["Entrypoint"] + config["Cmd"] == ["netpol-agent", "run"]
    labels = config["Labels"]
    for key in ("title", "description", "licenses", "version", "revision", "base.name"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    assert labels["org.opencontainers.image.title"] == "netpol-agent"


def test_kernel_tools_are_inside(image: Build) -> None:
    tools = ["iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft",
             "iptables-legacy-restore", "iptables-nft-restore", "ipset", "conntrack", "ip"]  # fmt: skip
    done = _sh(image, " && ".join(f"command -v {t} >/dev/null" for t in tools))
    assert done.returncode == 0, f"missing one of {tools}: {done.stderr}"
    done = _sh(image, "python3 -c 'import iptc, pyroute2, kubernetes, prometheus_client, yaml'")
    assert done.returncode == 0, done.stderr


def test_no_compilers_or_package_caches(image: Build) -> None:
    script = r"""
        found=""
        for c in gcc cc c++ g++ clang cpp x86_64-linux-gnu-gcc-12 make; do
            command -v "$c" >/dev/null 2>&1 && found="$found $c"
        done
        ls /usr/lib/gcc/*/*/cc1 >/dev/null 2>&1 && found="$found cc1"
        ls /var/cache/apt/archives/*.deb >/dev/null 2>&1 && found="$found apt-archives"
        ls /var/cache/apt/*.bin >/dev/null 2>&1 && found="$found apt-pkgcache"
        [ -n "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v '^lock$\|^partial$')" ] && found="$found apt-lists"
        [ -e /root/.cache/pip ] && found="$found pip-cache"
        [ -e /opt/netpol-agent/bin/pip ] && found="$found pip"
        ls /usr/include/python3* >/dev/null 2>&1 && found="$found python-headers"
        echo "$found"
    """
    done = _sh(image, script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"the image holds: {done.stdout.strip()}"


def test_image_size_is_bounded(image: Build) -> None:
    assert image.size_bytes < MAX_SIZE_BYTES, (
        f"image is {image.size_bytes / 1e6:.0f} MB, over {MAX_SIZE_BYTES / 1e6:.0f} MB"
    )
