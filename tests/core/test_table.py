"""Truth tables: compute, text and JSON round trips, parse errors, diffs."""

from __future__ import annotations

import json

import pytest

from agent.core.errors import InputError
from agent.core.model import Pod, Protocol
from agent.core.table import (
    compute_table,
    declared_cases,
    diff_tables,
    format_diff,
    format_table,
    parse_table,
    table_from_json,
    table_to_json,
)
from tests.builders import make_pod

TCP, UDP = Protocol.TCP, Protocol.UDP
PODS = [
    make_pod("y/a", ip="10.244.1.10", ports=((81, "UDP", None),)),
    make_pod("x/b", ip="10.244.0.11", ports=((80, "TCP", None), (81, "UDP", None))),
    make_pod(
        "x/a", ip="10.244.0.10", ports=((80, "TCP", None), (80, "SCTP", None), (81, "TCP", None))
    ),
]


def only_to_x_a_blocked(src: Pod, dst: Pod, port: int, protocol: Protocol) -> bool:
    return dst.key != "x/a" or port != 80


TEXT = (
    "80/TCP\n"
    "-\tx/a\tx/b\ty/a\n"
    "x/a\t.\t.\t.\n"
    "x/b\tX\t.\t.\n"
    "y/a\tX\t.\t.\n"
    "\n"
    "81/UDP\n"
    "-\tx/a\tx/b\ty/a\n"
    "x/a\t.\t.\t.\n"
    "x/b\t.\t.\t.\n"
    "y/a\t.\t.\t.\n"
)


def test_declared_cases_sorted_by_port_then_protocol() -> None:
    assert declared_cases(PODS) == [(80, TCP), (80, Protocol.SCTP), (81, TCP), (81, UDP)]


def test_compute_and_format() -> None:
    table = compute_table(only_to_x_a_blocked, PODS, [(81, UDP), (80, TCP)])
    assert table.pods == ("x/a", "x/b", "y/a")
    assert format_table(table) == TEXT  # self always allowed, rows sorted


def test_text_round_trip_and_comments() -> None:
    table = compute_table(only_to_x_a_blocked, PODS, declared_cases(PODS))
    assert parse_table(format_table(table)) == table
    commented = "# expected reachability\n\n" + TEXT.replace("81/UDP\n", "# UDP now\n81/UDP\n")
    assert parse_table(commented) == parse_table(TEXT)
    spaced = TEXT.replace("\t", "   ")
    assert parse_table(spaced) == parse_table(TEXT)


def test_json_shape_and_round_trip() -> None:
    table = compute_table(only_to_x_a_blocked, PODS, [(80, TCP)])
    d = table_to_json(table)
    assert d == {
        "pods": ["x/a", "x/b", "y/a"],
        "results": [
            {
                "port": 80,
                "protocol": "TCP",
                "allowed": {
                    "x/a": {"x/a": True, "x/b": True, "y/a": True},
                    "x/b": {"x/a": False, "x/b": True, "y/a": True},
                    "y/a": {"x/a": False, "x/b": True, "y/a": True},
                },
            }
        ],
    }
    assert table_from_json(json.loads(json.dumps(d))) == table
    with pytest.raises(InputError):
        table_from_json({"pods": ["x/a"]})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no table found"),
        ("eighty/TCP\n", ":1: expected a block title"),
        ("80/ICMP\n", ":1: unknown protocol"),
        ("80/TCP\nx/a\t.\n", ":2: expected a header row"),
        ("80/TCP\n-\tx/a\nx/b\t.\n", ":3: row x/b is not one of the header's pods"),
        ("80/TCP\n-\tx/a\tx/b\nx/a\t.\n", ":3: row x/a has 1 cells, expected 2"),
        ("80/TCP\n-\tx/a\nx/a\to\n", ":3: cell 'o'"),
        ("80/TCP\n-\tx/a\tx/b\nx/a\t.\t.\n", ":3: block 80/TCP: no row for x/b"),
        ("80/TCP\n-\tx/a\nx/a\t.\n\n80/TCP\n-\tx/a\nx/a\t.\n", ":5: block 80/TCP appears twice"),
        ("80/TCP\n-\tx/a\nx/a\t.\n\n81/TCP\n-\tx/b\nx/b\t.\n", "other pods than the first"),
    ],
)
def test_parse_errors_name_source_and_line(text: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_table(text, source="expect.txt")
    assert str(info.value).startswith("expect.txt")
    assert message in str(info.value)


def test_diff() -> None:
    actual = compute_table(only_to_x_a_blocked, PODS, [(80, TCP), (81, UDP)])
    assert diff_tables(actual, actual).empty
    assert format_diff(diff_tables(actual, actual)) == ""
    expected = parse_table(TEXT.replace("x/b\tX\t.\t.", "x/b\t.\t.\tX"))
    diff = diff_tables(expected, actual)
    assert [(c.src, c.dst, c.expected, c.actual) for c in diff.cells] == [
        ("x/b", "x/a", True, False),
        ("x/b", "y/a", False, True),
    ]
    assert format_diff(diff) == (
        "80/TCP: 2 cells differ\n"
        "  x/b -> x/a: expected allowed (.), got blocked (X)\n"
        "  x/b -> y/a: expected blocked (X), got allowed (.)\n"
    )


def test_diff_reports_missing_pods_and_blocks() -> None:
    actual = compute_table(only_to_x_a_blocked, PODS[1:], [(80, TCP), (82, TCP)])
    expected = parse_table(TEXT)
    diff = diff_tables(expected, actual)
    assert diff.problems == (
        "pod y/a is expected but not in the manifests",
        "block 81/UDP is expected but was not computed",
        "block 82/TCP was computed but is not in the expected table",
    )
    assert diff.cells == ()  # x/a and x/b agree on 80/TCP
