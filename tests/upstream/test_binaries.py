"""The upstream programs scripts/build-kubernetes built are there and are the release they claim.

Each binary reports its own version (the version ldflags reached it), matching
versions.json; the Kubernetes wrapper module pins every staging module the
release's go.mod points at ./staging to the matching v0.x; the build script is
idempotent (a second run finds nothing to do). Missing binaries fail, naming the
script: a skipped check is not a pass.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
UPSTREAM = Path(os.environ.get("NPA_UPSTREAM", "/var/cache/netpol-agent/upstream"))
PROGRAMS = (
    "etcd",
    "etcdctl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-proxy",
    "kubectl",
    "flanneld",
    "cni-flannel",
    "crd-clusternetworkpolicies",
    "helm",
    "helm3",
)


def versions() -> dict[str, Any]:
    path = UPSTREAM / "versions.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `bash scripts/build-kubernetes`")
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def run(*argv: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def binary(program: str) -> str:
    entry = versions().get(program)
    if entry is None or not os.access(entry["path"], os.X_OK):
        pytest.fail(f"{program} is not built: run `bash scripts/build-kubernetes`")
    path: str = entry["path"]
    return path


def version(program: str) -> str:
    value: str = versions()[program]["version"]
    return value


def test_every_program_is_listed() -> None:
    assert sorted(versions()) == sorted(PROGRAMS)


@pytest.mark.parametrize("program", ["kube-apiserver", "kube-controller-manager", "kube-proxy"])
def test_kubernetes_servers_report_the_release(program: str) -> None:
    assert run(binary(program), "--version").strip() == f"Kubernetes {version(program)}"


def test_kubectl_reports_the_release() -> None:
    client = json.loads(run(binary("kubectl"), "version", "--client", "-o", "json"))
    info = client["clientVersion"]
    release = version("kubectl")
    assert info["gitVersion"] == release
    assert f"v{info['major']}.{info['minor']}." in release + "."
    assert info["gitTreeState"] == "clean"
    assert info["buildDate"] != "1970-01-01T00:00:00Z"


def test_etcd_reports_the_release() -> None:
    release = version("etcd").removeprefix("v")
    assert f"etcd Version: {release}\n" in run(binary("etcd"), "--version")
    assert f"etcdctl version: {release}\n" in run(binary("etcdctl"), "version")


def test_flanneld_reports_the_release() -> None:
    assert run(binary("flanneld"), "--version").strip() == version("flanneld")


@pytest.mark.parametrize("program", ["helm", "helm3"])
def test_helm_reports_the_release(program: str) -> None:
    assert run(binary(program), "version", "--short").strip() == version(program)


def test_flannel_cni_plugin_speaks_cni() -> None:
    out = run(binary("cni-flannel"), env={"CNI_COMMAND": "VERSION"})
    assert "0.4.0" in json.loads(out)["supportedVersions"]


def test_clusternetworkpolicy_crd_is_the_release_file() -> None:
    entry = versions()["crd-clusternetworkpolicies"]
    crd = yaml.safe_load(Path(entry["path"]).read_text(encoding="utf-8"))
    annotations = crd["metadata"]["annotations"]
    assert crd["metadata"]["name"] == "clusternetworkpolicies.policy.networking.k8s.io"
    assert annotations["policy.networking.k8s.io/bundle-version"] == entry["version"]
    assert annotations["policy.networking.k8s.io/channel"] == "experimental"
    assert "v1alpha2" in [v["name"] for v in crd["spec"]["versions"] if v["served"]]


def test_debian_cni_plugins_are_installed() -> None:
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        assert os.access(f"/usr/lib/cni/{plugin}", os.X_OK), f"/usr/lib/cni/{plugin}"


def test_staging_modules_are_pinned_from_the_release_go_mod() -> None:
    release = version("kube-apiserver")
    go = shutil.which("go") or "/usr/local/go/bin/go"  # where build-kubernetes looks too
    gomodcache = run(go, "env", "GOMODCACHE").strip()
    release_mod = Path(gomodcache, "cache/download/k8s.io/kubernetes/@v", f"{release}.mod")
    staging = set(re.findall(r"^\s*(k8s\.io/\S+) => \./staging/", release_mod.read_text(), re.M))
    assert len(staging) > 20
    wrapper = (UPSTREAM / "src" / "kubernetes" / "go.mod").read_text()
    pinned = dict(re.findall(r"^\s*(k8s\.io/\S+) => k8s\.io/\S+ (v\S+)$", wrapper, re.M))
    assert set(pinned) == staging
    assert set(pinned.values()) == {"v0." + release.removeprefix("v1.")}


def test_build_script_has_nothing_left_to_do() -> None:
    out = run("bash", str(REPO / "scripts" / "build-kubernetes"), "--check")
    assert "up to date" in out
