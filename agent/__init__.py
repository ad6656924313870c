"""netpol-agent: NetworkPolicy enforcement for clusters whose CNI has none."""

__version__ = "0.1.0"
