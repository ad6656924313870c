"""A running lab for the tests of this directory: one per module, removed even on failure.

Each lab gets a random name (so its namespaces are `npa-lab-t<hex>-*`) and a
state directory under pytest's tmp dir; `lab down` runs in a finalizer.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agent.core.model import Protocol
from agent.core.table import Case, TableDiff, TruthTable
from agent.lab import lifecycle
from agent.lab import probe as lab_probe
from agent.lab.apply import apply_objects, delete_objects, load_objects
from agent.lab.client import ApiClient
from agent.lab.state import LabConfig, LabPaths
from agent.lab.topology import Topology


@dataclass
class RunningLab:
    config: LabConfig
    paths: LabPaths
    base: Path

    @property
    def topo(self) -> Topology:
        return self.config.topology()

    @property
    def client(self) -> ApiClient:
        return ApiClient.from_kubeconfig(self.paths.kubeconfig)

    def apply(self, objects: Sequence[dict[str, Any]]) -> None:
        apply_objects(self.client, objects)

    def apply_files(self, *paths: Path) -> list[dict[str, Any]]:
        objects = load_objects(paths)
        self.apply(objects)
        return objects

    def delete(self, objects: Sequence[dict[str, Any]]) -> None:
        delete_objects(self.client, objects)

    def probe(
        self, cases: Sequence[Case] | None = None, *, timeout: float = 1.0
    ) -> tuple[TruthTable, TableDiff]:
        """Wait for pods and agents like `lab probe`, probe, and compare with the engine."""
        snap = lab_probe.settled_snapshot(self.client, self.topo, timeout=20)
        if self.config.agents:
            real = self.config.control_plane == "real"
            lab_probe.wait_snapshot(self.topo, snap, per_kind=real, timeout=20)
        pods = lab_probe.probe_pods(snap.state)
        chosen, _ = lab_probe.usable_cases(
            list(cases)
            if cases is not None
            else lab_probe.select_cases(pods, port=None, protocol=None)
        )
        table = lab_probe.probe_table(
            self.topo,
            pods,
            chosen,
            timeout=timeout,
            recheck=lab_probe.engine_verdict(snap.state),
        )
        return table, lab_probe.compare(table, snap.state, pods, chosen)

    def cli(self, *args: str) -> str:
        """`netpol-agent lab ARGS --name <this lab> --state-dir <its base>`; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "agent", "lab", *args, "--name", self.config.name,
             "--state-dir", str(self.base)],
            cwd=Path(__file__).resolve().parents[2],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )  # fmt: skip
        return done.stdout

    def cell(self, table: TruthTable, src: str, dst: str, case: Case = (80, Protocol.TCP)) -> bool:
        block = table.block(*case)
        assert block is not None
        return block.allowed[src][dst]


def start_lab(base: Path, **options: Any) -> Iterator[RunningLab]:
    config = LabConfig(name=f"t{secrets.token_hex(4)}", **options)
    try:
        paths = lifecycle.up(config, base=base)
        yield RunningLab(config, paths, base)
    finally:
        lifecycle.down(config.name, base=base)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningLab]:
    yield from start_lab(tmp_path_factory.mktemp("lab"), nodes=2)
