"""Helpers for the deploy tests: where the manifests are, rendering and loading them.

`kubectl kustomize` renders the kustomizations: the kubectl scripts/build-kubernetes
built (a fresh machine may have no other), else the one on PATH; without either
the rendering tests fail, saying so. Loading never needs a cluster.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EXAMPLES = REPO / "examples"
KUSTOMIZATIONS = (
    "deploy/base",
    "deploy/monitoring",
    "deploy/cleanup",
    "deploy/overlays/kind-flannel",
    "deploy/overlays/kind-flannel/cleanup",
)
# Kubernetes API groups whose schemas kubernetes-validate does not bundle (CRDs;
# ClusterNetworkPolicy objects are checked by agent.core.policyapi's own validation).
CRD_GROUPS = ("monitoring.coreos.com/", "policy.networking.k8s.io/")
# YAML documents that are configuration for tools, not Kubernetes objects.
TOOL_GROUPS = ("kustomize.config.k8s.io/", "kind.x-k8s.io/")

Doc = dict[str, Any]


HELM_CHART = DEPLOY / "helm" / "netpol-agent"


def yaml_files(*roots: Path) -> list[Path]:
    """The YAML files under `roots`, but not Helm templates (YAML only once rendered)."""
    files: list[Path] = []
    for root in roots:
        files.extend(
            p
            for p in root.rglob("*")
            if p.suffix in (".yaml", ".yml")
            and p.is_file()
            and not p.is_relative_to(HELM_CHART / "templates")
        )
    return sorted(files)


def load_docs(path: Path) -> list[Doc]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def is_kubernetes_object(doc: Doc) -> bool:
    api = str(doc.get("apiVersion", ""))
    return bool(api and doc.get("kind")) and not api.startswith(TOOL_GROUPS)


UPSTREAM_BIN = Path(os.environ.get("NPA_UPSTREAM", "/var/cache/netpol-agent/upstream")) / "bin"


def upstream_tool(name: str) -> str:
    """A program scripts/build-kubernetes builds (kubectl, helm): the built one, else PATH's."""
    built = UPSTREAM_BIN / name
    path = str(built) if os.access(built, os.X_OK) else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run `bash scripts/build-kubernetes` (it builds {built})")
    return path


def run_tool(program: str, *args: str, timeout: float = 180) -> str:
    """Run an upstream program (see upstream_tool) from the repository root; its stdout.

    A non-zero exit fails the test with the command and everything it printed."""
    done = subprocess.run(
        [upstream_tool(program), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"{program} {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def kubectl() -> str:
    return upstream_tool("kubectl")


@functools.cache
def _render_text(directory: str) -> str:
    done = subprocess.run(
        [kubectl(), "kustomize", str(REPO / directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return done.stdout


def render(directory: str) -> list[Doc]:
    """The objects `kubectl kustomize <directory>` renders (a fresh copy each call)."""
    return [d for d in yaml.safe_load_all(_render_text(directory)) if d is not None]


def find(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    matches = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def containers(pod_spec: Doc) -> Iterator[Doc]:
    yield from pod_spec.get("initContainers", [])
    yield from pod_spec.get("containers", [])


KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")


def validate(doc: Doc, where: str) -> None:
    """Fail naming the object and field unless `doc` is valid for every supported version."""
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
