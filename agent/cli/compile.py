"""`netpol-agent compile`: the exact ipsets and iptables rules the agent would apply on a node.

A dry run you can read: loads Namespaces, Pods, NetworkPolicies,
ClusterNetworkPolicies and Nodes from manifests, compiles the ruleset for
`--node`, and prints what a fresh agent would feed to `ipset restore` and to
`iptables-restore --noflush` (one payload per family), comments included.
Nothing touches the kernel. docs/rules.md walks through the output.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.cli._manifests import add_manifest_option, load_manifests
from agent.core.model import Family


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compile",
        help="print the ipsets and iptables-restore payload for one node (dry run)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    add_manifest_option(p)
    p.add_argument("--node", required=True, metavar="NAME", help="the node to compile for")
    p.add_argument(
        "--family", type=int, choices=[4, 6], help="only this address family (default: both)"
    )
    p.add_argument("--drop-action", choices=["drop", "reject"], default="drop")
    p.add_argument(
        "--allow-cidr",
        dest="allow_cidrs",
        action="append",
        default=[],
        metavar="CIDR",
        help="extra sources always allowed to reach this node's pods (repeatable)",
    )
    p.add_argument("--mark-bit", type=int, default=21, metavar="N")
    p.add_argument("--connmark-bit", type=int, default=22, metavar="N")
    p.add_argument(
        "--stats", action="store_true", help="print chain, rule and set counts to stderr"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.core.compile import CompileOptions, compile_ruleset
    from agent.core.errors import ConfigError, InputError
    from agent.core.render import plan

    _, state = load_manifests(args.files)
    families = (Family(args.family),) if args.family else (Family.V4, Family.V6)
    options = CompileOptions(
        mark_bit=args.mark_bit,
        connmark_bit=args.connmark_bit,
        drop_action=args.drop_action,
        allow_cidrs=tuple(args.allow_cidrs),
        families=families,
    )
    if args.node not in state.nodes:
        print(
            f"note: no Node {args.node} in the manifests: its own addresses are unknown, so "
            "only --allow-cidr sources get the node pass (add the Node object)",
            file=sys.stderr,
        )
    if not any(p.node == args.node for p in state.pods.values()):
        print(f"note: no pod is scheduled on {args.node} (spec.nodeName)", file=sys.stderr)
    for policy in sorted(state.policies.values(), key=lambda p: p.key):
        for error in policy.errors:
            print(f"warning: {error} (the policy allows nothing)", file=sys.stderr)
    try:
        ruleset = compile_ruleset(state, node=args.node, options=options)
    except ConfigError as exc:
        raise InputError(str(exc)) from exc
    full = plan(None, ruleset)
    out = [f"# netpol-agent compile --node {args.node}: `ipset restore` input", ""]
    for ipset in ruleset.sets.values():
        if ipset.family not in families:
            continue
        out.append(f"# {ipset.description}")
        out.append(ipset.create_line())
        out.extend(ipset.add_lines())
        out.append("")
    for family in families:
        tool = "ip6tables-restore" if family is Family.V6 else "iptables-restore"
        out.append(f"# IPv{int(family)}: `{tool} --noflush` input")
        out.append(full.payload(family, {}).rstrip("\n"))
        out.append("")
    sys.stdout.write("\n".join(out))
    if args.stats:
        for family in families:
            table = ruleset.table(family)
            sets = ruleset.sets_of(family)
            members = sum(len(s.members) + len(s.nomatch) for s in sets)
            print(
                f"IPv{int(family)}: {len(table.chains)} chains, {table.rule_count()} rules, "
                f"{len(sets)} sets, {members} set entries",
                file=sys.stderr,
            )
    return 0
