"""Revoking the fast path: clear the connmark bit of every flow when what is allowed narrows.

A flow allowed once carries the `--connmark-bit` in its conntrack entry, and
NPA-FORWARD accepts its later packets right after the conntrack rules
(docs/rules.md): a one-way UDP stream, which stays NEW in conntrack, then
costs three rules per packet instead of the whole verdict. When a change
narrows what is allowed (a rule, a set member gone, a pod newly isolated),
flows that were allowed must be judged again: clearing the bit on every
entry makes their next packet walk the verdict, which drops it if it is no
longer allowed. `conntrack -U -f FAMILY --mark 0/BIT` zeroes only our bit
(other bits of the mark are kept) in one pass over the table; the family is
required (without it the kernel refuses a masked update).

Deleting the entries of flows no longer allowed (so even ESTABLISHED ones
stop) is the conntrack revocation of issue 14; this is the minimum that keeps
the fast path from outliving a narrowing.
"""

from __future__ import annotations

import subprocess

from agent.core.errors import ApplyError
from agent.core.model import Family


def clear_marks(family: Family, connmark: int) -> None:
    """Zero bit(s) `connmark` in the mark of every conntrack entry of `family`."""
    argv = ["conntrack", "-U", "-f", "ipv4" if family is Family.V4 else "ipv6"]
    argv += ["--mark", f"0/{connmark:#x}"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ApplyError(f"conntrack: {exc}") from exc
    # An empty table is not an error ("0 flow entries have been updated").
    if proc.returncode != 0 and " 0 flow entries" not in proc.stderr:
        raise ApplyError(f"{' '.join(argv)}: {proc.stderr.strip()}")
