"""The agent's one frozen Settings object, and the only module that reads the environment.

Every `netpol-agent run` flag has an environment variable (see `ENV_VARS`);
precedence is flag, then environment, then default. `Settings.validate()`
returns every problem at once so an operator fixes a bad DaemonSet in one go;
`load()` raises ConfigError carrying all of them.

Tunables without a flag (backoffs, watch timeouts, the health threshold) are
plain fields with defaults: tests pass small values, operators never need to.
"""

from __future__ import annotations

import enum
import ipaddress
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from agent.core.errors import ConfigError

DEFAULT_METRICS_PORT = 9847
DEFAULT_METRICS_BIND_ADDRESS = f"0.0.0.0:{DEFAULT_METRICS_PORT}"
DEFAULT_RESYNC_INTERVAL = 60.0
DEFAULT_MARK_BIT = 21
DEFAULT_CONNMARK_BIT = 22  # the fast path's conntrack mark bit (0x400000)
KUBE_PROXY_MARK_BITS = (14, 15)  # 0x4000 masquerade, 0x8000 drop


class Backend(enum.Enum):
    AUTO = "auto"
    NFT = "nft"
    LEGACY = "legacy"
    PYTHON_IPTABLES = "python-iptables"


class DropAction(enum.Enum):
    DROP = "drop"
    REJECT = "reject"


class Enforcement(enum.Enum):
    ENFORCE = "enforce"
    AUDIT = "audit"


class NewPods(enum.Enum):
    HOLD = "hold"
    ALLOW = "allow"


class LogFormat(enum.Enum):
    JSON = "json"
    TEXT = "text"


LOG_LEVELS = ("debug", "info", "warning", "error")

# settings field -> environment variable (the flag is the field name with dashes)
ENV_VARS: Mapping[str, str] = {
    "node_name": "NODE_NAME",
    "kubeconfig": "KUBECONFIG",
    "backend": "NETPOL_BACKEND",
    "resync_interval": "NETPOL_RESYNC_INTERVAL",
    "drop_action": "NETPOL_DROP_ACTION",
    "allow_cidrs": "NETPOL_ALLOW_CIDRS",
    "mark_bit": "NETPOL_MARK_BIT",
    "connmark_bit": "NETPOL_CONNMARK_BIT",
    "metrics_bind_address": "NETPOL_METRICS_BIND_ADDRESS",
    "log_format": "NETPOL_LOG_FORMAT",
    "log_level": "NETPOL_LOG_LEVEL",
    "nflog_group": "NETPOL_NFLOG_GROUP",
    "enforcement": "NETPOL_ENFORCEMENT",
    "revoke_established": "NETPOL_REVOKE_ESTABLISHED",
    "new_pods": "NETPOL_NEW_PODS",
}
DEFAULT_NFLOG_GROUP = 100


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the agent is configured with. Build with `load()` or directly in tests."""

    node_name: str = ""
    kubeconfig: str | None = None
    backend: str = Backend.AUTO.value
    resync_interval: float = DEFAULT_RESYNC_INTERVAL
    drop_action: str = DropAction.DROP.value
    allow_cidrs: tuple[str, ...] = ()
    mark_bit: int = DEFAULT_MARK_BIT
    connmark_bit: int = DEFAULT_CONNMARK_BIT
    metrics_bind_address: str = DEFAULT_METRICS_BIND_ADDRESS
    log_format: str = LogFormat.JSON.value
    log_level: str = "info"
    nflog_group: int = DEFAULT_NFLOG_GROUP  # -1: no drop events
    enforcement: str = Enforcement.ENFORCE.value
    revoke_established: bool = True
    new_pods: str = NewPods.HOLD.value
    # --- tunables without a flag -------------------------------------------------------
    min_sync_interval: float = 0.05  # bursts coalesce into syncs at most this often
    tamper_check_interval: float = 10.0  # capped at resync_interval
    sync_backoff_initial: float = 0.5
    sync_backoff_max: float = 30.0
    watch_backoff_initial: float = 0.5
    watch_backoff_max: float = 30.0
    watch_timeout_seconds: int = 120  # server-side timeoutSeconds of one watch request
    connect_timeout: float = 5.0
    read_timeout: float = 30.0  # list requests; watches use timeoutSeconds + this
    healthz_threshold: float = 120.0  # a due sync failing for this long fails /healthz
    shutdown_grace: float = 5.0
    drop_log_rate: int = 10  # logged packets per second per source/destination pair
    drop_log_burst: int = 5
    drop_event_window: float = 5.0  # events aggregate per key over this many seconds

    # --- derived values ------------------------------------------------------------------
    @property
    def effective_tamper_interval(self) -> float:
        return min(self.tamper_check_interval, self.resync_interval)

    @property
    def metrics_host_port(self) -> tuple[str, int]:
        host, port = _split_host_port(self.metrics_bind_address)
        return host, port

    @property
    def mark(self) -> int:
        return 1 << self.mark_bit

    def validate(self) -> tuple[str, ...]:
        """Every problem with these settings, as messages naming the flag; () when fine."""
        problems: list[str] = []
        if not self.node_name:
            problems.append("--node-name (or NODE_NAME) is required")
        _check_choice(problems, "--backend", self.backend, [b.value for b in Backend])
        _check_choice(problems, "--drop-action", self.drop_action, [d.value for d in DropAction])
        _check_choice(problems, "--log-format", self.log_format, [f.value for f in LogFormat])
        _check_choice(problems, "--log-level", self.log_level, list(LOG_LEVELS))
        _check_choice(problems, "--enforcement", self.enforcement, [e.value for e in Enforcement])
        if not -1 <= self.nflog_group <= 65535:
            problems.append(
                f"--nflog-group must be 0..65535 (or -1 for no drop events), got {self.nflog_group}"
            )
        if self.drop_log_rate < 1 or self.drop_log_burst < 1:
            problems.append("drop_log_rate and drop_log_burst must be >= 1")
        _check_choice(problems, "--new-pods", self.new_pods, [n.value for n in NewPods])
        if not self.resync_interval > 0:
            problems.append(f"--resync-interval must be > 0 seconds, got {self.resync_interval}")
        if not 0 <= self.mark_bit <= 31:
            problems.append(f"--mark-bit must be between 0 and 31, got {self.mark_bit}")
        elif self.mark_bit in KUBE_PROXY_MARK_BITS:
            problems.append(
                f"--mark-bit {self.mark_bit} collides with kube-proxy's marks 0x4000/0x8000"
            )
        if not 0 <= self.connmark_bit <= 31:
            problems.append(f"--connmark-bit must be between 0 and 31, got {self.connmark_bit}")
        elif self.connmark_bit in KUBE_PROXY_MARK_BITS:
            problems.append(
                f"--connmark-bit {self.connmark_bit} collides with kube-proxy's marks 0x4000/0x8000"
            )
        elif self.connmark_bit == self.mark_bit:
            problems.append(f"--connmark-bit {self.connmark_bit} is the --mark-bit too")
        for cidr in self.allow_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                problems.append(f"--allow-cidr {cidr!r} is not a CIDR")
        try:
            _split_host_port(self.metrics_bind_address)
        except ValueError as exc:
            problems.append(f"--metrics-bind-address {self.metrics_bind_address!r}: {exc}")
        for name in ("min_sync_interval", "sync_backoff_initial", "watch_backoff_initial"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        return tuple(problems)


def _check_choice(problems: list[str], flag: str, value: str, choices: list[str]) -> None:
    if value not in choices:
        problems.append(f"{flag} must be one of {', '.join(choices)}; got {value!r}")


def _split_host_port(address: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("expected HOST:PORT, e.g. 0.0.0.0:9847 or [::]:9847")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    host = host.strip("[]") or "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueError(f"host {host!r} is not an IP address") from None
    return host, port


_INT_DEFAULTS = {
    "mark_bit": DEFAULT_MARK_BIT,
    "connmark_bit": DEFAULT_CONNMARK_BIT,
    "nflog_group": DEFAULT_NFLOG_GROUP,
}


def _from_text(name: str, text: str, problems: list[str]) -> Any:
    """Convert an environment variable's text to the field's type, noting problems."""
    env = ENV_VARS[name]
    if name == "allow_cidrs":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if name == "resync_interval":
        try:
            return float(text)
        except ValueError:
            problems.append(f"{env}={text!r} is not a number of seconds")
            return DEFAULT_RESYNC_INTERVAL
    if name in _INT_DEFAULTS:
        try:
            return int(text)
        except ValueError:
            problems.append(f"{env}={text!r} is not an integer")
            return _INT_DEFAULTS[name]
    if name == "revoke_established":
        return _boolean(env, text, problems)
    if name in ("backend", "drop_action", "log_format", "log_level", "enforcement", "new_pods"):
        return text.strip().lower()
    return text


def _boolean(env: str, text: str, problems: list[str]) -> bool:
    value = text.strip().lower()
    if value not in ("true", "1", "yes", "false", "0", "no"):
        problems.append(f"{env}={text!r} is not true or false")
    return value not in ("false", "0", "no")


def load(
    flags: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    stderr_is_tty: bool | None = None,
    **overrides: Any,
) -> Settings:
    """Settings from flags (None = not given), then the environment, then defaults.

    Raises ConfigError listing every problem.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    values: dict[str, Any] = {}
    for name, var in ENV_VARS.items():
        flag_value = flags.get(name)
        if flag_value is not None and flag_value != [] and flag_value != ():
            values[name] = tuple(flag_value) if name == "allow_cidrs" else flag_value
            if name == "revoke_established" and isinstance(flag_value, str):
                values[name] = flag_value == "true"
        elif env.get(var):
            values[name] = _from_text(name, env[var], problems)
    if "log_format" not in values:
        tty = sys.stderr.isatty() if stderr_is_tty is None else stderr_is_tty
        values["log_format"] = LogFormat.TEXT.value if tty else LogFormat.JSON.value
    known = {f.name for f in fields(Settings)}
    for key, value in overrides.items():
        if key not in known:
            problems.append(f"unknown setting {key!r}")
        else:
            values[key] = value
    settings = Settings(**values)
    problems.extend(settings.validate())
    if problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(problems))
    return settings
