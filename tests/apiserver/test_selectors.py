"""Parsing labelSelector / fieldSelector query strings."""

from __future__ import annotations

import pytest

from agent.lab.apiserver.errors import ApiError
from agent.lab.apiserver.selectors import make_predicate, parse_field_selector, parse_label_selector

LABELS = {"app": "web", "tier": "front", "example.com/team": "a"}

CASES = [
    ("empty", "", True),
    ("equals", "app=web", True),
    ("double equals", "app==web", True),
    ("not equals", "app!=web", False),
    ("not equals on a missing key", "zone!=x", True),
    ("in", "tier in (back,front)", True),
    ("notin", "tier notin (front)", False),
    ("exists", "app", True),
    ("does not exist", "!app", False),
    ("prefixed key", "example.com/team=a", True),
    ("ANDed", "app=web,tier=back", False),
    ("spaces", " app = web , tier in ( front ) ", True),
]


@pytest.mark.parametrize(("name", "text", "want"), CASES, ids=[c[0] for c in CASES])
def test_label_selector(name: str, text: str, want: bool) -> None:
    predicate = make_predicate(parse_label_selector(text), ())
    assert predicate({"metadata": {"labels": LABELS}}) is want


@pytest.mark.parametrize("text", ["app=(", "a b c", "app in ()", "x=" + "v" * 64])
def test_malformed_label_selector_is_400(text: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_label_selector(text)
    assert info.value.code == 400


def test_field_selector() -> None:
    obj = {
        "metadata": {"name": "a", "namespace": "x"},
        "spec": {"nodeName": "n1", "hostNetwork": True},
    }
    assert make_predicate(
        parse_label_selector(""), parse_field_selector("spec.nodeName=n1", "pods")
    )(obj)
    assert make_predicate(
        parse_label_selector(""), parse_field_selector("spec.hostNetwork=true", "pods")
    )(obj)
    assert not make_predicate(
        parse_label_selector(""), parse_field_selector("metadata.namespace!=x", "pods")
    )(obj)
    with pytest.raises(ApiError):
        parse_field_selector("spec.nodeName=n1", "networkpolicies")
