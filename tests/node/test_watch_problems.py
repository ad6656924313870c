"""A refused watch (RBAC 403) is reported to the agent and cleared once the watch is served."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from agent.kube.api import ApiRejected, JsonDict, Kind
from tests.node.fakes import FakeApiSource, RecordingSink, pod_dict
from tests.node.test_watching import _stop_when, watcher


@dataclass
class Refusing(FakeApiSource):
    rejections: int = 2  # the next N watches get 403

    def watch(
        self, kind: Kind, *, resource_version: str, timeout_seconds: int
    ) -> Iterator[JsonDict]:
        if self.rejections:
            self.rejections -= 1
            raise ApiRejected(403, f"watch {kind.value}: pods is forbidden")
        return super().watch(
            kind, resource_version=resource_version, timeout_seconds=timeout_seconds
        )


def test_refusals_are_reported_then_cleared() -> None:
    src = Refusing()
    src.put(Kind.PODS, pod_dict("x", "a"))
    sink = RecordingSink()
    problems: list[tuple[Kind, str | None]] = []
    w = watcher(src, sink)
    w.on_problem = lambda kind, message: problems.append((kind, message))
    w.run(_stop_when(lambda: any(c[0] == "bookmark" for c in sink.calls)))
    messages = [m for _, m in problems]
    assert messages[0] is None  # the list worked
    assert messages[1:3] == ["HTTP 403: watch pods: pods is forbidden"] * 2
    assert messages[-1] is None  # served again: cleared
    assert {k for k, _ in problems} == {Kind.PODS}
