"""The lab on a real Kubernetes control plane: upstream etcd, kube-apiserver,
kube-controller-manager, kube-proxy, flanneld and CNI plugins (`lab up --control-plane real`)."""
