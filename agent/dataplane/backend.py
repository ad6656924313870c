"""Which iptables the host uses, detected the way kube-proxy's iptables-wrapper does it.

A host runs either iptables-legacy (x_tables) or iptables-nft (nf_tables); rules
written with the wrong one are invisible to the other and to kube-proxy. We look
for kubelet's `KUBE-IPTABLES-HINT` chain in the mangle table (nft first), and
otherwise count the rules each variant sees (`-save | grep -c '^-'`, both
families): more legacy rules means legacy, anything else means nft. Detection
only reads: it never instantiates a table that does not exist yet.

    detect_mode(run=run_command) -> "nft" | "legacy"
    select_backend("auto"|"nft"|"legacy"|"python-iptables") -> Backend
    Backend.iptables(family) / .save(family) / .restore(family)   matching binaries
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agent.core.errors import ConfigError, DataplaneError
from agent.core.model import Family

BACKENDS = ("auto", "nft", "legacy", "python-iptables")
HINT_CHAIN = "KUBE-IPTABLES-HINT"

Run = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a read-only command; a missing binary reads as an empty, failed run."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(list(argv), 127, "", f"{argv[0]}: not found")


@dataclass(frozen=True, slots=True)
class Backend:
    """The iptables variant we drive: `mode` picks the binaries; `in_process` means iptc."""

    name: str
    mode: str

    @property
    def in_process(self) -> bool:
        return self.name == "python-iptables"

    def iptables(self, family: Family) -> str:
        base = "ip6tables" if family is Family.V6 else "iptables"
        return f"{base}-{self.mode}"

    def save(self, family: Family) -> str:
        return f"{self.iptables(family)}-save"

    def restore(self, family: Family) -> str:
        return f"{self.iptables(family)}-restore"


def _rule_count(run: Run, mode: str) -> int:
    total = 0
    for base in ("iptables", "ip6tables"):
        out = run([f"{base}-{mode}-save"]).stdout
        total += sum(1 for line in out.splitlines() if line.startswith("-"))
    return total


def _legacy_tables() -> set[str]:
    # thread-self: the caller may be a thread moved into another namespace.
    try:
        with open("/proc/thread-self/net/ip_tables_names") as names:
            return set(names.read().split())
    except OSError:
        return set()


def _has_hint(run: Run, mode: str) -> bool:
    # Reading a legacy table instantiates it: only look at mangle if it exists.
    if mode == "legacy" and "mangle" not in _legacy_tables():
        return False
    out = run([f"iptables-{mode}-save", "-t", "mangle"]).stdout
    return any(line.startswith(f":{HINT_CHAIN} ") for line in out.splitlines())


def detect_mode(run: Run = run_command) -> str:
    """'nft' or 'legacy', as kube-proxy's iptables-wrapper decides."""
    if _has_hint(run, "nft"):
        return "nft"
    if _has_hint(run, "legacy"):
        return "legacy"
    return "legacy" if _rule_count(run, "legacy") > _rule_count(run, "nft") else "nft"


def select_backend(name: str, *, run: Run = run_command) -> Backend:
    """The backend for `--backend NAME`; python-iptables refuses nft hosts."""
    if name not in BACKENDS:
        raise ConfigError(
            f"--backend: unknown backend {name!r} (choose from {', '.join(BACKENDS)})"
        )
    if name == "auto":
        mode = detect_mode(run)
        return Backend(name=mode, mode=mode)
    if name == "python-iptables":
        if detect_mode(run) == "nft" and _rule_count(run, "nft") > 0:
            raise DataplaneError(
                "--backend python-iptables drives iptables-legacy only, "
                "but this host's rules are in nf_tables (use --backend nft or auto)"
            )
        return Backend(name=name, mode="legacy")
    return Backend(name=name, mode=name)
