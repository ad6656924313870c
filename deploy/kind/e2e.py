"""Helpers for deploy/kind/e2e.sh: turn an example into runnable pods, and probe them.

    python3 e2e.py pods EXAMPLE_DIR PORTS_JSON   pods.yaml for a real cluster, on stdout
    python3 e2e.py dump NS...                    the running pods (real IPs), as YAML
    python3 e2e.py probe PORTS_JSON NS...        probe every pair with `kubectl exec`,
                                                 print the truth table (docs: interfaces)

The examples' pods are written for the lab (fixed nodeName and IPs); on kind
they are scheduled normally and run agnhost `porter`, serving every probed
port, with their declared containerPorts kept (named ports need them).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"
ENV_PREFIX = {"TCP": "SERVE_PORT_", "UDP": "SERVE_UDP_PORT_", "SCTP": "SERVE_SCTP_PORT_"}


def runnable_pods(example: Path, blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pods = []
    for path in sorted(example.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "Pod":
                continue
            spec = doc["spec"]
            declared = [p for c in spec.get("containers", []) for p in c.get("ports", [])]
            env = [{"name": f"{ENV_PREFIX[b['protocol']]}{b['port']}", "value": "serve"}
                   for b in blocks]  # fmt: skip
            pods.append({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {k: v for k, v in doc["metadata"].items()
                             if k in ("name", "namespace", "labels")},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{
                        "name": "porter",
                        "image": AGNHOST,
                        "args": ["porter"],
                        "env": env,
                        "ports": declared,
                    }],
                },
            })  # fmt: skip
    return pods


def running_pods(namespaces: list[str]) -> list[dict[str, Any]]:
    pods = []
    for ns in namespaces:
        out = subprocess.run(["kubectl", "get", "pods", "-n", ns, "-o", "json"],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
        pods.extend(json.loads(out)["items"])
    return pods


def pod_ips(namespaces: list[str]) -> dict[str, str]:
    return {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p["status"]["podIP"]
            for p in running_pods(namespaces)}  # fmt: skip


def allowed(src: str, ip: str, port: int, protocol: str) -> bool:
    ns, name = src.split("/")
    argv = ["kubectl", "exec", "-n", ns, name, "--", "/agnhost", "connect", f"{ip}:{port}",
            "--timeout=1s", f"--protocol={protocol.lower()}"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, check=False).returncode == 0


def probe_table(blocks: list[dict[str, Any]], namespaces: list[str]) -> str:
    ips = pod_ips(namespaces)
    pods = sorted(ips)
    out = []
    for b in blocks:
        lines = [f"{b['port']}/{b['protocol']}", "\t".join(["-", *pods])]
        for src in pods:
            row = ["." if src == dst or allowed(src, ips[dst], b["port"], b["protocol"])
                   else "X" for dst in pods]  # fmt: skip
            lines.append("\t".join([src, *row]))
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    if argv[:1] == ["pods"]:
        blocks = json.loads(Path(argv[2]).read_text())["results"]
        yaml.safe_dump_all(runnable_pods(Path(argv[1]), blocks), sys.stdout)
        return 0
    if argv[:1] == ["dump"]:
        yaml.safe_dump_all(running_pods(argv[1:]), sys.stdout)
        return 0
    if argv[:1] == ["probe"]:
        blocks = json.loads(Path(argv[1]).read_text())["results"]
        sys.stdout.write(probe_table(blocks, argv[2:]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
