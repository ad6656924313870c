"""The real control plane's pure parts: binaries, configurations, the per-kind convergence."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import InputError
from agent.lab.probe import kind_lag
from agent.lab.realcp import binaries, cni, crds, flannel, kubeproxy
from agent.lab.state import LabConfig
from agent.lab.topology import FLANNELD, node_commands


def test_missing_binaries_name_the_build_script(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    etcd = tmp_path / "bin" / "etcd"
    etcd.write_text("#!/bin/sh\n")
    etcd.chmod(0o755)
    with pytest.raises(binaries.MissingBinaries) as err:
        binaries.find(tmp_path)
    message = str(err.value)
    assert "scripts/build-kubernetes" in message
    assert "kube-apiserver" in message and "flannel CNI plugin" in message
    assert "etcd," not in message.split("not found")[0].split(": ", 1)[1].replace("etcdctl", "")


def test_conflist_is_flannels_with_private_paths(tmp_path: Path) -> None:
    files = flannel.NodeFiles(tmp_path / "nodes" / "node-0")
    conf = cni.node_conflist(files)
    plugin = conf["plugins"][0]
    assert conf["name"] == "cbr0" and conf["cniVersion"] == "0.3.1"
    assert plugin["delegate"] == {"hairpinMode": True, "isDefaultGateway": True}
    assert conf["plugins"][1] == {"type": "portmap", "capabilities": {"portMappings": True}}
    paths = [plugin["subnetFile"], plugin["dataDir"], plugin["ipam"]["dataDir"]]
    assert all(p.startswith(str(files.root)) for p in paths)
    assert cni.FLANNEL_CONFLIST["plugins"][0].keys() == {"type", "delegate"}  # not mutated


def test_kube_proxy_leaves_conntrack_settings_alone(tmp_path: Path) -> None:
    bins = binaries.Binaries(bin_dir=tmp_path, flannel_cni=tmp_path / "flannel")
    topo = LabConfig(name="u", control_plane="real").topology()
    spec = kubeproxy.kube_proxy(bins, topo.nodes[0], kubeconfig=tmp_path / "k")
    conntrack = [a for a in spec.argv if a.startswith("--conntrack")]
    assert conntrack and all(a.endswith("=0") for a in conntrack)
    assert spec.netns == topo.nodes[0].netns
    assert "--proxy-mode=iptables" in spec.argv


def test_real_nodes_get_only_their_underlay() -> None:
    topo = LabConfig(name="u", control_plane="real").topology()
    assert topo.overlay == FLANNELD
    lines = node_commands(topo, topo.nodes[1])
    assert not any("cni0" in line or "flannel.1" in line for line in lines)
    with pytest.raises(InputError, match="--ipv6"):
        LabConfig(name="u", control_plane="real", ipv6=True).topology()


def test_kind_lag_needs_every_kind_applied() -> None:
    kinds = {"pods": (50, 3), "namespaces": (10, 2)}
    good = {
        "ready": True,
        "synced_resource_versions": {"pods": "60", "namespaces": "60"},
        "resource_versions": {"pods": "60", "namespaces": "60"},
        "objects": {"pods": 3, "namespaces": 2},
    }
    assert kind_lag(good, kinds) == ""
    behind = {**good, "synced_resource_versions": {"pods": "40", "namespaces": "60"}}
    assert "pods: synced 40 < 50" in kind_lag(behind, kinds)
    deleting = {**good, "objects": {"pods": 4, "namespaces": 2}}
    assert "holds 4" in kind_lag(deleting, kinds)
    pending = {**good, "resource_versions": {"pods": "61", "namespaces": "60"}}
    assert "received 61, applied 60" in kind_lag(pending, kinds)
    assert kind_lag("unreachable: refused", kinds) == "unreachable: refused"


def test_missing_crd_names_the_file_and_the_build_script(tmp_path: Path) -> None:
    with pytest.raises(binaries.MissingBinaries) as err:
        crds.find(tmp_path)
    assert "policy.networking.k8s.io_clusternetworkpolicies.yaml" in str(err.value)
    assert "scripts/build-kubernetes" in str(err.value)
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / crds.CRD_FILES[0]).write_text("kind: CustomResourceDefinition\n")
    assert crds.find(tmp_path) == [tmp_path / "crds" / crds.CRD_FILES[0]]
