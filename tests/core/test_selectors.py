"""Label selector semantics (metav1.LabelSelector)."""

from __future__ import annotations

import pytest

from agent.core.model import LabelSelector, Operator, Requirement
from agent.core.selectors import format_selector, selector_matches
from tests.builders import labels

IN = Operator.IN
NOT_IN = Operator.NOT_IN
EXISTS = Operator.EXISTS
MISSING = Operator.DOES_NOT_EXIST

CASES = [
    ("empty matches all", LabelSelector(), ("a=1",), True),
    ("empty matches no labels", LabelSelector(), (), True),
    ("matchLabels hit", LabelSelector((("app", "web"),)), ("app=web", "x=y"), True),
    ("matchLabels miss", LabelSelector((("app", "web"),)), ("app=db",), False),
    ("matchLabels ANDed", LabelSelector((("a", "1"), ("b", "2"))), ("a=1",), False),
    ("In hit", LabelSelector((), (Requirement("t", IN, frozenset({"a", "b"})),)), ("t=b",), True),
    ("In without key", LabelSelector((), (Requirement("t", IN, frozenset({"a"})),)), (), False),
    (
        "NotIn without key",
        LabelSelector((), (Requirement("t", NOT_IN, frozenset({"a"})),)),
        (),
        True,
    ),
    (
        "NotIn hit",
        LabelSelector((), (Requirement("t", NOT_IN, frozenset({"a"})),)),
        ("t=a",),
        False,
    ),
    ("Exists", LabelSelector((), (Requirement("t", EXISTS),)), ("t=",), True),
    ("DoesNotExist", LabelSelector((), (Requirement("t", MISSING),)), ("t=x",), False),
    (
        "labels and expressions ANDed",
        LabelSelector((("a", "1"),), (Requirement("t", EXISTS),)),
        ("a=1",),
        False,
    ),
]


@pytest.mark.parametrize(
    ("name", "selector", "pod_labels", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_selector_matches(
    name: str, selector: LabelSelector, pod_labels: tuple[str, ...], expected: bool
) -> None:
    assert selector_matches(selector, labels(*pod_labels)) is expected


def test_format_selector() -> None:
    sel = LabelSelector(
        (("app", "web"),),
        (Requirement("t", IN, frozenset({"b", "a"})), Requirement("old", MISSING)),
    )
    assert format_selector(sel) == "app=web,t in (a,b),!old"
    assert format_selector(LabelSelector()) == "<all>"
