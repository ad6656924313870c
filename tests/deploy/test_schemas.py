"""Every manifest we ship (deploy/, examples/) is a valid Kubernetes object.

Validated offline with kubernetes-validate's bundled OpenAPI schemas, strictly
(unknown fields are errors), against the oldest and newest Kubernetes versions
we support. The Prometheus Operator's CRDs are not bundled: their objects get a
structural check in test_monitoring.py.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.deploy.support import (
    CRD_GROUPS,
    DEPLOY,
    EXAMPLES,
    KUSTOMIZATIONS,
    REPO,
    Doc,
    is_kubernetes_object,
    load_docs,
    render,
    yaml_files,
)

KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")


def _validate(doc: Doc, where: str) -> None:
    if str(doc["apiVersion"]).startswith(CRD_GROUPS):
        return
    name = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"{where}: {name} invalid for Kubernetes {version} at {path}: {exc.message}"
            )
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{where}: {name}: no schema for {doc['apiVersion']} {doc['kind']}")


def _manifest_files() -> list[Path]:
    return yaml_files(DEPLOY, EXAMPLES)


def test_there_are_manifests_to_check() -> None:
    files = _manifest_files()
    assert any(p.is_relative_to(DEPLOY) for p in files)


@pytest.mark.parametrize("path", _manifest_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_manifest_file_validates(path: Path) -> None:
    docs = [d for d in load_docs(path) if is_kubernetes_object(d)]
    for doc in docs:
        _validate(doc, str(path.relative_to(REPO)))


@pytest.mark.parametrize("directory", KUSTOMIZATIONS)
def test_kustomization_renders_valid_objects(directory: str) -> None:
    docs = render(directory)
    assert docs, f"{directory} rendered nothing"
    for doc in docs:
        _validate(doc, f"kubectl kustomize {directory}")


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
