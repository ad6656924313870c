"""The upstream CustomResourceDefinitions a real-control-plane lab installs.

A real kube-apiserver serves no `policy.networking.k8s.io` by itself: clusters
install the ClusterNetworkPolicy CRD of kubernetes-sigs/network-policy-api.
`scripts/build-kubernetes` copies that release's own file, unedited, into
`<upstream>/crds/`; the lab creates it at bootstrap and waits until the API
server reports it Established, so that the agents' first list of
clusternetworkpolicies finds the resource and `lab up -f` can apply CNPs, which
the upstream schema (not ours) then validates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from agent.lab.apply import apply_objects, load_objects
from agent.lab.client import ApiClient, ApiStatusError
from agent.lab.realcp.binaries import BUILD_HINT, MissingBinaries, upstream_dir
from agent.lab.topology import LabError

CRD_FILES = ("policy.networking.k8s.io_clusternetworkpolicies.yaml",)
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def find(upstream: Path | None = None) -> list[Path]:
    """The CRD files, or MissingBinaries naming the absent ones and the build script."""
    crd_dir = (upstream or upstream_dir()) / "crds"
    missing = [name for name in CRD_FILES if not (crd_dir / name).is_file()]
    if missing:
        raise MissingBinaries(
            f"--control-plane real needs the upstream CRDs {', '.join(missing)} in {crd_dir}: "
            + BUILD_HINT
        )
    return [crd_dir / name for name in CRD_FILES]


def install(client: ApiClient, files: Sequence[Path]) -> list[str]:
    """Create (or replace) the CRDs; returns their names."""
    objects = load_objects(files)
    apply_objects(client, objects)
    return [str(obj["metadata"]["name"]) for obj in objects]


def wait_established(client: ApiClient, names: Sequence[str], *, timeout: float) -> None:
    """Until every CRD has condition Established=True; else a LabError with its conditions."""
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            try:
                crd = client.get(f"{CRD_PATH}/{name}")
            except ApiStatusError as exc:
                conditions: object = str(exc)
            else:
                conditions = (crd.get("status") or {}).get("conditions") or []
                assert isinstance(conditions, list)
                if any(
                    c.get("type") == "Established" and c.get("status") == "True" for c in conditions
                ):
                    break
            if time.monotonic() > deadline:
                raise LabError(
                    f"CustomResourceDefinition {name} not Established in {timeout:g}s: {conditions}"
                )
            time.sleep(0.1)
