"""`netpol-agent bench`: speed and size measured against the kernel's own cost."""
