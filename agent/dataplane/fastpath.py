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

import logging
import subprocess

from agent.core.model import Family

log = logging.getLogger(__name__)
ATTEMPTS = 3


def clear_marks(family: Family, connmark: int) -> bool:
    """Zero bit(s) `connmark` in the mark of every conntrack entry of `family`.

    Best effort: on a busy table the tool's dump can overflow its netlink buffer
    ("No buffer space available"); it is retried, and a last failure is logged
    and reported (False) rather than failing the sync: the flows concerned keep
    the fast path, as established flows keep their conntrack entry.
    """
    argv = ["conntrack", "-U", "-f", "ipv4" if family is Family.V4 else "ipv6"]
    argv += ["--mark", f"0/{connmark:#x}"]
    error = ""
    for _ in range(ATTEMPTS):
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError as exc:
            error = str(exc)
            break
        # An empty table is not an error ("0 flow entries have been updated").
        if proc.returncode == 0 or " 0 flow entries" in proc.stderr:
            return True
        error = proc.stderr.strip()
    log.warning("could not clear the fast-path mark: %s", error, extra={"argv": argv})
    return False
