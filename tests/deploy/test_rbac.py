"""The agent's RBAC is read-only: get/list/watch on what it compiles, nothing more."""

from __future__ import annotations

from tests.deploy.support import find, render

# (apiGroup, resource) -> verbs. The agent posts no events, so it may not write anything.
EXPECTED = {
    ("", "pods"): {"get", "list", "watch"},
    ("", "namespaces"): {"get", "list", "watch"},
    ("networking.k8s.io", "networkpolicies"): {"get", "list", "watch"},
    ("", "nodes"): {"get", "list", "watch"},
    ("policy.networking.k8s.io", "clusternetworkpolicies"): {"get", "list", "watch"},
}


def test_cluster_role_grants_exactly_the_read_verbs() -> None:
    role = find(render("deploy/base"), "ClusterRole", "netpol-agent")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected keys in {rule}"
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == EXPECTED


def test_no_other_roles_or_bindings() -> None:
    docs = render("deploy/base")
    kinds = [d["kind"] for d in docs if d["apiVersion"].startswith("rbac.authorization.k8s.io/")]
    assert sorted(kinds) == ["ClusterRole", "ClusterRoleBinding"]
    binding = find(docs, "ClusterRoleBinding", "netpol-agent")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "netpol-agent",
    }
    assert len(binding["subjects"]) == 1
