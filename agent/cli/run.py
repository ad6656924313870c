"""`netpol-agent run`: the node agent itself, as run by the DaemonSet on every node.

The flags mirror docs/operations.md and /work/notes/interfaces.md exactly; each
has an environment variable (flag, then environment, then default). Parsing
only collects what was given; `agent.node.settings` merges and validates.
"""

from __future__ import annotations

import argparse
import sys

from agent.core.errors import ConfigError

_DESCRIPTION = """\
Watch Pods, Namespaces, NetworkPolicies, Nodes and ClusterNetworkPolicies (when the
CRD is installed) through the Kubernetes API and keep this node's iptables/ipset rules
in step with them. Nothing is written to the kernel until every kind has been listed;
rules stay in place on SIGTERM and the next start adopts them. Metrics, health and
drop events (/metrics /healthz /readyz /statusz /drops) are served on
--metrics-bind-address.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the node agent (the DaemonSet's command)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=_run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The run flags; every default is None so that settings can tell 'not given'."""
    add = parser.add_argument
    add("--node-name", metavar="NAME", help="this node's Node name [env NODE_NAME] (required)")
    add(
        "--kubeconfig",
        metavar="PATH",
        help="kubeconfig file [env KUBECONFIG]; default: in-cluster service account",
    )
    add(
        "--backend",
        choices=["auto", "nft", "legacy", "python-iptables"],
        help="iptables backend; auto detects nft vs legacy like kube-proxy "
        "[env NETPOL_BACKEND] (default auto)",
    )
    add(
        "--resync-interval",
        type=float,
        metavar="SECONDS",
        help="periodic full resync, repairs drift [env NETPOL_RESYNC_INTERVAL] (default 60)",
    )
    add(
        "--drop-action",
        choices=["drop", "reject"],
        help="what happens to traffic no policy allows [env NETPOL_DROP_ACTION] (default drop)",
    )
    add(
        "--allow-cidr",
        dest="allow_cidrs",
        action="append",
        metavar="CIDR",
        help="extra source range always allowed in, e.g. monitoring; repeatable "
        "[env NETPOL_ALLOW_CIDRS, comma-separated]",
    )
    add(
        "--mark-bit",
        type=int,
        metavar="N",
        help="packet mark bit used (masked) for 'allowed'; never 14/15 (kube-proxy) "
        "[env NETPOL_MARK_BIT] (default 21 = 0x200000)",
    )
    add(
        "--connmark-bit",
        type=int,
        metavar="N",
        help="conntrack mark bit of the fast path (flows already allowed); never 14/15 "
        "nor the --mark-bit [env NETPOL_CONNMARK_BIT] (default 22 = 0x400000)",
    )
    add(
        "--metrics-bind-address",
        metavar="HOST:PORT",
        help="address for /metrics /healthz /readyz /statusz "
        "[env NETPOL_METRICS_BIND_ADDRESS] (default 0.0.0.0:9847)",
    )
    add(
        "--log-format",
        choices=["json", "text"],
        help="log format [env NETPOL_LOG_FORMAT] (default json, text when stderr is a terminal)",
    )
    add(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="log level [env NETPOL_LOG_LEVEL] (default info)",
    )
    add(
        "--nflog-group",
        type=int,
        metavar="N",
        help="NFLOG group the drop path logs to and the agent reads drop events from; "
        "-1: none [env NETPOL_NFLOG_GROUP] (default 100)",
    )
    add(
        "--enforcement",
        choices=["enforce", "audit"],
        help="audit: evaluate every policy but enforce none, reporting what would be "
        "dropped as audit events [env NETPOL_ENFORCEMENT] (default enforce)",
    )
    add(
        "--revoke-established",
        choices=["true", "false"],
        help="after a sync that narrows what is allowed, delete the conntrack entries of "
        "flows the rules no longer allow [env NETPOL_REVOKE_ESTABLISHED] (default true)",
    )
    add(
        "--new-pods",
        choices=["hold", "allow"],
        help="hold: while a pod scheduled here would be isolated, drop traffic of pod "
        "addresses whose rules are not programmed yet; allow: no hold "
        "[env NETPOL_NEW_PODS] (default hold)",
    )


FLAG_FIELDS = (
    "node_name",
    "kubeconfig",
    "backend",
    "resync_interval",
    "drop_action",
    "allow_cidrs",
    "mark_bit",
    "connmark_bit",
    "metrics_bind_address",
    "log_format",
    "log_level",
    "nflog_group",
    "enforcement",
    "revoke_established",
    "new_pods",
)


def _run(args: argparse.Namespace) -> int:
    from agent.node import settings as settings_mod

    flags = {name: getattr(args, name) for name in FLAG_FIELDS}
    try:
        settings = settings_mod.load(flags)
    except ConfigError as exc:
        print(f"netpol-agent run: {exc}", file=sys.stderr)
        return 2
    from agent.node.agent import run_agent

    return run_agent(settings)
