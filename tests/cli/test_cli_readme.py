"""The README's command-line examples run as shown, against the README's example graph."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from examples.hello_node import GRAPH, Greet, Shout
from exospherehost import Runtime
from tests.cli.conftest import Cli
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Command line") :]
    block = section[
        section.index("```bash") + len("```bash") : section.index("```\n", section.index("```bash") + 7)
    ]
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("exosphere ")]


async def test_the_readme_commands_work(server: LiveServer, cli: Cli, tmp_path: Path) -> None:
    commands = _readme_commands()
    graph_file = ROOT / "examples" / "hello_graph.yaml"
    # The file the README applies is the graph examples/hello_node.py upserts.
    applied = yaml.safe_load(graph_file.read_text(encoding="utf-8"))
    assert applied["nodes"] == [
        node.model_dump(exclude_none=True, exclude={"timeout_seconds"}) for node in GRAPH
    ]
    hello = Cli(env={**cli.env, "EXOSPHERE_NAMESPACE": "hello"})
    run_id = fork_id = ""

    async with Runtime(
        "hello", "hello-runtime", [Greet, Shout], state_manager_uri=server.base_url, key=server.api_key
    ):
        for command in commands:
            ids = {"<run-id>": run_id, "<fork-id>": fork_id}
            args = [
                str(ROOT / arg) if arg.endswith(".yaml") else ids.get(arg, arg)
                for arg in shlex.split(command)[1:]
            ]
            result = await hello(*args, "--interval", "0.2") if "--watch" in args else await hello(*args)
            differ = args[:2] == ["run", "diff"]  # the fork shouted something else: exit 1, like diff
            assert result.code == (1 if differ else 0), result
            if args[:2] == ["run", "trigger"]:
                run_id = result.stdout.split()[1]  # the summary's first line: "run <id>"
            if args[:2] == ["run", "fork"]:
                fork_id = result.stdout.split()[1]
                assert f"forked from   {run_id} (from shout)" in result.stdout
                assert '{"text": "HI AGAIN"}' in result.stdout
            if differ:
                assert "shout" in result.stdout and "1 changed" in result.stdout

    assert len(commands) == 7 and run_id and fork_id
