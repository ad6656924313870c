"""Shared test configuration.

Address plan (used by every test, the lab and the examples):

    node i (i = 0, 1, ...)   name "node-<i>", podCIDR 10.244.<i>.0/24 and fd00:10:244:<i>::/64
    cni0 bridge gateway      10.244.<i>.1 / fd00:10:244:<i>::1 (a node address)
    pods                     10.244.<i>.10 upwards / fd00:10:244:<i>::a upwards
    node underlay            172.18.0.<i+2>/24, fd00:172:18::<i+2>/64 (between node namespaces only)
    "external" addresses     192.0.2.0/24, 198.51.100.0/24 (TEST-NET), 2001:db8::/32

The upstream e2e model: namespaces x, y, z labelled ns=<name>; pods a, b, c
labelled pod=<name> in each; ports 80 and 81 on TCP, UDP and SCTP.

Kernel tests create network namespaces named `npa-<purpose>-<random>` and
remove them even when a test fails; they never touch the host namespace.
"""
