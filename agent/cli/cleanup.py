"""`netpol-agent cleanup`: remove every chain, rule and ipset netpol-agent owns, nothing else.

Run it on a node after removing the DaemonSet (or from its preStop hook). With
`--backend auto` (the default) both iptables variants are cleaned, so rules
left by an agent that ran with the other variant go too.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.dataplane.backend import BACKENDS


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cleanup",
        help="remove every iptables chain/rule and ipset netpol-agent owns",
        description=__doc__,
    )
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="iptables variant to clean (auto: both legacy and nft)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.dataplane.backend import Backend, select_backend
    from agent.dataplane.cleanup import cleanup

    if args.backend == "auto":
        backends = [Backend(name="legacy", mode="legacy"), Backend(name="nft", mode="nft")]
    else:
        backends = [select_backend(args.backend)]
    report = cleanup(backends)
    print(
        f"removed {report.chains} chains, {report.rules} rules in other chains "
        f"and {report.sets} ipsets"
    )
    if report.kept_sets:
        print(
            f"kept ipsets still in use by rules of another iptables variant: "
            f"{', '.join(report.kept_sets)} (run with --backend auto)"
        )
        return 1
    return 0
