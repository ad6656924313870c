"""The lab: an API server, node namespaces and lab kubelets, driven with kubectl."""
