"""`exosphere graph apply | list | get` against a real server and runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from exospherehost import Runtime
from tests.cli.conftest import Cli, write

pytestmark = pytest.mark.e2e


def _signing_graph(ns: str) -> str:
    return f"""
name: signed
nodes:
  - node_name: Sign
    namespace: {ns}
    identifier: sign
    inputs:
      text: hello
secrets:
  signing_key: "${{CLI_SIGNING_KEY}}"
retry_policy:
  max_retries: 0
"""


async def test_apply_yaml_reads_secrets_from_the_environment(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "graph.yaml", _signing_graph(ns))

    applied = await cli("graph", "apply", str(path), "-o", "json", env={"CLI_SIGNING_KEY": "k" * 13})
    listed = await cli("graph", "list", "-o", "json")
    got = await cli("graph", "get", "signed", "-o", "json")
    run = await cli("run", "trigger", "signed", "--watch", "--interval", "0.2", "-o", "json")
    states = await cli("run", "states", run.json()["run_id"], "-o", "json")

    assert applied.code == 0, applied
    assert applied.json()["validation_status"] == "VALID"
    assert [g["name"] for g in listed.json()] == ["signed"]
    assert got.json()["secrets"] == {"signing_key": True}  # names only, never the value
    assert run.code == 0, run
    # The node saw the value of the variable (13 characters), not the text "${CLI_SIGNING_KEY}".
    assert [s["outputs"] for s in states.json()] == [{"signed": "hello:13"}]


async def test_apply_with_an_unset_variable_is_a_usage_error_and_sends_nothing(
    cli: Cli, ns: str, tmp_path: Path
) -> None:
    path = write(tmp_path, "graph.yaml", _signing_graph(ns))

    applied = await cli("graph", "apply", str(path))
    got = await cli("graph", "get", "signed")

    assert applied.code == 2, applied
    assert "CLI_SIGNING_KEY" in applied.stderr and "signing_key" in applied.stderr
    assert got.code == 1 and "not found" in got.stderr.lower()


async def test_apply_an_invalid_graph_exits_1_and_prints_its_errors(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    body = {
        "name": "ghost",
        "nodes": [{"node_name": "NoSuchNode", "namespace": ns, "identifier": "g", "inputs": {"x": "1"}}],
    }
    path = write(tmp_path, "ghost.json", json.dumps(body))

    as_json = await cli("graph", "apply", str(path), "-o", "json")
    as_table = await cli("graph", "apply", str(path))

    assert as_json.code == 1, as_json
    graph = as_json.json()
    assert graph["validation_status"] == "INVALID"
    assert any("NoSuchNode" in error for error in graph["validation_errors"])
    assert "graph ghost is INVALID" in as_json.stderr and "NoSuchNode" in as_json.stderr
    assert as_table.code == 1
    assert "INVALID" in as_table.stdout and "NoSuchNode" in as_table.stderr


async def test_apply_a_graph_the_server_refuses_exits_1_with_its_message(
    cli: Cli, ns: str, tmp_path: Path
) -> None:
    looped = f"""
name: loop
nodes:
  - {{node_name: Upper, namespace: {ns}, identifier: a, inputs: {{text: x}}, next_nodes: [b]}}
  - {{node_name: Upper, namespace: {ns}, identifier: b, inputs: {{text: x}}, next_nodes: [a]}}
"""
    result = await cli("graph", "apply", str(write(tmp_path, "loop.yaml", looped)))

    assert result.code == 1, result
    assert "(400 PUT" in result.stderr
    assert result.stdout == ""


async def test_apply_reads_stdin_and_refuses_a_file_without_a_name(
    cli: Cli, worker: Runtime, ns: str
) -> None:
    body = f"nodes: [{{node_name: Upper, namespace: {ns}, identifier: u, inputs: {{text: x}}}}]\n"

    nameless = await cli("graph", "apply", "-", stdin=body)
    named = await cli("graph", "apply", "-", stdin=f"name: piped\n{body}")

    assert nameless.code == 2 and "has no `name`" in nameless.stderr
    assert named.code == 0, named
    assert "VALID" in named.stdout


def _upper_graph(ns: str, name: str, node: str = "Upper") -> str:
    return f"""
name: {name}
nodes:
  - {{node_name: {node}, namespace: {ns}, identifier: up, inputs: {{text: hi}}}}
"""


async def test_a_typo_keeps_the_live_graph_and_a_dry_run_stores_nothing(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    good = write(tmp_path, "good.yaml", _upper_graph(ns, "shout"))
    typo = write(tmp_path, "typo.yaml", _upper_graph(ns, "shout", node="Uper"))
    fresh = write(tmp_path, "fresh.yaml", _upper_graph(ns, "never-stored"))
    assert (await cli("graph", "apply", str(good))).code == 0

    dry_bad = await cli("graph", "apply", "--dry-run", str(typo), "-o", "json")
    dry_good = await cli("graph", "apply", "--dry-run", str(fresh))
    applied = await cli("graph", "apply", str(typo))
    got = await cli("graph", "get", "shout")
    run = await cli("run", "trigger", "shout", "--watch", "-o", "json")
    missing = await cli("graph", "get", "never-stored")

    assert dry_bad.code == 1 and dry_bad.json()["stored"] is False, dry_bad
    assert dry_good.code == 0 and "dry run: nothing stored" in dry_good.stdout, dry_good
    assert missing.code == 1
    assert applied.code == 1 and "previous valid version stays live" in applied.stderr, applied
    assert "waiting upsert" in got.stdout and "Upper" not in applied.stderr
    assert run.code == 0 and run.json()["status"] == "SUCCESS", run


async def test_delete_refuses_a_graph_with_open_runs_unless_forced(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    assert (await cli("graph", "apply", str(write(tmp_path, "g.yaml", _upper_graph(ns, "idle"))))).code == 0
    assert (await cli("run", "trigger", "idle", "--start-delay", "1h")).code == 0  # stays open

    refused = await cli("graph", "delete", "idle")
    forced = await cli("graph", "delete", "idle", "--force")
    gone = await cli("graph", "get", "idle")

    assert refused.code == 1 and "force" in refused.stderr, refused
    assert forced.code == 0 and "1 open run(s) cancelled" in forced.stdout, forced
    assert gone.code == 1
