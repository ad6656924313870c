"""The kernel edge: the only code that runs iptables, ipset, conntrack or imports pyroute2/iptc."""
