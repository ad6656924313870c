"""The python-iptables backend: the same restore payloads, applied in process through libiptc.

For iptables-legacy hosts only (libiptc speaks x_tables). It takes exactly the
iptables-restore text the default backend feeds to `iptables-legacy-restore
--noflush`, parses each line into python-iptables rules and commits each table
once, so both backends produce identical rules from one renderer (a kernel test
compares their `iptables-legacy-save` output).

Supported payload lines: `*table`, `:CHAIN POLICY [p:b]` (create or flush;
built-in chains: policy only), `-A`, `-I CHAIN [n]`, `-D CHAIN spec`, `-R CHAIN n`,
`-N`, `-F [CHAIN]`, `-X CHAIN`, `COMMIT`, `#` comments.

libiptc binds a table handle to the namespace of the thread that opened it, so
every table is re-opened per payload; one lock serialises python-iptables'
global state, and the host's xtables lock is held while committing.

    PyIptcExecutor(backend).iptables(family, payload)   same contract as Executor.iptables
"""

from __future__ import annotations

import contextlib
import fcntl
import shlex
import threading
from collections.abc import Iterator
from typing import Any

from agent.core.errors import ApplyError
from agent.core.model import Family
from agent.dataplane.backend import Backend
from agent.dataplane.executor import extract_lines, ipset_restore

XTABLES_LOCK = "/run/xtables.lock"
_lock = threading.Lock()
_PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "icmpv6": 58, "sctp": 132}
_RULE_FIELDS = {
    "-p": "protocol",
    "--protocol": "protocol",
    "-s": "src",
    "--source": "src",
    "-d": "dst",
    "--destination": "dst",
    "-i": "in_interface",
    "--in-interface": "in_interface",
    "-o": "out_interface",
    "--out-interface": "out_interface",
}


@contextlib.contextmanager
def _xtables_lock() -> Iterator[None]:
    with open(XTABLES_LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def target_class(iptc: Any, table: Any) -> Any:
    """iptc.Target deciding "is this a jump to a chain?" from `table` alone.

    Stock python-iptables asks every table of the family (instantiating the
    missing ones and using handles that may belong to another namespace).
    """

    class _Target(iptc.Target):  # type: ignore[misc]
        def _is_standard_target(self) -> bool:
            name = self._name
            return name not in iptc.Target.STANDARD_TARGETS and bool(table.is_chain(name))

    return _Target


def build_rule(iptc: Any, table: Any, family: Family, spec: list[str]) -> Any:
    """A python-iptables Rule from the tokens of an iptables rule spec (after the chain)."""
    rule = iptc.Rule6() if family is Family.V6 else iptc.Rule()
    target_cls = target_class(iptc, table)
    current: Any = None
    negate = False
    i = 0
    while i < len(spec):
        token = spec[i]
        i += 1
        if token == "!":
            negate = True
            continue
        values: list[str] = []
        while i < len(spec) and spec[i] != "!" and not spec[i].startswith("-"):
            values.append(spec[i])
            i += 1
        prefix = ["!"] if negate else []
        negate = False
        if token in _RULE_FIELDS:
            value = values[0]
            if _RULE_FIELDS[token] == "protocol":  # python-iptables knows few names
                value = str(_PROTOCOLS.get(value.lower(), value))
            setattr(rule, _RULE_FIELDS[token], ("!" if prefix else "") + value)
        elif token in ("-m", "--match"):
            current = rule.create_match(values[0])
        elif token in ("-j", "--jump", "-g", "--goto"):
            current = target_cls(rule, name=values[0], goto=token in ("-g", "--goto"))
            rule.target = current
        elif token.startswith("--"):
            if current is None:  # an implicit protocol match, e.g. `-p tcp --dport 80`
                current = rule.create_match(rule.protocol)
            current.parse(token[2:], prefix + values)
        else:
            raise ValueError(f"unsupported rule option {token!r}")
    return rule


class _Apply:
    """Applies one payload to the tables of one family, committing at each COMMIT."""

    def __init__(self, iptc: Any, family: Family) -> None:
        self.iptc = iptc
        self.family = family
        self.table: Any = None

    def open(self, name: str) -> None:
        cls = self.iptc.Table6 if self.family is Family.V6 else self.iptc.Table
        self.table = cls(name, autocommit=False)
        self.table.refresh()  # bind the handle to this thread's namespace, drop stale state

    def chain(self, name: str) -> Any:
        return self.iptc.Chain(self.table, name)

    def line(self, text: str) -> None:
        if not text or text.startswith("#"):
            return
        if text.startswith("*"):
            self.open(text[1:].strip())
            return
        if self.table is None:
            raise ValueError("rule outside a table (missing *table line)")
        if text == "COMMIT":
            self.table.commit()
            self.table.close()
            self.table = None
            return
        if text.startswith(":"):
            name, policy = text[1:].split()[:2]
            if self.table.builtin_chain(name):
                if policy != "-":
                    self.chain(name).set_policy(policy)
            elif self.table.is_chain(name):
                self.table.flush_entries(name)
            else:
                self.table.create_chain(name)
            return
        tokens = shlex.split(text) if '"' in text or "'" in text else text.split()
        op, args = tokens[0], tokens[1:]
        self.command(op, args)

    def command(self, op: str, args: list[str]) -> None:
        if op in ("-N", "--new-chain"):
            self.table.create_chain(args[0])
        elif op in ("-X", "--delete-chain"):
            self.table.delete_chain(args[0])
        elif op in ("-F", "--flush"):
            names = args[:1] or [c.name for c in self.table.chains]
            for name in names:
                self.table.flush_entries(name)
        elif op in ("-A", "--append"):
            self.chain(args[0]).append_rule(
                build_rule(self.iptc, self.table, self.family, args[1:])
            )
        elif op in ("-I", "--insert"):
            position, spec = (
                (int(args[1]), args[2:]) if args[1:2] and args[1].isdigit() else (1, args[1:])
            )
            self.chain(args[0]).insert_rule(
                build_rule(self.iptc, self.table, self.family, spec), position - 1
            )
        elif op in ("-R", "--replace"):
            rule = build_rule(self.iptc, self.table, self.family, args[2:])
            self.chain(args[0]).replace_rule(rule, int(args[1]) - 1)
        elif op in ("-D", "--delete"):
            if len(args) == 2 and args[1].isdigit():
                chain = self.chain(args[0])
                chain.delete_rule(chain.rules[int(args[1]) - 1])
            else:
                self.chain(args[0]).delete_rule(
                    build_rule(self.iptc, self.table, self.family, args[1:])
                )
        else:
            raise ValueError(f"unsupported command {op!r}")

    def abandon(self) -> None:
        if self.table is not None:
            self.table.close()  # autocommit is off: nothing pending is committed
            self.table = None


class PyIptcExecutor:
    """The python-iptables flavour of Executor: same payloads, applied through libiptc."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        import iptc  # loading libiptc/libxtables takes ~1 s: pay it once, up front

        self._iptc = iptc

    def ipset(self, text: str) -> None:
        ipset_restore(text)

    def iptables(self, family: Family, payload: str) -> None:
        if not payload.strip():
            return
        with _lock, _xtables_lock():
            applier = _Apply(self._iptc, family)
            number = 0
            try:
                for text in payload.splitlines():
                    number += 1
                    applier.line(text.strip())
            except Exception as exc:
                applier.abandon()
                raise ApplyError(
                    f"python-iptables ({family.name}) failed at payload line {number}: {exc}\n"
                    f"payload around line {number}:\n{extract_lines(payload, number)}"
                ) from exc
