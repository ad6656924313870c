"""The `-f PATH` manifest option shared by the offline subcommands (compile, reachability).

Both read Namespaces, Pods, NetworkPolicies, ClusterNetworkPolicies and Nodes
from files or directories the same way and report the loader's notes on stderr;
this module holds that once so the option's spelling and the notes stay
identical.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agent.core.model import ClusterState
    from agent.manifests.loader import Loaded


def add_manifest_option(parser: argparse.ArgumentParser) -> None:
    """Add the required, repeatable `-f/--filename PATH` option (stored in `files`)."""
    parser.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        metavar="PATH",
        help="manifest file or directory (repeatable; - for stdin)",
    )


def load_manifests(files: Sequence[str]) -> tuple[Loaded, ClusterState]:
    """Load the manifests, print the loader's notes to stderr, and build the cluster state."""
    from agent.manifests.loader import build_state, load

    loaded = load(files)
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    return loaded, build_state(loaded)
