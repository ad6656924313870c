"""Settings: flags over environment over defaults; validate() reports every problem."""

from __future__ import annotations

import pytest

from agent.cli import build_parser
from agent.core.errors import ConfigError
from agent.node import settings as s


def parse(*argv: str) -> dict[str, object]:
    from agent.cli.run import FLAG_FIELDS

    args = build_parser().parse_args(["run", *argv])
    return {name: getattr(args, name) for name in FLAG_FIELDS}


def test_defaults_with_node_name_from_env() -> None:
    got = s.load(parse(), environ={"NODE_NAME": "node-0"}, stderr_is_tty=False)
    assert got.node_name == "node-0"
    assert got.resync_interval == 60.0
    assert got.mark_bit == 21 and got.mark == 0x200000
    assert got.metrics_host_port == ("0.0.0.0", 9847)
    assert got.log_format == "json"
    assert got.backend == "auto" and got.drop_action == "drop" and got.kubeconfig is None


def test_text_logs_on_a_terminal() -> None:
    got = s.load(parse("--node-name", "n"), environ={}, stderr_is_tty=True)
    assert got.log_format == "text"


def test_every_flag_and_env_var() -> None:
    env = {
        "NODE_NAME": "env-node",
        "KUBECONFIG": "/env/kc",
        "NETPOL_BACKEND": "nft",
        "NETPOL_RESYNC_INTERVAL": "30",
        "NETPOL_DROP_ACTION": "reject",
        "NETPOL_ALLOW_CIDRS": "10.0.0.0/8, 192.0.2.0/24",
        "NETPOL_MARK_BIT": "20",
        "NETPOL_CONNMARK_BIT": "19",
        "NETPOL_METRICS_BIND_ADDRESS": "127.0.0.1:19847",
        "NETPOL_LOG_FORMAT": "text",
        "NETPOL_LOG_LEVEL": "debug",
    }
    from_env = s.load(parse(), environ=env)
    assert from_env.node_name == "env-node" and from_env.kubeconfig == "/env/kc"
    assert from_env.backend == "nft" and from_env.resync_interval == 30.0
    assert from_env.drop_action == "reject" and from_env.allow_cidrs == (
        "10.0.0.0/8",
        "192.0.2.0/24",
    )
    assert from_env.connmark_bit == 19
    assert from_env.mark_bit == 20 and from_env.metrics_host_port == ("127.0.0.1", 19847)
    assert from_env.log_format == "text" and from_env.log_level == "debug"
    flags = parse(
        "--node-name",
        "flag-node",
        "--kubeconfig",
        "/f/kc",
        "--backend",
        "legacy",
        "--resync-interval",
        "5",
        "--drop-action",
        "drop",
        "--allow-cidr",
        "198.51.100.0/24",
        "--allow-cidr",
        "2001:db8::/32",
        "--mark-bit",
        "23",
        "--connmark-bit",
        "24",
        "--metrics-bind-address",
        "[::1]:9999",
        "--log-format",
        "json",
        "--log-level",
        "warning",
    )
    from_flags = s.load(flags, environ=env)
    assert from_flags.node_name == "flag-node" and from_flags.kubeconfig == "/f/kc"
    assert from_flags.backend == "legacy" and from_flags.resync_interval == 5.0
    assert from_flags.allow_cidrs == ("198.51.100.0/24", "2001:db8::/32")
    assert from_flags.connmark_bit == 24
    assert from_flags.mark_bit == 23 and from_flags.metrics_host_port == ("::1", 9999)
    assert from_flags.log_format == "json" and from_flags.log_level == "warning"


def test_all_problems_reported_at_once() -> None:
    env = {"NETPOL_MARK_BIT": "14", "NETPOL_RESYNC_INTERVAL": "soon", "NETPOL_BACKEND": "iptables"}
    with pytest.raises(ConfigError) as err:
        s.load(
            parse("--allow-cidr", "10.0.0.0/33", "--metrics-bind-address", "nowhere"), environ=env
        )
    text = str(err.value)
    for needle in (
        "--node-name",
        "14 collides",
        "NETPOL_RESYNC_INTERVAL='soon'",
        "--backend",
        "10.0.0.0/33",
        "--metrics-bind-address",
    ):
        assert needle in text, needle


@pytest.mark.parametrize("bit", [-1, 32, 14, 15])
def test_bad_mark_bits(bit: int) -> None:
    assert any("--mark-bit" in p for p in s.Settings(node_name="n", mark_bit=bit).validate())


def test_run_help_lists_every_flag_and_env_var(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    out = capsys.readouterr().out
    for flag, env in [
        ("--node-name", "NODE_NAME"),
        ("--kubeconfig", "KUBECONFIG"),
        ("--backend", "NETPOL_BACKEND"),
        ("--resync-interval", "NETPOL_RESYNC_INTERVAL"),
        ("--drop-action", "NETPOL_DROP_ACTION"),
        ("--allow-cidr", "NETPOL_ALLOW_CIDRS"),
        ("--mark-bit", "NETPOL_MARK_BIT"),
        ("--connmark-bit", "NETPOL_CONNMARK_BIT"),
        ("--metrics-bind-address", "NETPOL_METRICS_BIND_ADDRESS"),
        ("--log-format", "NETPOL_LOG_FORMAT"),
        ("--log-level", "NETPOL_LOG_LEVEL"),
    ]:
        assert flag in out and env in out, flag
    assert "9847" in out


def test_run_without_node_name_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.cli import main

    monkeypatch.delenv("NODE_NAME", raising=False)
    assert main(["run"]) == 2
    assert "--node-name" in capsys.readouterr().err
