"""One version everywhere it is written, and the changelog says what it is.

The version lives in agent/__init__.py (pyproject reads it); the image label,
the kustomize image tags and the Helm chart move with it (scripts/set-version).
Release 0.1.0 is the commit the changelog names; the upgrade tests install it.
"""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from agent import __version__
from tests.deploy.support import DEPLOY, REPO

RELEASE_0_1_0 = "f96da26dc32a373562cfddb77c52e9890156e9f7"


def test_pyproject_reads_the_package_version() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in text
    assert 'version = { attr = "agent.__version__" }' in text


def test_cli_prints_the_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agent", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPO,
    )
    assert done.stdout.strip() == f"netpol-agent {__version__}"


def test_image_label_and_tags_carry_the_version() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG VERSION={__version__}\n" in dockerfile
    for kustomization in ("base", "cleanup"):
        doc = yaml.safe_load((DEPLOY / kustomization / "kustomization.yaml").read_text())
        tags = {image["name"]: image["newTag"] for image in doc["images"]}
        assert tags == {"netpol-agent": __version__}, kustomization


def test_chart_version_and_app_version_are_the_version() -> None:
    chart = yaml.safe_load((DEPLOY / "helm" / "netpol-agent" / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == __version__


def test_changelog_has_this_version_and_names_the_first_release() -> None:
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## (\d+\.\d+\.\d+)", text, flags=re.MULTILINE)
    assert versions[0] == __version__, "the newest CHANGELOG section is not this version"
    assert versions[-1] == "0.1.0"
    assert RELEASE_0_1_0 in text
