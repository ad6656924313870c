"""etcd, kube-apiserver and kube-controller-manager in the lab's control-plane namespace.

They run inside the underlay namespace `npa-lab-<name>-net`, where the
bridge's 172.18.0.1 is the cluster's API address (as kind's control-plane
container sits on the docker network): etcd on that namespace's own
127.0.0.1, the API server on :6443 of every address there. The controller
manager runs only the controllers a Flannel cluster with our lab kubelet
needs (see CONTROLLERS); node lifecycle is left out because lab nodes post no
heartbeats, so nodes never turn NotReady and pods are never evicted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.lab.realcp.binaries import Binaries
from agent.lab.realcp.pki import KeyPair
from agent.lab.realcp.procs import ProgramSpec
from agent.lab.topology import API_IP

API_PORT = 6443
ETCD_URL = "http://127.0.0.1:2379"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
NODE_CIDR_MASK = 24
ISSUER = "https://kubernetes.default.svc.cluster.local"
CONTROLLERS = (
    "serviceaccount",  # the `default` ServiceAccount of every namespace
    "serviceaccount-token",  # token Secrets for ServiceAccounts that ask for one
    "namespace",  # namespace deletion empties and then removes the namespace
    "nodeipam",  # each Node's spec.podCIDR from the cluster CIDR
    "endpointslice",  # Services' endpoints, what kube-proxy reads
    "endpointslicemirroring",
    "endpoint",  # the legacy Endpoints (kubectl get endpoints)
    "garbagecollector",  # EndpointSlices of deleted Services go by ownerReference
    "root-ca-cert-publisher",  # kube-root-ca.crt in every namespace
)
API_SERVER_SANS = (
    API_IP,
    "127.0.0.1",
    KUBERNETES_SERVICE_IP,
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True, slots=True)
class ControlPlaneFiles:
    ca: KeyPair
    apiserver: KeyPair
    service_account: KeyPair
    controller_manager_kubeconfig: Path
    etcd_dir: Path
    controller_manager_dir: Path


def etcd(bins: Binaries, netns: str, files: ControlPlaneFiles) -> ProgramSpec:
    return ProgramSpec(
        name="etcd",
        netns=netns,
        argv=(
            bins.path("etcd"),
            "--name=lab",
            f"--data-dir={files.etcd_dir}",
            f"--listen-client-urls={ETCD_URL}",
            f"--advertise-client-urls={ETCD_URL}",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            "--initial-cluster=lab=http://127.0.0.1:2380",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--unsafe-no-fsync",  # a lab's data is thrown away at `lab down`
            "--log-level=warn",
        ),
    )


def apiserver(bins: Binaries, netns: str, files: ControlPlaneFiles) -> ProgramSpec:
    return ProgramSpec(
        name="kube-apiserver",
        netns=netns,
        argv=(
            bins.path("kube-apiserver"),
            f"--etcd-servers={ETCD_URL}",
            "--bind-address=0.0.0.0",
            f"--secure-port={API_PORT}",
            f"--advertise-address={API_IP}",
            f"--tls-cert-file={files.apiserver.cert}",
            f"--tls-private-key-file={files.apiserver.key}",
            f"--client-ca-file={files.ca.cert}",
            f"--cert-dir={files.apiserver.cert.parent}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={ISSUER}",
            f"--service-account-key-file={files.service_account.cert}",
            f"--service-account-signing-key-file={files.service_account.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-node-port-range=30000-32767",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=0",
        ),
    )


def controller_manager(bins: Binaries, netns: str, files: ControlPlaneFiles) -> ProgramSpec:
    kubeconfig = str(files.controller_manager_kubeconfig)
    return ProgramSpec(
        name="kube-controller-manager",
        netns=netns,
        argv=(
            bins.path("kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            "--controllers=" + ",".join(CONTROLLERS),
            "--allocate-node-cidrs=true",
            f"--cluster-cidr={CLUSTER_CIDR}",
            f"--node-cidr-mask-size={NODE_CIDR_MASK}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={files.service_account.key}",
            f"--root-ca-file={files.ca.cert}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--cert-dir={files.controller_manager_dir}",
            "--profiling=false",
            "--v=0",
        ),
    )
