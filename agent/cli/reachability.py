"""`netpol-agent reachability`: what the policies in some manifests allow, before deploying.

Reads Namespaces, Pods (with their IPs as written), NetworkPolicies,
ClusterNetworkPolicies and Nodes from files or directories, evaluates every
ordered pair of pods and prints truth tables (text or JSON). `--expect FILE`
turns it into a policy unit test for CI (exit 1 with a diff); `--explain FROM
TO` says why. Exit 2 on bad input, including an invalid policy (the table is
still printed, computed fail-closed).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from agent.cli._manifests import add_manifest_option, load_manifests
from agent.core.errors import InputError
from agent.core.model import Pod, Protocol

if TYPE_CHECKING:
    from agent.core.audit import AuditEvaluator
    from agent.core.model import ClusterState
    from agent.core.table import Case, TruthTable
    from agent.manifests.loader import Loaded


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "reachability",
        help="compute who may reach whom from manifests (no cluster needed)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    add_manifest_option(p)
    p.add_argument("--port", type=_port, help="evaluate this port only")
    p.add_argument(
        "--protocol",
        type=str.upper,
        choices=[x.value for x in Protocol],
        help="evaluate this protocol only (TCP when only --port is given)",
    )
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.add_argument(
        "--expect",
        metavar="FILE",
        help="compare with an expected table (text or JSON); exit 1 on differences",
    )
    p.add_argument(
        "--explain",
        nargs=2,
        metavar=("FROM", "TO"),
        help="explain the verdict for one pair (ns/pod or an IP address)",
    )
    p.add_argument(
        "--engine",
        choices=["reference", "ruleset"],
        default="reference",
        help="reference evaluator (default) or compiled ruleset + packet tracer",
    )
    p.set_defaults(func=run)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(text)


def run(args: argparse.Namespace) -> int:
    from agent.core.audit import findings as audit_findings
    from agent.core.explain import render_explanation
    from agent.manifests.loader import policy_origins

    loaded, state = load_manifests(args.files)
    origins = policy_origins(loaded)
    invalid = 0
    for policy in sorted(state.policies.values(), key=lambda p: p.key):
        for error in policy.errors:
            invalid += 1
            where = origins.get(policy.key, "")
            print(f"error: {where}: NetworkPolicy {error}", file=sys.stderr)
        if policy.errors:
            print(
                f"note: {policy.key} is invalid: it isolates the pods it selects and "
                "allows nothing (fail closed)",
                file=sys.stderr,
            )
    invalid += _report_cluster_policies(loaded, state)
    pods = sorted((p for p in state.pods.values() if p.is_networked), key=lambda p: p.key)
    for pod in sorted(state.pods.values(), key=lambda p: p.key):
        if not pod.is_networked:
            print(f"note: pod {pod.key} left out: {_why(pod)}", file=sys.stderr)
    cases = _cases(args, pods)
    evaluator = _evaluator(args.engine, state)
    auditor = _auditor(state)
    status = 2 if invalid else 0
    if args.explain:
        src, dst = (_endpoint(state, text) for text in args.explain)
        explain = getattr(evaluator, "explain", None)
        if explain is None:
            raise InputError(f"--engine {args.engine} cannot explain; use --engine reference")
        for port, protocol in cases:
            found = explain(src, dst, port, protocol)
            render = getattr(found, "render", None)  # the ruleset engine's walk
            print(render() if render is not None else render_explanation(found), end="")
            would = auditor.would_drop(src, dst, port, protocol)
            if would is not None:
                print(f"audit: {would}")
        return status
    from agent.core.table import compute_table, format_table, table_to_json

    table = compute_table(evaluator.allowed, pods, cases)
    found = audit_findings(auditor, pods, cases)
    if args.output == "json":
        data = table_to_json(table)
        if auditor.active:
            data["audit"] = [f.as_dict() for f in found]
        rendered = json.dumps(data, indent=2) + "\n"
    else:
        rendered = format_table(table)
        if auditor.active:
            rendered += "\naudit: traffic that flows but the audited policies would drop\n"
            rendered += "".join(f"  {f}\n" for f in found) or "  (none)\n"
    if args.expect:
        return max(status, _check(args.expect, table, rendered))
    print(rendered, end="")
    return status


def _report_cluster_policies(loaded: Loaded, state: ClusterState) -> int:
    """Print each invalid ClusterNetworkPolicy's errors and how it fails closed; the count."""
    from agent.manifests.loader import cluster_policy_origins

    origins = cluster_policy_origins(loaded)
    count = 0
    for cnp in sorted(state.cluster_policies.values(), key=lambda p: p.name):
        for error in cnp.errors:
            count += 1
            print(
                f"error: {origins.get(cnp.name, '')}: ClusterNetworkPolicy {error}", file=sys.stderr
            )
        if cnp.errors:
            failed = [
                f"{field}[{i}]"
                for field, rules in (("ingress", cnp.ingress), ("egress", cnp.egress))
                for i, rule in enumerate(rules)
                if rule.failed
            ]
            how = (
                "it denies all traffic of its subject ahead of every Admin rule"
                if cnp.priority < 0
                else f"{', '.join(failed)} fail closed (an Accept rule matches nothing, "
                "a Deny or Pass rule denies everything)"
            )
            print(
                f"note: ClusterNetworkPolicy {cnp.name} is invalid: {how}",
                file=sys.stderr,
            )
    return count


def _check(path: str, table: TruthTable, rendered: str) -> int:
    from agent.core.table import diff_tables, format_diff, parse_table, table_from_json

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise InputError(f"--expect {path}: cannot read: {exc}") from exc
    if text.lstrip().startswith("{"):
        try:
            expected = table_from_json(json.loads(text))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
    else:
        expected = parse_table(text, source=path)
    diff = diff_tables(expected, table)
    if diff.empty:
        print(f"OK: {len(table.blocks)} table(s) of {len(table.pods)} pods match {path}")
        return 0
    print(f"FAIL: reachability differs from {path}:")
    print(format_diff(diff), end="")
    print("\nactual:")
    print(rendered, end="")
    return 1


def _cases(args: argparse.Namespace, pods: list[Pod]) -> list[Case]:
    from agent.core.table import declared_cases

    if args.port is not None:
        return [(args.port, Protocol(args.protocol or "TCP"))]
    cases = declared_cases(pods)
    if args.protocol:
        cases = [c for c in cases if c[1] is Protocol(args.protocol)]
    if not cases:
        raise InputError(
            "no (port, protocol) to evaluate: no pod declares a containerPort"
            + (f" for {args.protocol}" if args.protocol else "")
            + "; use --port"
        )
    return cases


def _auditor(state: ClusterState) -> AuditEvaluator:
    from agent.core.audit import AuditEvaluator

    for policy in sorted(state.policies.values(), key=lambda p: p.key):
        if policy.audit:
            print(
                f"note: {policy.key} is audited: it enforces nothing; what it would drop "
                "is listed under audit",
                file=sys.stderr,
            )
    return AuditEvaluator(state)


def _evaluator(engine: str, state: ClusterState) -> Any:
    if engine == "ruleset":
        try:
            from agent.core.trace import RulesetEvaluator  # type: ignore[import-not-found,unused-ignore]
        except ImportError as exc:
            raise InputError(
                "--engine ruleset is not available in this build (agent.core.trace is "
                f"missing: {exc}); use --engine reference"
            ) from exc
        return RulesetEvaluator(state)
    from agent.core.semantics import ReferenceEvaluator

    return ReferenceEvaluator(state)


def _endpoint(state: ClusterState, text: str) -> Pod | str:
    if "/" in text:
        for pod in state.pods.values():
            if pod.key == text:
                return pod
        known = ", ".join(sorted(p.key for p in state.pods.values())) or "none"
        raise InputError(f"--explain: no pod {text} in the manifests (pods: {known})")
    import ipaddress

    try:
        ip = str(ipaddress.ip_address(text))
    except ValueError:
        raise InputError(f"--explain: {text!r} is neither ns/pod nor an IP address") from None
    owner = next((p for p in state.pods.values() if p.is_networked and ip in p.ips), None)
    return ip if owner is None else owner


def _why(pod: Pod) -> str:
    if pod.host_network:
        return "hostNetwork pods are not subject to NetworkPolicy"
    if not pod.ips:
        return "no IP (status.podIP / status.podIPs)"
    return f"phase {pod.phase.value}"
