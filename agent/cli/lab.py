"""`netpol-agent lab up|down|status|kubeconfig|probe|exec|drops`: a local cluster, for real.

See docs/lab.md. `up` prints the kubeconfig path as its last line, so
`export KUBECONFIG=$(netpol-agent lab up | tail -1)` works.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

_DESCRIPTION = """\
A kind-like cluster in network namespaces: N nodes on a Flannel-like VXLAN overlay, an
in-memory API server for kubectl, a lab kubelet per node that gives pods a namespace, an IP
and listeners on their containerPorts, and the real `netpol-agent run` on every node.
Needs root. Everything lives in namespaces named npa-lab-<name>-*; `lab down` removes it.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="a local multi-node lab cluster in network namespaces",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", default="default", help="lab name (default: default)")
        p.add_argument(
            "--state-dir",
            type=Path,
            default=None,
            help="where labs keep their files (default /run/netpol-agent/lab)",
        )

    up = sub.add_parser("up", help="start a lab in the background; prints the kubeconfig path")
    common(up)
    up.add_argument("--nodes", type=int, default=2, help="number of nodes (default 2)")
    up.add_argument(
        "--backend",
        choices=["auto", "nft", "legacy", "python-iptables"],
        default="auto",
        help="the agents' iptables backend (default auto)",
    )
    up.add_argument("--ipv6", action="store_true", help="dual-stack pods and nodes")
    up.add_argument(
        "--overlay",
        choices=["vxlan", "host-gw"],
        default="vxlan",
        help="how pod traffic crosses nodes, as Flannel's backends (default vxlan)",
    )
    up.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="apply these manifests (files or directories) once the lab is up; repeatable",
    )
    up.add_argument(
        "--image",
        default=None,
        help="run each node's agent as this container image with podman, with the "
        "DaemonSet's settings (e.g. localhost/netpol-agent:dev)",
    )
    up.add_argument(
        "--manifest",
        default=None,
        type=Path,
        metavar="PATH",
        help="the DaemonSet for --image: a rendered YAML file or a kustomization directory "
        "(default: deploy/base)",
    )
    up.add_argument(
        "--control-plane",
        choices=["builtin", "real"],
        default="builtin",
        help="builtin: the lab's in-memory API server (quick, Python only); real: etcd, "
        "kube-apiserver, kube-controller-manager, kube-proxy, flanneld and CNI plugins built "
        "by scripts/build-kubernetes (see docs/lab.md)",
    )
    up.add_argument(
        "--no-agents",
        dest="agents",
        action="store_false",
        help="do not start netpol-agent on the nodes (networking only, nothing enforced)",
    )
    up.add_argument(
        "--prometheus",
        action="store_true",
        help="also run Prometheus (Debian's) scraping every agent as deploy/monitoring's "
        "ServiceMonitor does, with its PrometheusRule alerts; lab status prints its address",
    )
    up.add_argument(
        "--prometheus-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="its scrape and rule evaluation interval (default 1)",
    )
    up.add_argument(
        "--alert-for",
        default="",
        metavar="DURATION",
        help="replace every alert's `for:` (e.g. 5s) so alerts fire quickly in the lab",
    )
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="remove the lab: processes, namespaces, links, files")
    common(down)
    down.set_defaults(func=_down)

    status = sub.add_parser("status", help="nodes, pods and each node agent's sync state")
    common(status)
    status.set_defaults(func=_status)

    kubeconfig = sub.add_parser("kubeconfig", help="print the lab's kubeconfig path")
    common(kubeconfig)
    kubeconfig.set_defaults(func=_kubeconfig)

    probe = sub.add_parser(
        "probe",
        help="wait for the agents to converge, then try every pod pair for real",
        description="Waits until every node agent has applied the API server's current "
        "resourceVersion, then tries a real connection (TCP/SCTP connect, UDP echo) for every "
        "ordered pair of pods, concurrently, and prints the truth table in the format of "
        "`reachability`.",
    )
    common(probe)
    probe.add_argument("--port", type=int, default=None, help="only this port")
    probe.add_argument("--protocol", type=str.upper, choices=["TCP", "UDP", "SCTP"], default=None)
    probe.add_argument("-o", "--output", choices=["table", "json"], default="table")
    probe.add_argument(
        "--timeout-ms",
        type=int,
        default=1000,
        help="how long one connection attempt may take (default 1000)",
    )
    probe.add_argument(
        "--converge-timeout-ms",
        type=int,
        default=30000,
        help="how long to wait for the agents to converge (default 30000)",
    )
    probe.add_argument("--ipv6", action="store_true", help="probe the pods' IPv6 addresses")
    probe.add_argument(
        "--compare",
        action="store_true",
        help="also evaluate the same state with the policy engine; exit 1 on any difference",
    )
    probe.set_defaults(func=_probe)

    execute = sub.add_parser(
        "exec",
        help="run a command inside a lab pod's network namespace",
        description="Runs COMMAND on this machine inside the network namespace of a lab pod "
        "(its addresses and routes, the node's policy in front of it), like `kubectl exec`; "
        "exits with the command's exit code.",
        usage="netpol-agent lab exec [-n NAMESPACE] [--name NAME] POD -- COMMAND [ARG...]",
    )
    common(execute)
    execute.add_argument(
        "-n", "--namespace", default="default", help="the pod's namespace (default: default)"
    )
    execute.add_argument("pod", help="the pod's name")
    execute.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")
    execute.set_defaults(func=_exec)

    drops = sub.add_parser(
        "drops",
        help="every node's recent drop and audit events (who, which peer, which policies)",
        description="Reads /drops from every lab agent: one JSON object per line with keys "
        "node action direction pod peer protocol port policies count first last (-o json), "
        "or a table.",
    )
    common(drops)
    drops.add_argument("-o", "--output", choices=["table", "json"], default="table")
    drops.set_defaults(func=_drops)


def _base(args: argparse.Namespace) -> Path:
    from agent.lab.state import DEFAULT_ROOT

    base: Path = args.state_dir or DEFAULT_ROOT
    return base


def _up(args: argparse.Namespace) -> int:
    from agent.lab import lifecycle
    from agent.lab.apply import apply_objects, load_objects
    from agent.lab.client import ApiClient
    from agent.lab.state import LabConfig, read_json

    config = LabConfig(
        name=args.name,
        nodes=args.nodes,
        ipv6=args.ipv6,
        overlay=args.overlay,
        backend=args.backend,
        agents=args.agents,
        image=args.image,
        manifest=str(args.manifest.resolve()) if args.manifest else None,
        prometheus=args.prometheus,
        prometheus_interval=args.prometheus_interval,
        alert_for=args.alert_for,
        control_plane=args.control_plane,
    )
    objects = load_objects(args.files) if args.files else []
    start = time.monotonic()
    paths = lifecycle.up(config, base=_base(args))
    ready = read_json(paths.ready) or {}
    print(
        f"lab {config.name}: {config.nodes} node(s) ready in {time.monotonic() - start:.1f}s "
        f"(logs: {paths.logs})",
        file=sys.stderr,
    )
    for problem in ready.get("errors") or []:
        print(f"lab {config.name}: warning: {problem}", file=sys.stderr)
    if objects:
        client = ApiClient.from_kubeconfig(paths.kubeconfig)
        for line in apply_objects(client, objects):
            print(line, file=sys.stderr)
    print(paths.kubeconfig)
    return 0


def _down(args: argparse.Namespace) -> int:
    from agent.lab import lifecycle

    report = lifecycle.down(args.name, base=_base(args))
    if report.empty:
        print(f"lab {args.name}: nothing to remove")
    else:
        print(
            f"lab {args.name}: removed {len(report.namespaces)} namespace(s), "
            f"stopped {len(report.processes)} process(es)"
            + (", deleted its files" if report.files else "")
        )
    return 0


def _kubeconfig(args: argparse.Namespace) -> int:
    from agent.lab import lifecycle

    _config, paths = lifecycle.running_config(args.name, base=_base(args))
    print(paths.kubeconfig)
    return 0


def _status(args: argparse.Namespace) -> int:
    from agent.lab import lifecycle
    from agent.lab.client import ApiClient
    from agent.lab.probe import agent_states
    from agent.lab.state import alive_pid

    lifecycle.require_root()
    config, paths = lifecycle.running_config(args.name, base=_base(args))
    topo = config.topology()
    client = ApiClient.from_kubeconfig(paths.kubeconfig)
    _, rv = client.list("/api/v1/namespaces")
    print(f"lab {config.name}: kubeconfig {paths.kubeconfig}; resourceVersion {rv}")
    if config.prometheus:
        from agent.lab.prometheus import address

        print(f"prometheus: {address(paths) or 'not running'}")
    states = agent_states(topo) if config.agents else {}
    print("NODE\tNAMESPACE\tADDRESS\tPODCIDR\tAGENT")
    for node in topo.nodes:
        pid = alive_pid(paths.agent_pid(node.name))
        state: Any = states.get(node.name, "not started (--no-agents)")
        if isinstance(state, dict):
            agent = (
                f"pid {pid} ready={state.get('ready')} "
                f"synced={state.get('synced_resource_version')}"
            )
        else:
            agent = f"pid {pid} {state}" if pid else str(state)
        print(f"{node.name}\t{node.netns}\t{node.ip}\t{node.pod_cidr}\t{agent}")
    pods, _ = client.list("/api/v1/pods")
    print("\nPOD\tNODE\tIP\tPHASE")
    for pod in sorted(pods, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])):
        meta, status = pod["metadata"], pod.get("status") or {}
        print(
            f"{meta['namespace']}/{meta['name']}\t{(pod.get('spec') or {}).get('nodeName', '')}"
            f"\t{status.get('podIP', '')}\t{status.get('phase', '')}"
        )
    return 0


def _probe(args: argparse.Namespace) -> int:
    from agent.core.model import Family, Protocol
    from agent.core.table import format_diff, format_table, table_to_json
    from agent.lab import lifecycle
    from agent.lab import probe as lab_probe
    from agent.lab.client import ApiClient

    lifecycle.require_root()  # probes open sockets inside the lab's namespaces
    config, paths = lifecycle.running_config(args.name, base=_base(args))
    topo = config.topology()
    client = ApiClient.from_kubeconfig(paths.kubeconfig)
    snap = lab_probe.settled_snapshot(client, topo, timeout=args.converge_timeout_ms / 1000)
    converged = 0.0
    if config.agents:
        converged = lab_probe.wait_snapshot(
            topo,
            snap,
            per_kind=config.control_plane == "real",
            timeout=args.converge_timeout_ms / 1000,
        )
    pods = lab_probe.probe_pods(snap.state)
    protocol = Protocol(args.protocol) if args.protocol else None
    cases, skipped = lab_probe.usable_cases(
        lab_probe.select_cases(pods, port=args.port, protocol=protocol)
    )
    for port, proto in skipped:
        print(f"# skipped {port}/{proto.value}: this kernel has no SCTP", file=sys.stderr)
    family = Family.V6 if args.ipv6 else Family.V4
    start = time.monotonic()
    table = lab_probe.probe_table(
        topo,
        pods,
        cases,
        family=family,
        timeout=args.timeout_ms / 1000,
        recheck=lab_probe.engine_verdict(snap.state) if args.compare else None,
    )
    probe_ms = (time.monotonic() - start) * 1000
    diff = lab_probe.compare(table, snap.state, pods, cases) if args.compare else None
    if args.output == "json":
        out = table_to_json(table)
        out["converged_ms"] = round(converged * 1000, 1)
        out["probe_ms"] = round(probe_ms, 1)
        if diff is not None:
            out["disagreements"] = [
                {
                    "port": c.port,
                    "protocol": c.protocol.value,
                    "from": c.src,
                    "to": c.dst,
                    "engine": c.expected,
                    "kernel": c.actual,
                }
                for c in diff.cells
            ]
        print(json.dumps(out, indent=2))
    else:
        sys.stdout.write(format_table(table) if table.blocks else "no pods with ports to probe\n")
        print(
            f"# converged in {converged * 1000:.0f} ms, probed {len(pods)} pods in "
            f"{probe_ms:.0f} ms",
            file=sys.stderr,
        )
        if diff is not None:
            if diff.empty:
                print("# the kernel agrees with the policy engine on every cell")
            else:
                print("# the kernel and the policy engine disagree (expected = engine):")
                for line in format_diff(diff).splitlines():
                    print(f"# {line}")
    return 1 if diff is not None and not diff.empty else 0


def _exec(args: argparse.Namespace) -> int:
    from agent.lab import lifecycle
    from agent.lab.client import ApiClient
    from agent.lab.podexec import pod_namespace, run_in

    lifecycle.require_root()
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    config, paths = lifecycle.running_config(args.name, base=_base(args))
    client = ApiClient.from_kubeconfig(paths.kubeconfig)
    netns = pod_namespace(client, config.topology(), args.namespace, args.pod)
    sys.stdout.flush()
    return run_in(netns, argv)


def _drops(args: argparse.Namespace) -> int:
    from agent.lab import drops, lifecycle

    lifecycle.require_root()  # the agents listen inside the lab's namespaces
    config, _ = lifecycle.running_config(args.name, base=_base(args))
    events, problems = drops.gather(config.topology())
    for node, why in sorted(problems.items()):
        print(f"netpol-agent lab drops: {node}: {why}", file=sys.stderr)
    if args.output == "json":
        for event in events:
            print(json.dumps(event, sort_keys=False))
    else:
        print(drops.format_table(events))
    return 1 if problems and not events else 0
