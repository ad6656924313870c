"""Who may do what in a real-control-plane lab: the agent's ServiceAccount, Flannel's role.

The node agents authenticate exactly as the DaemonSet's pods do: as the
`netpol-agent` ServiceAccount of deploy/base, bound to deploy/base's
ClusterRole (read from the source tree, not copied), with a token the
TokenRequest API issues. RBAC is enforced by the real API server, so a verb
missing from that ClusterRole shows up as a 403 in the agents' logs and
/readyz.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.lab.apply import apply_objects, load_objects
from agent.lab.client import ApiClient, ApiStatusError
from agent.lab.topology import LabError

DEPLOY_BASE = Path(__file__).resolve().parents[3] / "deploy" / "base"
AGENT_FILES = ("namespace.yaml", "serviceaccount.yaml", "rbac.yaml")
AGENT_NAMESPACE = "netpol-agent"
AGENT_ACCOUNT = "netpol-agent"
TOKEN_SECONDS = 7 * 24 * 3600


def agent_objects(base: Path = DEPLOY_BASE) -> list[dict[str, Any]]:
    """deploy/base's Namespace, ServiceAccount, ClusterRole and ClusterRoleBinding."""
    return load_objects([base / name for name in AGENT_FILES])


def apply_all(client: ApiClient, objects: Sequence[dict[str, Any]]) -> None:
    apply_objects(client, objects)


def request_token(
    client: ApiClient,
    *,
    namespace: str = AGENT_NAMESPACE,
    account: str = AGENT_ACCOUNT,
    seconds: int = TOKEN_SECONDS,
    timeout: float = 30.0,
) -> str:
    """A token for the ServiceAccount from the TokenRequest API (retried while the
    freshly created account is not visible yet)."""
    path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": seconds},
    }
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = client.create(path, body)
            return str(answer["status"]["token"])
        except (ApiStatusError, KeyError) as exc:
            if time.monotonic() > deadline:
                raise LabError(f"TokenRequest for {namespace}/{account}: {exc}") from exc
            time.sleep(0.2)
