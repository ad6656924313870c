"""Scratch network namespaces we create, use and always remove (tests, lab, bench).

    netns      names (`npa-<purpose>-<hex>`), create/remove, `ip netns exec`, stale sweep
    processes  pid + start time records, so a recycled pid is never taken for its owner
    setns      move the calling thread into a namespace (ctypes setns) for a `with` block
    sockets    TCP/UDP echo servers and concurrent probes across namespaces, one process
    topology   veths, addresses, sysctls; a Flannel-like node (cni0) with pod namespaces

Nothing here touches the caller's own namespace: links are created inside the
namespaces they belong to, and every namespace is removed on exit, by context
managers, atexit, or the next run's sweep of namespaces whose creator died.
"""
