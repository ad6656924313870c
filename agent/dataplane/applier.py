"""Applier: keeps the kernel equal to the desired Ruleset, incrementally, safely.

    applier = Applier(select_backend("auto"))
    applier.apply(ruleset)      -> ApplyResult   (full the first time, then only changes)
    applier.tampered()          -> bool          cheap check: hooks at position 1, top chains
    applier.drop_counters()     -> {(ns/pod, "ingress"|"egress"): Counter}  (ipset counters)
    applier.cleanup()                            remove everything we own

One apply runs `render.plan(previous, desired)`: `ipset restore` (new sets
filled completely), one `iptables-restore --noflush --wait` per family (only
changed chains, hooks re-asserted at position 1 of FORWARD/INPUT/OUTPUT), then
`ipset restore` destroying sets no rule uses any more. The first apply adopts
whatever an earlier run left: it never flushes, the old rules keep enforcing
until the new payload replaces them in one restore, and leftovers of ours are
collected by name. Any failure raises ApplyError (quoting the payload lines the
kernel refused) and makes the next apply a full one, as kube-proxy's
needFullSync. Reading the whole ruleset happens only on full applies.

When an apply narrows what is allowed (`render.narrows`), the fast-path
connmark bit is cleared on every conntrack entry of each family
(`agent.dataplane.fastpath`), so flows allowed before are judged again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from agent.core import flatten, naming
from agent.core.errors import DataplaneError
from agent.core.model import Direction, Family
from agent.core.render import Counts, Plan, hook_lines, narrows, plan
from agent.core.ruleset import Ruleset
from agent.dataplane.backend import Backend
from agent.dataplane.cleanup import CleanupReport, cleanup, owned_in_save, removal_payload
from agent.dataplane.executor import Executor, PayloadExecutor, read_command, read_many
from agent.dataplane.fastpath import clear_marks
from agent.dataplane.netlinkset import NetlinkSets
from agent.dataplane.pyiptc import PyIptcExecutor

BUILTINS = ("FORWARD", "INPUT", "OUTPUT")
_ENTRY = re.compile(r'^(\S+) packets (\d+) bytes (\d+)(?: comment "(.*)")?')
FastPathClear = Callable[[Family, int], object]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    full: bool
    seconds: float
    counts: Counts
    changed: bool  # False when the kernel already matched


@dataclass(frozen=True, slots=True)
class Counter:
    packets: int
    bytes: int


class Applier:
    """Applies Rulesets through one backend; remembers what it applied."""

    def __init__(
        self,
        backend: Backend,
        *,
        clock: Callable[[], float] = time.monotonic,
        executor: PayloadExecutor | None = None,
        clear_fast_path: FastPathClear | None = None,
        revoke_fast_path: bool = True,
    ) -> None:
        self.backend = backend
        self.executor: PayloadExecutor = executor or (
            PyIptcExecutor(backend) if backend.in_process else Executor(backend)
        )
        # An injected executor (a test's fake) must see every write: no conntrack
        # behind its back unless the test passes its own.
        self._clear: FastPathClear | None = clear_fast_path or (
            clear_marks if executor is None else None
        )
        if not revoke_fast_path:  # the agent's revocation deletes those flows instead
            self._clear = None
        self.fast_path_clears = 0  # applies that revoked the fast path (tests, metrics)
        self.fast_path_clear_failures = 0  # of which some family could not be cleared
        self._clock = clock
        self._applied: Ruleset | None = None
        self._full_next = True

    @property
    def applied(self) -> Ruleset | None:
        """The last Ruleset applied successfully (None before the first)."""
        return self._applied

    @property
    def needs_full(self) -> bool:
        return self._full_next

    def force_full(self) -> None:
        """Make the next apply rewrite every chain and set (e.g. after tampering)."""
        self._full_next = True

    def apply(self, desired: Ruleset) -> ApplyResult:
        start = self._clock()
        full = self._full_next or self._applied is None
        try:
            the_plan = self._plan(desired, full=full)
            changed = self._run(the_plan, desired, full=full)
            if changed:
                self._revoke_fast_path(the_plan, desired)
        except DataplaneError:
            self._full_next = True
            raise
        self._applied = desired
        self._full_next = False
        return ApplyResult(
            full=full, seconds=self._clock() - start, counts=the_plan.counts, changed=changed
        )

    def apply_quick(self, desired: Ruleset) -> ApplyResult:
        """An incremental apply() without reading the built-in chains back.

        apply() re-asserts the hooks at position 1 from six `iptables -S` reads
        of FORWARD/INPUT/OUTPUT: 9-23 ms at 10k pods on nft, as much as the
        rest of an incremental sync. Here the plan's chain payloads (big chains
        that changed a little are patched in place, `agent.core.patch`) and set
        lines run as they are (small member changes over netlink); the hooks
        are left to `tampered()` (its timer forces a full apply when they
        moved) and to full applies. The first apply, a forced full one, and a
        family appearing or going are apply().
        """
        previous = self._applied
        if self._full_next or previous is None or set(desired.tables) != set(previous.tables):
            return self.apply(desired)
        start = self._clock()
        the_plan = plan(previous, desired, patch_chains=True)
        try:
            changed = False
            if the_plan.ipset_before:
                if not self._members_by_netlink(the_plan.ipset_before, desired):
                    self.executor.ipset(the_plan.ipset_before)
                changed = True
            for family in sorted(desired.tables):
                body = the_plan.iptables.get(family, "")
                if body:
                    self.executor.iptables(family, body)
                    changed = True
            if the_plan.ipset_after:
                self.executor.ipset(the_plan.ipset_after)
                changed = True
            if changed:
                self._revoke_fast_path(the_plan, desired)
        except DataplaneError:
            self._full_next = True
            raise
        self._applied = desired
        return ApplyResult(
            full=False, seconds=self._clock() - start, counts=the_plan.counts, changed=changed
        )

    _netlink: NetlinkSets | None = None

    def _revoke_fast_path(self, the_plan: Plan, desired: Ruleset) -> None:
        """Clear the connmark bit of every flow when the plan may narrow what is allowed."""
        if self._clear is None or not desired.connmark:
            return
        gates = [flatten.gate_set(d, f).name for f in desired.tables for d in Direction]
        if not narrows(the_plan, gates):
            return
        results = [self._clear(family, desired.connmark) for family in sorted(desired.tables)]
        self.fast_path_clears += 1
        if any(r is False for r in results):
            self.fast_path_clear_failures += 1

    def _members_by_netlink(self, text: str, desired: Ruleset) -> bool:
        """Small add/del batches on hash:ip sets over netlink (agent.dataplane.netlinkset).

        Only with the real restore executor: an injected one (a test's fake)
        must see every payload, and nothing may reach a kernel behind its back.
        """
        if type(self.executor) is not Executor:
            return False
        if self._netlink is None:
            self._netlink = NetlinkSets()
        return self._netlink.apply(text, {n: s.type for n, s in desired.sets.items()})

    def _plan(self, desired: Ruleset, *, full: bool) -> Plan:
        if not full:
            return plan(self._applied, desired)
        families = set(desired.tables) | set(self._applied.tables if self._applied else ())
        kernel_chains = {f: self._kernel_chains(f) for f in families}
        return plan(None, desired, kernel_chains=kernel_chains, kernel_sets=self._kernel_sets())

    def _run(self, the_plan: Plan, desired: Ruleset, *, full: bool) -> bool:
        changed = False
        if the_plan.ipset_before:
            self.executor.ipset(the_plan.ipset_before)
            changed = True
        families = sorted(desired.tables)
        builtins = self._builtin_rules(families)
        for family in families:
            payload = the_plan.payload(family, builtins[family])
            if payload:
                self.executor.iptables(family, payload)
                changed = True
        for family in (Family.V4, Family.V6):  # a family we no longer manage: remove it all
            managed_before = self._applied is not None and family in self._applied.tables
            if family not in desired.tables and (full or managed_before):
                owned = owned_in_save(read_command([self.backend.save(family)]))
                payload = removal_payload(owned)
                if payload:
                    self.executor.iptables(family, payload)
                    changed = True
        if the_plan.ipset_after:
            self.executor.ipset(the_plan.ipset_after)
            changed = True
        return changed

    # -- reading the kernel (cheap, chain by chain) ---------------------------------------

    def _list_many(self, chains: list[tuple[Family, str]]) -> list[list[str] | None]:
        """`iptables -S CHAIN` of several chains at once (None where a chain is missing)."""
        argvs = [[self.backend.iptables(f), "-w", "-S", chain] for f, chain in chains]
        return [None if out is None else out.splitlines() for out in read_many(argvs)]

    def _builtin_rules(self, families: list[Family]) -> dict[Family, dict[str, list[str]]]:
        """FORWARD/INPUT/OUTPUT rules of each family (all read concurrently)."""
        wanted = [(f, b) for f in families for b in BUILTINS]
        out: dict[Family, dict[str, list[str]]] = {f: {} for f in families}
        for (family, builtin), lines in zip(wanted, self._list_many(wanted), strict=True):
            out[family][builtin] = lines or []
        return out

    def _kernel_chains(self, family: Family) -> list[str]:
        out = read_command([self.backend.save(family), "-t", "filter"])
        return [
            line[1:].split()[0]
            for line in out.splitlines()
            if line.startswith(":") and naming.owned_chain(line[1:])
        ]

    def _kernel_sets(self) -> list[str]:
        return [n for n in read_command(["ipset", "list", "-n"]).split() if naming.owned_set(n)]

    def tampered(self) -> bool:
        """True if our hooks left position 1 or a top chain differs from what we applied.

        Reads only FORWARD/INPUT/OUTPUT and our top chains, never the whole ruleset.
        """
        if self._applied is None:
            return False
        wanted = [
            (family, hook, table.chain(hook.chain))
            for family, table in sorted(self._applied.tables.items())
            for hook in table.hooks
        ]
        listed = self._list_many(
            [(f, name) for f, hook, _ in wanted for name in (hook.builtin, hook.chain)]
        )
        for i, (_, hook, chain) in enumerate(wanted):
            builtin, top = listed[2 * i], listed[2 * i + 1]
            if hook_lines(hook, builtin or []):
                return True
            expected = chain.render() if chain is not None else []
            if top is None or [line for line in top if line.startswith("-A ")] != expected:
                return True
        return False

    def drop_counters(self) -> dict[tuple[str, str], Counter]:
        """Packets and bytes dropped per local pod and direction, summed over families.

        The drop path counts in the counter sets (one entry per isolated local pod,
        comment `ns/pod`): one `ipset list` per direction and family; the key is
        (`ns/pod`, "ingress"|"egress").
        """
        totals: dict[tuple[str, str], Counter] = {}
        families = sorted(self._applied.tables) if self._applied is not None else []
        wanted = [
            (d.value.lower(), flatten.counter_set(d, f).name) for f in families for d in Direction
        ]
        listings = read_many([["ipset", "list", name] for _, name in wanted])
        for (direction, _), listing in zip(wanted, listings, strict=True):
            if listing is None:
                continue
            for pod, counter in parse_counters(listing):
                old = totals.get((pod, direction), Counter(0, 0))
                totals[(pod, direction)] = Counter(
                    old.packets + counter.packets, old.bytes + counter.bytes
                )
        return totals

    def cleanup(self) -> CleanupReport:
        """Remove every chain, rule and set we own (this backend's variant)."""
        report = cleanup([self.backend])
        self._applied = None
        self._full_next = True
        return report


def parse_counters(listing: str) -> list[tuple[str, Counter]]:
    """(ns/pod, Counter) per member of `ipset list` output of a set with counters and
    comments (`10.244.0.10 packets 3 bytes 180 comment "x/a"`)."""
    out: list[tuple[str, Counter]] = []
    members = False
    for line in listing.splitlines():
        if line.startswith("Members:"):
            members = True
            continue
        match = _ENTRY.match(line.strip()) if members else None
        if match is None:
            continue
        pod = match.group(4) or match.group(1)
        out.append((pod, Counter(int(match.group(2)), int(match.group(3)))))
    return out
