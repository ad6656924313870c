"""The image's entrypoint and every flag and variable the manifests use exist in the CLI.

The help text is the real `netpol-agent <command> --help`, so renaming a flag
without updating deploy/ fails here rather than in a user's CrashLoopBackOff.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib

import pytest

from agent.cli import build_parser
from agent.node.settings import ENV_VARS
from tests.deploy.support import REPO, Doc, containers, find, render

FLAG = re.compile(r"^(--[a-z0-9][a-z0-9-]*)(?:=.*)?$")


def _help(command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "agent", command, "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _flags_in(args: list[str]) -> list[str]:
    return [m.group(1) for a in args if (m := FLAG.match(a))]


def _dockerfile_instruction(name: str) -> list[str]:
    lines = (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()
    (found,) = [line for line in lines if line.startswith(f"{name} ")]
    value: list[str] = json.loads(found.removeprefix(f"{name} "))
    return value


def _agent_container(directory: str) -> Doc:
    ds = find(render(directory), "DaemonSet", "netpol-agent")
    (agent,) = ds["spec"]["template"]["spec"]["containers"]
    result: Doc = agent
    return result


def test_image_entrypoint_is_netpol_agent_run() -> None:
    assert _dockerfile_instruction("ENTRYPOINT") + _dockerfile_instruction("CMD") == [
        "netpol-agent",
        "run",
    ]
    with (REPO / "pyproject.toml").open("rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["netpol-agent"] == "agent.cli:main"


@pytest.mark.parametrize("directory", ["deploy/base", "deploy/overlays/kind-flannel"])
def test_agent_flags_exist_in_run_help(directory: str) -> None:
    agent = _agent_container(directory)
    assert agent["command"] == ["netpol-agent"]
    assert agent["args"][0] == "run"
    flags = _flags_in(agent["args"][1:])
    assert flags, "the manifest passes no flags?"
    text = _help("run")
    missing = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert not missing, f"flags not in `netpol-agent run --help`: {missing}"


def test_agent_args_parse() -> None:
    agent = _agent_container("deploy/base")
    args = [a.replace("$(NODE_NAME)", "node-0") for a in agent["args"]]
    parsed = build_parser().parse_args(args)
    assert parsed.command == "run"
    assert parsed.node_name == "node-0"


def test_agent_env_vars_are_settings() -> None:
    for c in containers(
        find(render("deploy/base"), "DaemonSet", "netpol-agent")["spec"]["template"]["spec"]
    ):
        for env in c.get("env", []):
            assert env["name"] in ENV_VARS.values(), f"{env['name']} is read by nothing"


def test_args_reference_only_defined_env_vars() -> None:
    agent = _agent_container("deploy/base")
    defined = {e["name"] for e in agent.get("env", [])}
    for arg in agent["args"]:
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", arg):
            assert ref in defined, f"{arg}: $({ref}) is not in the container's env"


def test_cleanup_flags_exist_in_cleanup_help() -> None:
    ds = find(render("deploy/cleanup"), "DaemonSet", "netpol-agent-cleanup")
    (init,) = ds["spec"]["template"]["spec"]["initContainers"]
    text = _help("cleanup")
    for flag in _flags_in(init["args"][1:]):
        assert flag in text, f"{flag} not in `netpol-agent cleanup --help`"
    build_parser().parse_args(init["args"])
