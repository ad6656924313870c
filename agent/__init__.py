"""netpol-agent: NetworkPolicy enforcement for clusters whose CNI has none."""

__version__ = "0.2.0"
