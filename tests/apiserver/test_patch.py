"""The three patch formats, as pure functions (named scenarios)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.lab.apiserver.errors import ApiError
from agent.lab.apiserver.patch import json_patch, merge_patch, strategic_merge

POD: dict[str, Any] = {
    "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
    "spec": {
        "containers": [
            {"name": "c1", "image": "i1", "ports": [{"containerPort": 80, "protocol": "TCP"}]},
            {"name": "c2", "image": "i2"},
        ],
        "tolerations": [{"key": "t1"}],
    },
}

MERGE_CASES = [
    (
        "set a label",
        {"metadata": {"labels": {"c": "3"}}},
        ["metadata", "labels"],
        {"a": "1", "b": "2", "c": "3"},
    ),
    ("null deletes", {"metadata": {"labels": {"a": None}}}, ["metadata", "labels"], {"b": "2"}),
    ("lists are replaced", {"spec": {"tolerations": []}}, ["spec", "tolerations"], []),
]


@pytest.mark.parametrize(
    ("name", "patch", "path", "want"), MERGE_CASES, ids=[c[0] for c in MERGE_CASES]
)
def test_merge_patch(name: str, patch: Any, path: list[str], want: Any) -> None:
    got: Any = merge_patch(POD, patch)
    for part in path:
        got = got[part]
    assert got == want


def _containers(obj: Any) -> list[tuple[str, str]]:
    return [(c["name"], c.get("image", "")) for c in obj["spec"]["containers"]]


def test_strategic_merges_lists_by_key() -> None:
    got = strategic_merge(POD, {"spec": {"containers": [{"name": "c2", "image": "new"}]}})
    assert _containers(got) == [("c1", "i1"), ("c2", "new")]


def test_strategic_appends_new_keys_and_merges_nested_ports() -> None:
    patch = {
        "spec": {
            "containers": [
                {"name": "c1", "ports": [{"containerPort": 81}]},
                {"name": "c3", "image": "i3"},
            ]
        }
    }
    got = strategic_merge(POD, patch)
    assert _containers(got) == [("c1", "i1"), ("c2", "i2"), ("c3", "i3")]
    assert [p["containerPort"] for p in got["spec"]["containers"][0]["ports"]] == [80, 81]


def test_strategic_patch_delete_directive_removes_an_item() -> None:
    got = strategic_merge(POD, {"spec": {"containers": [{"name": "c1", "$patch": "delete"}]}})
    assert _containers(got) == [("c2", "i2")]


def test_strategic_patch_replace_directive_replaces_the_list() -> None:
    patch = {"spec": {"containers": [{"name": "c9", "image": "i9"}, {"$patch": "replace"}]}}
    assert _containers(strategic_merge(POD, patch)) == [("c9", "i9")]


def test_strategic_delete_of_map_key_and_null() -> None:
    got = strategic_merge(
        POD, {"metadata": {"labels": {"$patch": "delete"}}, "spec": {"tolerations": None}}
    )
    assert "labels" not in got["metadata"] and "tolerations" not in got["spec"]


def test_strategic_lists_without_merge_key_are_replaced() -> None:
    got = strategic_merge(POD, {"spec": {"tolerations": [{"key": "t2"}]}})
    assert got["spec"]["tolerations"] == [{"key": "t2"}]


def test_strategic_set_element_order_and_primitive_lists() -> None:
    patch = {
        "metadata": {"finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]},
        "spec": {"$setElementOrder/containers": [{"name": "c2"}, {"name": "c1"}]},
    }
    got = strategic_merge(POD, patch)
    assert got["metadata"]["finalizers"] == ["y"]
    assert _containers(got) == [("c2", "i2"), ("c1", "i1")]


def test_strategic_retain_keys() -> None:
    got = strategic_merge({"s": {"a": 1, "b": 2}}, {"s": {"$retainKeys": ["a", "c"], "c": 3}})
    assert got == {"s": {"a": 1, "c": 3}}


def test_strategic_does_not_mutate_its_input() -> None:
    before = repr(POD)
    strategic_merge(POD, {"spec": {"containers": [{"name": "c1", "image": "z"}]}})
    assert repr(POD) == before


JSON_CASES = [
    ("add", [{"op": "add", "path": "/metadata/labels/c", "value": "3"}], "/metadata/labels/c", "3"),
    (
        "add to end",
        [{"op": "add", "path": "/spec/tolerations/-", "value": {"key": "t2"}}],
        "/spec/tolerations/1",
        {"key": "t2"},
    ),
    (
        "replace",
        [{"op": "replace", "path": "/spec/containers/1/image", "value": "z"}],
        "/spec/containers/1/image",
        "z",
    ),
    (
        "escaped",
        [{"op": "add", "path": "/metadata/labels/x~1y", "value": "v"}],
        "/metadata/labels/x~1y",
        "v",
    ),
    (
        "copy",
        [{"op": "copy", "from": "/metadata/name", "path": "/metadata/labels/n"}],
        "/metadata/labels/n",
        "p",
    ),
    (
        "move",
        [{"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/z"}],
        "/metadata/labels/z",
        "1",
    ),
]


def _at(doc: Any, pointer: str) -> Any:
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        doc = doc[int(token)] if isinstance(doc, list) else doc[token]
    return doc


@pytest.mark.parametrize(
    ("name", "ops", "pointer", "want"), JSON_CASES, ids=[c[0] for c in JSON_CASES]
)
def test_json_patch(name: str, ops: Any, pointer: str, want: Any) -> None:
    assert _at(json_patch(POD, ops), pointer) == want


def test_json_patch_remove_and_failed_test() -> None:
    got = json_patch(POD, [{"op": "remove", "path": "/metadata/labels/a"}])
    assert got["metadata"]["labels"] == {"b": "2"}
    with pytest.raises(ApiError) as info:
        json_patch(POD, [{"op": "test", "path": "/metadata/name", "value": "q"}])
    assert info.value.code == 422
    with pytest.raises(ApiError):
        json_patch(POD, [{"op": "remove", "path": "/metadata/nope"}])
