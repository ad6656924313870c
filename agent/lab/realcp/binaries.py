"""Where the real control plane's programs are, and a clear error when one is missing.

The upstream programs (kube-apiserver, kube-controller-manager, kube-proxy,
kubectl, etcd, etcdctl, flanneld and the flannel CNI meta-plugin) are built
from their Go modules by `scripts/build-kubernetes` into a cache outside the
repository, `${NPA_UPSTREAM:-/var/cache/netpol-agent/upstream}/bin/`. The
reference CNI plugins (bridge, host-local, portmap) come from Debian's
`containernetworking-plugins` in /usr/lib/cni. Nothing here builds or
downloads anything: a missing program is named together with the command
that provides it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agent.lab.topology import LabError

UPSTREAM_ENV = "NPA_UPSTREAM"
DEFAULT_UPSTREAM = Path("/var/cache/netpol-agent/upstream")
PROGRAMS = (
    "etcd",
    "etcdctl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-proxy",
    "kubectl",
    "flanneld",
)
# The flannel CNI meta-plugin (Debian's containernetworking-plugins dropped it): the
# build script installs it as <upstream>/cni/flannel.
FLANNEL_CNI_NAMES = ("cni/flannel", "bin/flannel-cni")
DEBIAN_CNI_DIR = Path("/usr/lib/cni")
DEBIAN_CNI_PLUGINS = ("bridge", "host-local", "portmap")
BUILD_HINT = "build them with `bash scripts/build-kubernetes` (it caches them outside the repo)"


class MissingBinaries(LabError):
    """An upstream program the real control plane needs is not installed."""


def upstream_dir() -> Path:
    """The build cache: $NPA_UPSTREAM, else /var/cache/netpol-agent/upstream."""
    return Path(os.environ.get(UPSTREAM_ENV) or DEFAULT_UPSTREAM)


@dataclass(frozen=True, slots=True)
class Binaries:
    """Absolute paths of every program a real-control-plane lab runs."""

    bin_dir: Path
    flannel_cni: Path
    cni_dir: Path = DEBIAN_CNI_DIR

    def path(self, program: str) -> str:
        return str(self.bin_dir / program)

    def cni_plugins(self) -> dict[str, Path]:
        """CNI plugin name -> binary (the names a conflist's `type` fields use)."""
        out = {name: self.cni_dir / name for name in DEBIAN_CNI_PLUGINS}
        out["flannel"] = self.flannel_cni
        return out


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find(upstream: Path | None = None) -> Binaries:
    """Every program, or MissingBinaries listing all that are absent and how to get them."""
    root = upstream or upstream_dir()
    bin_dir = root / "bin"
    missing = [p for p in PROGRAMS if not _executable(bin_dir / p)]
    flannel_cni = next((root / n for n in FLANNEL_CNI_NAMES if _executable(root / n)), None)
    if flannel_cni is None:
        missing.append(f"the flannel CNI plugin ({root / FLANNEL_CNI_NAMES[0]})")
    problems = []
    if missing:
        problems.append(f"{', '.join(missing)} not found in {bin_dir}: {BUILD_HINT}")
    absent_cni = [n for n in DEBIAN_CNI_PLUGINS if not _executable(DEBIAN_CNI_DIR / n)]
    if absent_cni:
        problems.append(
            f"CNI plugins {', '.join(absent_cni)} not found in {DEBIAN_CNI_DIR}: "
            "install Debian's containernetworking-plugins (`bash scripts/setup` does)"
        )
    if problems:
        raise MissingBinaries(
            "--control-plane real needs upstream programs: " + "; ".join(problems)
        )
    assert flannel_cni is not None
    return Binaries(bin_dir=bin_dir, flannel_cni=flannel_cni)
