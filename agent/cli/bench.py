"""`netpol-agent bench`: speed and size, measured against the kernel's own cost in the same run.

Everything runs inside scratch network namespaces it creates and removes
(root needed for all but `--only compile`). See docs/performance.md.
"""

from __future__ import annotations

import argparse
import sys

_DESCRIPTION = """\
Measure netpol-agent on a synthetic cluster (namespaces with app tiers, default-deny,
app-to-app rules, namespace selectors, ipBlocks with except, named ports, egress to DNS):

  compile      compile time and peak memory for one node (--compile-sizes)
  cold         the agent's first full apply vs bare ipset + iptables-restore of the same payload
  incremental  event-to-kernel p50/p99 through the in-process agent (lab API server -> watch ->
               compile -> apply) and rules rewritten, vs the bare tools for the same change
  datapath     new TCP connections/s, one-way UDP packets/s, TCP throughput between two pod
               namespaces: no rules vs the agent's rules for --policies (--datapath-selecting
               select the server) vs the server unselected; rules a new packet evaluates
  memory       RSS of `netpol-agent run` holding the cluster

Kernel stages run for each --backend, inside npa-* namespaces that are always removed.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark compile, apply, incremental latency, datapath and memory",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--pods", type=int, default=10_000, help="cluster pods (default 10000)")
    add("--policies", type=int, default=1_000, help="cluster policies (default 1000)")
    add("--local-pods", type=int, default=100, help="pods on this node (default 100)")
    add("--backend", choices=["nft", "legacy", "both"], default="both", help="default both")
    add("--events", type=int, default=200, help="events of each kind (default 200)")
    add(
        "--only",
        metavar="STAGES",
        help="comma-separated subset of compile,cold,incremental,datapath,memory",
    )
    add(
        "--compile-sizes",
        metavar="PxMxK,...",
        default="1000x100x10,10000x1000x100,50000x5000x100",
        help="compile stage sizes: pods x policies x local pods (default %(default)s)",
    )
    add("--seconds", type=float, default=3.0, help="length of each datapath measurement")
    add("--rounds", type=int, default=2, help="datapath rounds (no rules / rules alternate)")
    add(
        "--datapath-local-pods",
        type=int,
        default=100,
        help="datapath stage: pods on this node (default 100; the issue's large size: 250)",
    )
    add(
        "--datapath-selecting",
        type=int,
        default=100,
        help="datapath stage: policies selecting the server (default 100; large: 1000)",
    )
    add("--seed", type=int, default=1, help="generator seed (default 1)")
    add(
        "--drop-flood",
        action="store_true",
        help="datapath: also measure allowed traffic under a flood of blocked packets, "
        "with and without drop logging (NFLOG)",
    )
    add("-o", "--output", choices=["table", "json"], default="table")
    add("-q", "--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from agent.bench.compiling import parse_sizes
    from agent.bench.runner import STAGES, BenchConfig, run

    try:
        sizes = parse_sizes(args.compile_sizes)
    except ValueError as exc:
        print(f"netpol-agent bench: --compile-sizes: {exc}", file=sys.stderr)
        return 2
    stages = tuple(s.strip() for s in args.only.split(",")) if args.only else STAGES
    config = BenchConfig(
        pods=args.pods,
        policies=args.policies,
        local_pods=args.local_pods,
        backends=("nft", "legacy") if args.backend == "both" else (args.backend,),
        events=args.events,
        stages=stages,
        compile_sizes=sizes,
        seconds=args.seconds,
        rounds=args.rounds,
        seed=args.seed,
        drop_flood=args.drop_flood,
        datapath_local_pods=args.datapath_local_pods,
        datapath_selecting=args.datapath_selecting,
    )
    problems = config.problems()
    if problems:
        for p in problems:
            print(f"netpol-agent bench: {p}", file=sys.stderr)
        return 2

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[bench] {message}", file=sys.stderr, flush=True)

    report = run(config, log=log)
    print(report.as_json() if args.output == "json" else report.as_table(), end="")
    return 1 if report.problems else 0
