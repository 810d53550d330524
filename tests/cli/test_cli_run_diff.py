"""`exosphere run diff A B` against a real server and runtime: the table of what differs and a
summary line, or one JSON document; exit 0 when the runs are the same, 1 when they differ, 2 when
they cannot be compared."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from exospherehost import Runtime
from tests.cli.conftest import Cli, write

pytestmark = pytest.mark.e2e

WATCH = ("--watch", "--interval", "0.2")


def _chain(ns: str, name: str) -> str:
    """first (Upper) -> second (Upper of first's output): a root input changes both."""
    return f"""
name: {name}
nodes:
  - node_name: Upper
    namespace: {ns}
    identifier: first
    inputs: {{text: "hello"}}
    next_nodes: [second]
  - node_name: Upper
    namespace: {ns}
    identifier: second
    inputs: {{text: "${{{{ first.outputs.text }}}} again"}}
"""


async def _graph(cli: Cli, tmp_path: Path, ns: str, name: str) -> None:
    result = await cli("graph", "apply", str(write(tmp_path, f"{uuid.uuid4().hex}.yaml", _chain(ns, name))))
    assert result.code == 0, result


async def _run(cli: Cli, graph: str, text: str) -> str:
    result = await cli("run", "trigger", graph, "-i", f"text={text}", *WATCH, "-o", "json")
    assert result.code == 0, result
    run_id: str = result.json()["run_id"]
    return run_id


async def test_two_runs_that_did_the_same_exit_0_with_a_summary(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, ns, "g")
    a, b = await _run(cli, "g", "abc"), await _run(cli, "g", "abc")

    table = await cli("run", "diff", a, b)
    as_json = await cli("run", "diff", a, b, "-o", "json")

    assert table.code == 0, table
    assert table.stdout.splitlines() == [f"{a} vs {b} (g): 0 changed, 0 only in a, 0 only in b, 2 same"]
    assert as_json.code == 0, as_json
    document = as_json.json()
    assert document["summary"] == {"same": 2, "changed": 0, "only_a": 0, "only_b": 0}
    assert [(n["identifier"], n["change"]) for n in document["nodes"]] == [
        ("first", "same"),
        ("second", "same"),
    ]


async def test_runs_that_differ_exit_1_listing_each_differing_field_with_both_values(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, ns, "g")
    a, b = await _run(cli, "g", "abc"), await _run(cli, "g", "xyz" * 20)

    table = await cli("run", "diff", a, b)
    as_json = await cli("run", "diff", a, b, "-o", "json")

    assert table.code == 1, table
    header, *rows, blank, summary = table.stdout.splitlines()
    assert header.split() == ["NODE", "POSITION", "CHANGE", "FIELD", "A", "B"]
    long = ("XYZ" * 20)[:39] + "…"  # a long value is cut
    assert [row.split() for row in rows] == [
        ["first", "[0]", "changed", "inputs.text", "abc", ("xyz" * 20)[:39] + "…"],
        ["outputs.text", "ABC", long],
        ["second", "[0,0]", "changed", "inputs.text", "ABC", "again", long],
        ["outputs.text", "ABC", "AGAIN", long],
    ]
    assert blank == ""
    assert summary == f"{a} vs {b} (g): 2 changed, 0 only in a, 0 only in b, 0 same"
    assert table.stderr == ""
    assert as_json.code == 1, as_json
    first = as_json.json()["nodes"][0]
    assert first["fields"][0] == {"path": "inputs.text", "a": "abc", "b": "xyz" * 20}  # in full
    assert first["a"]["outputs"] == {"text": "ABC"} and first["position"] == [0]


async def test_a_run_that_failed_early_shows_what_only_the_other_run_did(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    # The same graph, first with a first node that fails, then as it should be.
    failing = _chain(ns, "g").replace("- node_name: Upper", "- node_name: Boom", 1)
    path = write(tmp_path, "failing.yaml", failing + "retry_policy:\n  max_retries: 0\n")
    assert (await cli("graph", "apply", str(path))).code == 0
    failed = (await cli("run", "trigger", "g", *WATCH, "-o", "json")).json()["run_id"]
    await _graph(cli, tmp_path, ns, "g")
    done = await _run(cli, "g", "hello")

    table = await cli("run", "diff", failed, done)

    assert table.code == 1, table
    rows = [row.split() for row in table.stdout.splitlines()[1:-2]]
    assert rows[0][:6] == ["first", "[0]", "changed", "status", "ERRORED", "SUCCESS"]
    assert ["second", "[0,0]", "only_b", "status", "-", "SUCCESS"] in rows
    assert table.stdout.splitlines()[-1].endswith("1 changed, 0 only in a, 1 only in b, 0 same")


async def test_an_unknown_run_and_runs_of_two_graphs_exit_2_with_the_reason(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, ns, "one")
    await _graph(cli, tmp_path, ns, "two")
    a, b = await _run(cli, "one", "abc"), await _run(cli, "two", "abc")

    unknown = await cli("run", "diff", a, "nope")
    two_graphs = await cli("run", "diff", a, b, "-o", "json")

    assert unknown.code == 2, unknown
    assert unknown.stdout == ""
    assert f"error: Run nope not found in namespace {ns}" in unknown.stderr
    assert two_graphs.code == 2, two_graphs
    assert two_graphs.stdout == ""
    assert (
        "one" in two_graphs.stderr and "two" in two_graphs.stderr and "different graphs" in two_graphs.stderr
    )
