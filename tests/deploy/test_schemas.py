"""Every manifest we ship (deploy/, examples/) is a valid Kubernetes object.

Validated offline with kubernetes-validate's bundled OpenAPI schemas, strictly
(unknown fields are errors), against the oldest and newest Kubernetes versions
we support. The Prometheus Operator's CRDs are not bundled: their objects get a
structural check in test_monitoring.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.support import (
    DEPLOY,
    EXAMPLES,
    KUSTOMIZATIONS,
    REPO,
    is_kubernetes_object,
    load_docs,
    render,
    validate,
    yaml_files,
)


def _manifest_files() -> list[Path]:
    return yaml_files(DEPLOY, EXAMPLES)


def test_there_are_manifests_to_check() -> None:
    files = _manifest_files()
    assert any(p.is_relative_to(DEPLOY) for p in files)


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_manifest_file_validates(path: Path) -> None:
    docs = [d for d in load_docs(path) if is_kubernetes_object(d)]
    for doc in docs:
        validate(doc, str(path.relative_to(REPO)))


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_kustomization_renders_valid_objects(directory: str) -> None:
    docs = render(directory)
    assert docs, f"{directory} rendered nothing"
    for doc in docs:
        validate(doc, f"kubectl kustomize {directory}")


def test_every_kustomization_is_tested() -> None:
    found = {str(p.parent.relative_to(REPO)) for p in DEPLOY.rglob("kustomization.yaml")}
    assert found == set(KUSTOMIZATIONS)


def test_rendered_objects_carry_the_part_of_label() -> None:
    for directory in KUSTOMIZATIONS:
        for doc in render(directory):
            labels = doc["metadata"].get("labels", {})
            assert labels.get("app.kubernetes.io/part-of") == "netpol-agent", (
                f"{directory}: {doc['kind']}/{doc['metadata']['name']}"
            )
