"""Label selector matching, exactly as metav1.LabelSelector defines it.

matchLabels and matchExpressions are ANDed. The empty selector matches
everything. `NotIn` and `DoesNotExist` match objects that lack the key.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.core.model import LabelSelector, Operator, Requirement


def requirement_matches(req: Requirement, labels: Mapping[str, str]) -> bool:
    if req.operator is Operator.IN:
        return req.key in labels and labels[req.key] in req.values
    if req.operator is Operator.NOT_IN:
        return req.key not in labels or labels[req.key] not in req.values
    if req.operator is Operator.EXISTS:
        return req.key in labels
    return req.key not in labels


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    return all(requirement_matches(r, labels) for r in selector.match_expressions)


def format_selector(selector: LabelSelector) -> str:
    """kubectl-style text: `app=web,tier in (a,b),!legacy`; `<all>` for the empty selector."""
    if selector.is_empty:
        return "<all>"
    parts = [f"{k}={v}" for k, v in selector.match_labels]
    for r in selector.match_expressions:
        values = ",".join(sorted(r.values))
        if r.operator is Operator.IN:
            parts.append(f"{r.key} in ({values})")
        elif r.operator is Operator.NOT_IN:
            parts.append(f"{r.key} notin ({values})")
        elif r.operator is Operator.EXISTS:
            parts.append(r.key)
        else:
            parts.append(f"!{r.key}")
    return ",".join(parts)
