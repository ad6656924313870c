"""Truth tables: who may reach whom, per (port, protocol), in the upstream e2e style.

One format serves the reachability command, `--expect` files and the lab's
probes (see /work/notes/interfaces.md):

    80/TCP
    -	x/a	x/b
    x/a	.	X
    x/b	.	.

Rows are sources, columns destinations, `.` allowed, `X` blocked; blocks are
separated by a blank line; lines starting with `#` are comments. A pod to itself
is always allowed. The JSON shape is {"pods": [...], "results": [{"port",
"protocol", "allowed": {src: {dst: bool}}}]}.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agent.core.errors import InputError
from agent.core.model import Pod, Protocol

AllowedFn = Callable[[Pod, Pod, int, Protocol], bool]
Case = tuple[int, Protocol]
_PROTO_ORDER = {p: i for i, p in enumerate(Protocol)}


@dataclass(frozen=True, slots=True)
class Block:
    """One (port, protocol) table: allowed[src][dst]."""

    port: int
    protocol: Protocol
    allowed: Mapping[str, Mapping[str, bool]]

    @property
    def title(self) -> str:
        return f"{self.port}/{self.protocol.value}"


@dataclass(frozen=True, slots=True)
class TruthTable:
    pods: tuple[str, ...]
    blocks: tuple[Block, ...]

    def block(self, port: int, protocol: Protocol) -> Block | None:
        return next((b for b in self.blocks if (b.port, b.protocol) == (port, protocol)), None)


def sort_cases(cases: Iterable[Case]) -> list[Case]:
    return sorted(set(cases), key=lambda c: (c[0], _PROTO_ORDER[c[1]]))


def declared_cases(pods: Iterable[Pod]) -> list[Case]:
    """Every (port, protocol) any pod declares in its containerPorts, sorted."""
    return sort_cases((cp.port, cp.protocol) for pod in pods for cp in pod.ports)


def compute_table(allowed: AllowedFn, pods: Iterable[Pod], cases: Iterable[Case]) -> TruthTable:
    """Evaluate every ordered pair of `pods` for every case (a pod to itself: allowed)."""
    ordered = [(p.key, p) for p in sorted(pods, key=lambda p: p.key)]
    blocks = []
    for port, protocol in sort_cases(cases):
        rows: dict[str, dict[str, bool]] = {}
        for skey, src in ordered:
            rows[skey] = {
                dkey: skey == dkey or allowed(src, dst, port, protocol) for dkey, dst in ordered
            }
        blocks.append(Block(port, protocol, rows))
    return TruthTable(tuple(k for k, _ in ordered), tuple(blocks))


def format_table(table: TruthTable) -> str:
    """The text format above, ending with a newline."""
    out = []
    for block in table.blocks:
        lines = [block.title, "\t".join(("-", *table.pods))]
        for src in table.pods:
            row = block.allowed[src]
            lines.append("\t".join((src, *("." if row[dst] else "X" for dst in table.pods))))
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def table_to_json(table: TruthTable) -> dict[str, Any]:
    return {
        "pods": list(table.pods),
        "results": [
            {
                "port": b.port,
                "protocol": b.protocol.value,
                "allowed": {s: {d: b.allowed[s][d] for d in table.pods} for s in table.pods},
            }
            for b in table.blocks
        ],
    }


def table_from_json(d: Mapping[str, Any]) -> TruthTable:
    try:
        pods = tuple(str(p) for p in d["pods"])
        blocks = tuple(
            Block(
                int(r["port"]),
                Protocol(r["protocol"]),
                {s: {t: bool(r["allowed"][s][t]) for t in pods} for s in pods},
            )
            for r in d["results"]
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"not a truth table in the JSON shape: {exc!r}") from exc
    return TruthTable(pods, blocks)


def parse_table(text: str, *, source: str = "<table>") -> TruthTable:
    """Parse the text format; errors name the source and the line."""
    pods: tuple[str, ...] | None = None
    blocks: list[Block] = []
    title: tuple[int, Protocol] | None = None
    columns: tuple[str, ...] = ()
    rows: dict[str, dict[str, bool]] = {}

    def fail(lineno: int, message: str) -> InputError:
        return InputError(f"{source}:{lineno}: {message}")

    def close(lineno: int) -> None:
        nonlocal pods, title
        if title is None:
            return
        if set(rows) != set(columns):
            missing = sorted(set(columns) - set(rows))
            raise fail(
                lineno,
                f"block {title[0]}/{title[1].value}: no row for {', '.join(missing)}"
                if missing
                else f"block {title[0]}/{title[1].value}: rows and columns differ",
            )
        if pods is None:
            pods = tuple(sorted(columns))
        elif set(pods) != set(columns):
            raise fail(lineno, f"block {title[0]}/{title[1].value} has other pods than the first")
        blocks.append(Block(title[0], title[1], dict(rows)))
        title = None

    lines = text.splitlines()
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        if not line:
            close(lineno)
            continue
        fields = line.split()
        if title is None:
            title = _parse_title(line, lineno, fail)
            if any(b.port == title[0] and b.protocol is title[1] for b in blocks):
                raise fail(lineno, f"block {line} appears twice")
            columns, rows = (), {}
        elif not columns:
            if fields[0] != "-" or len(fields) < 2:
                raise fail(lineno, "expected a header row: '-' then the destination pods")
            columns = tuple(fields[1:])
            if len(set(columns)) != len(columns):
                raise fail(lineno, "a pod appears twice in the header")
        else:
            src, cells = fields[0], fields[1:]
            if src not in columns:
                raise fail(lineno, f"row {src} is not one of the header's pods")
            if src in rows:
                raise fail(lineno, f"row {src} appears twice")
            if len(cells) != len(columns):
                raise fail(lineno, f"row {src} has {len(cells)} cells, expected {len(columns)}")
            bad = [c for c in cells if c not in (".", "X")]
            if bad:
                raise fail(lineno, f"cell {bad[0]!r}: use '.' (allowed) or 'X' (blocked)")
            rows[src] = {dst: c == "." for dst, c in zip(columns, cells, strict=True)}
    close(len(lines))
    if pods is None:
        raise InputError(f"{source}: no table found")
    return TruthTable(pods, tuple(blocks))


def _parse_title(
    line: str, lineno: int, fail: Callable[[int, str], InputError]
) -> tuple[int, Protocol]:
    port_text, slash, proto_text = line.partition("/")
    if not slash or not port_text.isdigit():
        raise fail(lineno, f"expected a block title like 80/TCP, got {line!r}")
    try:
        return int(port_text), Protocol(proto_text.strip().upper())
    except ValueError:
        raise fail(lineno, f"unknown protocol {proto_text!r} (TCP, UDP or SCTP)") from None


@dataclass(frozen=True, slots=True)
class CellDiff:
    port: int
    protocol: Protocol
    src: str
    dst: str
    expected: bool
    actual: bool


@dataclass(frozen=True, slots=True)
class TableDiff:
    cells: tuple[CellDiff, ...] = ()
    problems: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.cells and not self.problems


def diff_tables(expected: TruthTable, actual: TruthTable) -> TableDiff:
    """Cells that differ (over the pods both tables have), plus missing pods and blocks."""
    problems = [
        f"pod {p} is expected but not in the manifests"
        for p in expected.pods
        if p not in actual.pods
    ]
    problems += [
        f"pod {p} is in the manifests but not in the expected table"
        for p in actual.pods
        if p not in expected.pods
    ]
    common = [p for p in actual.pods if p in expected.pods]
    cells = []
    for eb in expected.blocks:
        ab = actual.block(eb.port, eb.protocol)
        if ab is None:
            problems.append(f"block {eb.title} is expected but was not computed")
            continue
        for s in common:
            for d in common:
                if eb.allowed[s][d] != ab.allowed[s][d]:
                    cells.append(
                        CellDiff(eb.port, eb.protocol, s, d, eb.allowed[s][d], ab.allowed[s][d])
                    )
    for ab in actual.blocks:
        if expected.block(ab.port, ab.protocol) is None:
            problems.append(f"block {ab.title} was computed but is not in the expected table")
    return TableDiff(tuple(cells), tuple(problems))


def format_diff(diff: TableDiff) -> str:
    """One line per problem and per differing cell, grouped by block."""
    word = {True: "allowed (.)", False: "blocked (X)"}
    lines = list(diff.problems)
    title = None
    for c in diff.cells:
        t = f"{c.port}/{c.protocol.value}"
        if t != title:
            n = sum(1 for x in diff.cells if (x.port, x.protocol) == (c.port, c.protocol))
            lines.append(f"{t}: {n} cell{' differs' if n == 1 else 's differ'}")
            title = t
        lines.append(f"  {c.src} -> {c.dst}: expected {word[c.expected]}, got {word[c.actual]}")
    return "\n".join(lines) + ("\n" if lines else "")
