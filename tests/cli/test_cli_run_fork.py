"""`exosphere run fork RUN --from NODE` and `exosphere run fork-failed --graph G` against a real
server and runtime: the new run, what it was forked from and how many states it reused (or one
JSON document); `--watch` following the fork to its end and exiting like `run watch`; the bulk
fork's line per failed run and the runs it skipped; a bad `-i` as a usage error."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from exospherehost import Runtime
from tests.cli.conftest import Cli, Result, write

pytestmark = pytest.mark.e2e

WATCH = ("--watch", "--interval", "0.2")


def _chain(ns: str, name: str, second: str = "Upper", identifier: str = "second") -> str:
    """first (Upper) -> `identifier` (`second`: Upper, or Boom to fail) of first's output."""
    return f"""
name: {name}
nodes:
  - node_name: Upper
    namespace: {ns}
    identifier: first
    inputs: {{text: "hello"}}
    next_nodes: [{identifier}]
  - node_name: {second}
    namespace: {ns}
    identifier: {identifier}
    inputs: {{text: "${{{{ first.outputs.text }}}} again"}}
retry_policy:
  max_retries: 0
"""


async def _graph(cli: Cli, tmp_path: Path, text: str) -> None:
    result = await cli("graph", "apply", str(write(tmp_path, f"{uuid.uuid4().hex}.yaml", text)))
    assert result.code == 0, result


async def _run(cli: Cli, graph: str, code: int = 0) -> str:
    result = await cli("run", "trigger", graph, *WATCH, "-o", "json")
    assert result.code == code, result
    run_id: str = result.json()["run_id"]
    return run_id


def _fields(result: Result) -> dict[str, str]:
    """`label  value` lines (labels padded to one width) as a dict."""
    pairs = [line.split("  ", 1) for line in result.stdout.splitlines() if line and "  " in line]
    return {label.strip(): value.strip() for label, value in pairs}


async def test_a_fork_prints_the_new_run_its_origin_and_what_it_reused(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, _chain(ns, "g"))
    original = await _run(cli, "g")

    table = await cli("run", "fork", original, "--from", "second", "-i", "second.text=bye")
    as_json = await cli("run", "fork", original, "--from", "second", "-s", "tenant=acme", "-o", "json")

    assert table.code == 0, table
    new = table.stdout.splitlines()[0].split()[1]
    assert table.stdout.splitlines() == [
        f"run          {new}",
        f"forked from  {original}",
        "from         second",
        "reused       1 state",
        "status       PENDING",
    ]
    assert table.stderr == ""
    assert as_json.code == 0, as_json
    document = as_json.json()
    assert document == {
        "run_id": document["run_id"],
        "forked_from": {"run_id": original, "from": ["second"]},
        "reused": 1,
        "status": "PENDING",
    }
    assert document["run_id"] not in (original, new)
    fork = (await cli("run", "get", new, "-o", "json")).json()
    assert fork["forked_from"] == {"run_id": original, "from": ["second"]}


async def test_watch_follows_the_fork_to_its_end_with_the_new_input(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, _chain(ns, "g"))
    original = await _run(cli, "g")

    watched = await cli("run", "fork", original, "--from", "second", "-i", "second.text=bye", *WATCH)
    as_json = await cli("run", "fork", original, "--from", "first", *WATCH, "-o", "json")

    assert watched.code == 0, watched
    fields = _fields(watched)
    assert fields["status"] == "SUCCESS"
    assert fields["forked from"] == f"{original} (from second)"
    assert fields["states"] == "SUCCESS 2"
    assert watched.stdout.splitlines()[-1].split()[-2:] == ['{"text":', '"BYE"}']
    new = fields["run"]
    assert f"forked run {new} from {original} at second (1 state reused)" in watched.stderr
    assert f"run {new} (g): SUCCESS" in watched.stderr  # the watch's progress lines
    assert as_json.code == 0, as_json
    summary = as_json.json()
    assert summary["status"] == "SUCCESS"
    assert summary["forked_from"] == {"run_id": original, "from": ["first"]}
    assert [r["outputs"] for r in summary["result"]] == [{"text": "HELLO AGAIN"}]


async def test_watching_a_fork_that_fails_exits_1_with_its_status(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, _chain(ns, "g", second="Boom"))
    failed = await _run(cli, "g", code=1)

    watched = await cli("run", "fork", failed, "--from", "second", "-i", "second.text=again", *WATCH)

    assert watched.code == 1, watched
    fields = _fields(watched)
    assert fields["status"] == "FAILED"
    assert f"error: run {fields['run']} FAILED" in watched.stderr
    assert "cannot handle again" in watched.stdout  # the failed state's error


async def test_the_servers_refusal_exits_1_and_a_bad_input_is_a_usage_error(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, _chain(ns, "g"))
    original = await _run(cli, "g")

    nodots = await cli("run", "fork", original, "--from", "second", "-i", "nodots")
    noequals = await cli("run", "fork", original, "--from", "second", "-i", "second.text")
    bad_store = await cli("run", "fork", original, "--from", "second", "-s", "nope")
    refused = await cli("run", "fork", original, "--from", "second", "-i", "first.text=x")

    assert nodots.code == 2, nodots
    assert "Invalid value for -i/--input: expected NODE.FIELD=VALUE, got 'nodots'" in nodots.stderr
    assert nodots.stdout == ""
    assert noequals.code == 2 and "got 'second.text'" in noequals.stderr
    assert bad_store.code == 2 and "-s/--store: expected KEY=VALUE" in bad_store.stderr
    assert refused.code == 1, refused
    assert "inputs.first: node 'first' is not forked from" in refused.stderr
    assert refused.stdout == ""


async def test_fork_failed_prints_a_line_per_fork_and_the_skipped_runs(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, _chain(ns, "g", second="Boom"))
    failed = [await _run(cli, "g", code=1) for _ in range(2)]

    forked = await cli("run", "fork-failed", "--graph", "g", "--since", "1h")

    assert forked.code == 0, forked
    header, *rows, blank, summary = forked.stdout.splitlines()
    assert header.split() == ["FAILED", "RUN", "FORK", "FROM", "REUSED", "STATUS"]
    assert [row.split()[0] for row in rows] == failed  # oldest first
    assert [row.split()[2:] for row in rows] == [["second", "1", "PENDING"]] * 2
    assert (blank, summary) == ("", "g: 2 forked, 0 skipped")
    assert forked.stderr == ""
    for row in rows:  # the forks fail again, at the same node
        assert (await cli("run", "watch", row.split()[1], "--interval", "0.2")).code == 1

    # The current graph no longer has the node where they failed: each is skipped, with the reason.
    await _graph(cli, tmp_path, _chain(ns, "g", identifier="fixed"))
    skipped = await cli("run", "fork-failed", "--graph", "g", "--since", "1h", "--until", "0m")

    assert skipped.code == 0, skipped
    lines = skipped.stdout.splitlines()
    assert lines[0].split() == ["SKIPPED", "RUN", "REASON"]
    reason = "from: graph g has no node 'second' (it has first, fixed)"
    assert lines[1].split(maxsplit=1) == [failed[0], reason]
    assert lines[-1] == "g: 0 forked, 4 skipped"  # the two failed runs and their two failed forks


async def test_fork_failed_repeated_with_its_idempotency_key_forks_once(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, _chain(ns, "g", second="Boom"))
    failed = await _run(cli, "g", code=1)
    args = ("run", "fork-failed", "--graph", "g", "--since", "1h", "--idempotency-key", "k1", "-o", "json")

    first = await cli(*args)
    (fork,) = first.json()["forks"]
    assert (await cli("run", "watch", fork["run_id"], "--interval", "0.2")).code == 1  # a failed run now
    again = await cli(*args)  # a minute later "1h" is another window: the key still forks nothing twice

    assert first.code == 0 and again.code == 0, (first, again)
    assert [{**f, "status": "FAILED"} for f in first.json()["forks"]] == again.json()["forks"]
    assert fork["forked_from"] == {"run_id": failed, "from": ["second"]}
    assert first.json()["skipped"] == []
    assert first.stderr == ""
