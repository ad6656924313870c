"""The `netpol-agent` command line: one module per subcommand, found automatically.

Each module in this package that defines `register(subparsers)` adds its
subcommand; the parser it adds sets `func` (taking the parsed namespace and
returning an exit code) with `set_defaults(func=...)`. Modules import their
heavy dependencies inside the handler so that `--help` stays fast.

Exit codes: 0 success, 1 a check failed (e.g. --expect differences), 2 bad input,
141 the reader of our output went away (`... | head`), as a SIGPIPE'd tool would.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Callable, Sequence
from typing import Any

from agent import __version__
from agent.core.errors import InputError, NetpolError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netpol-agent",
        description="NetworkPolicy enforcement for clusters whose CNI has none.",
    )
    parser.add_argument("--version", action="version", version=f"netpol-agent {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module: Any = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Handler | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except InputError as exc:
        print(f"netpol-agent: error: {exc}", file=sys.stderr)
        return 2
    except NetpolError as exc:
        print(f"netpol-agent: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `netpol-agent ... | head`: the reader is gone. Point stdout at /dev/null so the
        # interpreter's final flush does not complain, and exit like a SIGPIPE'd tool.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
