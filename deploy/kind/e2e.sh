#!/usr/bin/env bash
# End-to-end check on a real cluster, for machines with Docker and kind:
#   1. creates a kind cluster without its default CNI and installs Flannel
#      (plus the CNI bridge/host-local/portmap plugins Flannel delegates to);
#   2. builds the image with Docker and loads it into the nodes;
#   3. deploys deploy/overlays/kind-flannel and waits for every agent to be ready;
#   4. for each example (default: the seed examples examples/001-*), creates its
#      namespaces, pods (agnhost porter serving every probed port) and policies,
#      probes every pod pair with `kubectl exec ... agnhost connect`, and compares
#      the observed table with `netpol-agent reachability` on the same objects;
#   5. uninstalls as docs/install.md says (cleanup DaemonSet, then the objects)
#      and checks no NPA-* chain or npa-* set is left on any node;
#   6. deletes the cluster (KEEP_CLUSTER=1 keeps it).
# It cannot run on the development VM (no Docker engine); CI runs shellcheck on it.
#
# Usage: deploy/kind/e2e.sh [EXAMPLE_DIR...]
# Environment: CLUSTER_NAME (netpol-e2e), FLANNEL_VERSION, CNI_PLUGINS_VERSION,
#   KIND_NODE_IMAGE, KEEP_CLUSTER, SETTLE_SECONDS (wait after applying policies, 5),
#   NETPOL_AGENT (the CLI used for `reachability`; default: netpol-agent, else .venv)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cluster=${CLUSTER_NAME:-netpol-e2e}
flannel_version=${FLANNEL_VERSION:-v0.26.7}
cni_version=${CNI_PLUGINS_VERSION:-v1.6.2}
image=localhost/netpol-agent:dev
settle=${SETTLE_SECONDS:-5}
work=$(mktemp -d)
failures=0

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

cleanup() {
    rm -rf "$work"
    if [[ ${KEEP_CLUSTER:-0} != 1 ]]; then
        kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

for tool in docker kind kubectl curl python3; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
if [[ -n ${NETPOL_AGENT:-} ]]; then
    npa=$NETPOL_AGENT
elif command -v netpol-agent >/dev/null; then
    npa=netpol-agent
elif [[ -x $repo/.venv/bin/netpol-agent ]]; then
    npa=$repo/.venv/bin/netpol-agent
else
    die "netpol-agent is not installed (bash scripts/setup, or pip install -e .)"
fi
python=python3
[[ -x $repo/.venv/bin/python ]] && python=$repo/.venv/bin/python
"$python" -c 'import yaml' 2>/dev/null || die "$python needs PyYAML"

examples=("$@")
if ((${#examples[@]} == 0)); then
    examples=("$repo"/examples/001-*)
fi

log "kind cluster $cluster (no default CNI)"
node_image_args=()
[[ -n ${KIND_NODE_IMAGE:-} ]] && node_image_args=(--image "$KIND_NODE_IMAGE")
kind create cluster --name "$cluster" --config "$here/cluster.yaml" "${node_image_args[@]}" --wait 0s
context=kind-$cluster
kubectl config use-context "$context" >/dev/null
mapfile -t nodes < <(kind get nodes --name "$cluster")

log "CNI plugins $cni_version into every node (Flannel delegates to bridge)"
arch=$(docker exec "${nodes[0]}" uname -m)
case $arch in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
curl -fsSL -o "$work/cni.tgz" \
    "https://github.com/containernetworking/plugins/releases/download/$cni_version/cni-plugins-linux-$arch-$cni_version.tgz"
mkdir -p "$work/cni"
tar -xzf "$work/cni.tgz" -C "$work/cni" ./bridge ./host-local ./portmap ./loopback
for node in "${nodes[@]}"; do
    for plugin in bridge host-local portmap loopback; do
        docker cp "$work/cni/$plugin" "$node:/opt/cni/bin/$plugin"
    done
done

log "Flannel $flannel_version"
kubectl apply -f "https://github.com/flannel-io/flannel/releases/download/$flannel_version/kube-flannel.yml"
kubectl -n kube-flannel rollout status daemonset/kube-flannel-ds --timeout=300s
kubectl wait --for=condition=Ready nodes --all --timeout=300s

log "image $image"
docker build -t "$image" "$repo"
kind load docker-image "$image" --name "$cluster"

log "deploy/overlays/kind-flannel"
kubectl apply -k "$repo/deploy/overlays/kind-flannel"
kubectl -n netpol-agent rollout status daemonset/netpol-agent --timeout=300s

run_example() {
    local dir=$1 name want_ports namespaces=()
    name=$(basename "$dir")
    log "example $name"
    want_ports=$work/$name-ports.json
    "$npa" reachability -f "$dir" -o json >"$want_ports" || true
    [[ -s $want_ports ]] || { echo "reachability failed on $dir" >&2; return 1; }
    mapfile -t namespaces < <("$python" -c 'import json,sys
print("\n".join(sorted({p.split("/")[0] for p in json.load(open(sys.argv[1]))["pods"]})))' "$want_ports")
    [[ -f $dir/namespaces.yaml ]] && kubectl apply -f "$dir/namespaces.yaml"
    for ns in "${namespaces[@]}"; do
        kubectl get namespace "$ns" >/dev/null 2>&1 || kubectl create namespace "$ns"
    done
    "$python" "$here/e2e.py" pods "$dir" "$want_ports" | kubectl apply -f -
    for ns in "${namespaces[@]}"; do
        kubectl -n "$ns" wait --for=condition=Ready pods --all --timeout=180s
    done
    [[ -f $dir/policies.yaml ]] && kubectl apply -f "$dir/policies.yaml"
    sleep "$settle"

    # The same objects as the cluster has them (real pod IPs), for reachability.
    local objects=$work/$name-objects
    mkdir -p "$objects"
    [[ -f $dir/namespaces.yaml ]] && cp "$dir/namespaces.yaml" "$objects/"
    [[ -f $dir/policies.yaml ]] && cp "$dir/policies.yaml" "$objects/"
    "$python" "$here/e2e.py" dump "${namespaces[@]}" >"$objects/pods.yaml"
    "$python" "$here/e2e.py" probe "$want_ports" "${namespaces[@]}" >"$work/$name-observed.txt"

    local status=0
    "$npa" reachability -f "$objects" --expect "$work/$name-observed.txt" || status=$?
    if ((status == 0)); then
        echo "PASS $name"
    else
        echo "FAIL $name (observed table above differs from netpol-agent reachability)"
    fi

    [[ -f $dir/policies.yaml ]] && kubectl delete --wait=false -f "$dir/policies.yaml" || true
    for ns in "${namespaces[@]}"; do
        kubectl -n "$ns" delete pods --all --grace-period=0 --wait=true >/dev/null || true
        case $ns in default | kube-*) ;; *) kubectl delete namespace "$ns" --wait=false || true ;; esac
    done
    return "$status"
}

for dir in "${examples[@]}"; do
    run_example "$dir" || failures=$((failures + 1))
done

log "uninstall: cleanup DaemonSet on every node, then the objects"
kubectl -n netpol-agent delete daemonset netpol-agent --wait=true
kubectl apply -k "$repo/deploy/overlays/kind-flannel/cleanup"
kubectl -n netpol-agent rollout status daemonset/netpol-agent-cleanup --timeout=180s
kubectl delete -k "$repo/deploy/overlays/kind-flannel/cleanup" --wait=true
kubectl delete -k "$repo/deploy/overlays/kind-flannel" --ignore-not-found --wait=true
for node in "${nodes[@]}"; do
    left=$(docker exec "$node" sh -c \
        'for v in legacy nft; do iptables-$v-save; ip6tables-$v-save; done 2>/dev/null
         ipset list -n 2>/dev/null' | grep -c -e NPA- -e '^npa-' || true)
    if [[ $left != 0 ]]; then
        echo "FAIL uninstall: $left netpol-agent chains/sets left on $node"
        failures=$((failures + 1))
    fi
done

if ((failures)); then
    die "$failures failure(s)"
fi
echo "e2e: all passed"
