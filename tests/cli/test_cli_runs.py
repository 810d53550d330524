"""`exosphere run ...`, `state ...`, `nodes`, `queues` against a real server and runtime."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from exospherehost import Runtime
from tests.cli.conftest import Cli, write
from tests.e2e.nodes import Upper
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

WATCH = ("--watch", "--interval", "0.2")


def _chain(ns: str, name: str, node: str, *, text: str = "hi", retries: int = 0) -> str:
    return f"""
name: {name}
nodes:
  - node_name: {node}
    namespace: {ns}
    identifier: first
    inputs: {{text: "{text}"}}
    next_nodes: [second]
  - node_name: Upper
    namespace: {ns}
    identifier: second
    inputs: {{text: "${{{{ first.outputs.text }}}}-${{{{ store.suffix }}}}"}}
store_config:
  required_keys: [suffix]
retry_policy:
  max_retries: {retries}
"""


async def _apply(cli: Cli, tmp_path: Path, text: str) -> None:
    result = await cli("graph", "apply", str(write(tmp_path, f"{uuid.uuid4().hex}.yaml", text)))
    assert result.code == 0, result


async def test_trigger_watch_exits_0_for_a_successful_run(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _apply(cli, tmp_path, _chain(ns, "good", "Upper"))
    inputs = write(tmp_path, "inputs.yaml", "text: from-file\nother: 1\n")

    result = await cli(
        "run",
        "trigger",
        "good",
        "--inputs-file",
        str(inputs),
        "-i",
        "text=abc",
        "-s",
        "suffix=z",
        *WATCH,
        "-o",
        "json",
    )
    states = await cli("run", "states", result.json()["run_id"], "-o", "json")

    assert result.code == 0, result
    summary = result.json()
    assert summary["status"] == "SUCCESS"
    assert summary["store"] == {"suffix": "z"}
    assert [(n["identifier"], n["status"]) for n in summary["nodes"]] == [
        ("first", "SUCCESS"),
        ("second", "SUCCESS"),
    ]
    assert summary["failed_states"] == []
    assert "triggered run" in result.stderr and "second: SUCCESS" in result.stderr  # progress on stderr
    # -i wins over the file; the store reached the second node.
    assert [s["outputs"] for s in states.json()] == [{"text": "ABC"}, {"text": "ABC-Z"}]


async def test_trigger_watch_exits_1_for_a_failing_run(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _apply(cli, tmp_path, _chain(ns, "bad", "Boom", text="oops"))

    as_json = await cli("run", "trigger", "bad", "-s", "suffix=z", *WATCH, "-o", "json")
    as_table = await cli("run", "trigger", "bad", "-s", "suffix=z", *WATCH)

    assert as_json.code == 1, as_json
    summary = as_json.json()
    assert summary["status"] == "FAILED"
    [failed] = summary["failed_states"]
    assert (failed["identifier"], failed["status"]) == ("first", "ERRORED")
    assert "cannot handle oops" in failed["error"]
    assert f"run {summary['run_id']} FAILED" in as_json.stderr
    assert as_table.code == 1
    assert "cannot handle oops" in as_table.stdout
    assert "\x1b[" not in as_table.stdout + as_table.stderr  # no colour when not a terminal


async def test_trigger_with_an_idempotency_key_starts_one_run(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _apply(cli, tmp_path, _chain(ns, "once", "Upper"))
    key = uuid.uuid4().hex

    first = await cli("run", "trigger", "once", "-s", "suffix=1", "--idempotency-key", key, "-o", "json")
    again = await cli("run", "trigger", "once", "-s", "suffix=1", "--idempotency-key", key, "-o", "json")
    other = await cli("run", "trigger", "once", "-s", "suffix=2", "--idempotency-key", key, "-o", "json")

    assert first.code == 0 and again.code == 0, (first, again)
    assert first.json()["run_id"] == again.json()["run_id"]
    assert first.json()["status"] == "CREATED"
    assert other.code == 1 and other.stdout == ""  # same key, other arguments: refused (4xx)


async def test_trigger_with_a_priority_sends_it_in_seconds(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _apply(cli, tmp_path, _chain(ns, "urgent", "Upper"))

    triggered = await cli("run", "trigger", "urgent", "-s", "suffix=1", "--priority", "5m", "-o", "json")
    shown = await cli("run", "get", triggered.json()["run_id"], "-o", "json")

    assert triggered.code == 0 and shown.code == 0, (triggered, shown)
    assert shown.json()["priority"] == 300


async def test_run_list_is_a_json_array_with_filters(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _apply(cli, tmp_path, _chain(ns, "good", "Upper"))
    await _apply(cli, tmp_path, _chain(ns, "bad", "Boom"))
    ok = (await cli("run", "trigger", "good", "-s", "suffix=z", *WATCH, "-o", "json")).json()["run_id"]
    failed = (await cli("run", "trigger", "bad", "-s", "suffix=z", *WATCH, "-o", "json")).json()["run_id"]

    everything = await cli("run", "list", "-o", "json", "--since", "1h30m")
    only_failed = await cli("run", "list", "-o", "json", "--status", "failed")
    only_good = await cli("run", "list", "-o", "json", "--graph", "good")
    newest = await cli("run", "list", "-o", "json", "--limit", "1")
    table = await cli("run", "list")

    assert [r["run_id"] for r in everything.json()] == [failed, ok]  # newest first
    assert [r["run_id"] for r in only_failed.json()] == [failed]
    assert [(r["run_id"], r["status"]) for r in only_good.json()] == [(ok, "SUCCESS")]
    assert [r["run_id"] for r in newest.json()] == [failed]
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["RUN", "GRAPH", "STATUS", "CREATED", "DURATION", "STATES"]
    assert [row.split()[:3] for row in rows] == [[failed, "bad", "FAILED"], [ok, "good", "SUCCESS"]]


async def test_start_delay_takes_a_duration_with_units_or_bare_milliseconds(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _apply(cli, tmp_path, _chain(ns, "later", "Upper"))
    delays: dict[str, int] = {}

    for given in ("1m30s", "60s", "250ms", "45000"):
        triggered = await cli(
            "run", "trigger", "later", "-s", "suffix=z", "--start-delay", given, "-o", "json"
        )
        assert triggered.code == 0, triggered
        run_id = triggered.json()["run_id"]
        run = (await cli("run", "get", run_id, "-o", "json")).json()
        [state] = (await cli("run", "states", run_id, "--node", "first", "-o", "json")).json()
        delays[given] = state["enqueue_after"] - run["created_ms"]

    assert delays == {"1m30s": 90_000, "60s": 60_000, "250ms": 250, "45000": 45_000}


async def test_cancel_a_delayed_run(cli: Cli, worker: Runtime, ns: str, tmp_path: Path) -> None:
    await _apply(cli, tmp_path, _chain(ns, "later", "Upper"))
    run_id = (
        await cli("run", "trigger", "later", "-s", "suffix=z", "--start-delay", "60000", "-o", "json")
    ).json()["run_id"]

    before = await cli("run", "get", run_id, "-o", "json")
    cancelled = await cli("run", "cancel", run_id, "-o", "json")
    watched = await cli("run", "watch", run_id, "-o", "json")

    assert before.json()["status"] == "PENDING"
    assert cancelled.code == 0, cancelled
    assert cancelled.json() == {"run_id": run_id, "status": "CANCELLED", "cancelled_count": 1}
    assert watched.code == 1  # a watched run that ends CANCELLED
    assert watched.json()["status"] == "CANCELLED"


async def test_watch_gives_up_at_its_timeout_with_exit_1(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _apply(cli, tmp_path, _chain(ns, "slowstart", "Upper"))
    args = ("run", "trigger", "slowstart", "-s", "suffix=z", "--start-delay", "60000", "-o", "json")
    run_id = (await cli(*args)).json()["run_id"]

    result = await cli("run", "watch", run_id, "--interval", "200ms", "--timeout", "1", "-o", "json")

    assert result.code == 1, result
    assert result.json()["status"] == "PENDING"
    assert f"run {run_id} is still PENDING" in result.stderr


async def test_cancel_a_finished_run_exits_1(cli: Cli, worker: Runtime, ns: str, tmp_path: Path) -> None:
    await _apply(cli, tmp_path, _chain(ns, "quick", "Upper"))
    run_id = (await cli("run", "trigger", "quick", "-s", "suffix=z", *WATCH, "-o", "json")).json()["run_id"]

    result = await cli("run", "cancel", run_id)

    assert result.code == 1, result
    assert "SUCCESS" in result.stderr and "409" in result.stderr


async def test_retry_a_failed_run_until_it_succeeds(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    # Flaky fails the first attempt for an input and succeeds afterwards; no automatic retries.
    await _apply(cli, tmp_path, _chain(ns, "flaky", "Flaky", text=f"t-{uuid.uuid4().hex}"))
    failed = await cli("run", "trigger", "flaky", "-s", "suffix=z", *WATCH, "-o", "json")
    run_id = failed.json()["run_id"]

    retried = await cli("run", "retry", run_id, *WATCH, "-o", "json")
    nothing_left = await cli("run", "retry", run_id, "-o", "json")

    assert failed.code == 1 and failed.json()["status"] == "FAILED"
    assert retried.code == 0, retried
    assert retried.json()["status"] == "SUCCESS"
    assert [n["status"] for n in retried.json()["nodes"]] == ["SUCCESS", "SUCCESS"]
    assert nothing_left.code == 0
    assert nothing_left.json()["retried"] == 0 and "no failed state to retry" in nothing_left.stderr


async def test_retry_repairs_a_map_reduce_to_the_result_of_a_clean_run(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    # Every branch fails its first attempt (Flaky), so the ALL_SUCCESS join cannot run: the run
    # fails. `run retry` retries the branches, and the join is made again from their results.
    tag = uuid.uuid4().hex
    graph = f"""
name: mapreduce
nodes:
  - {{node_name: Upper, namespace: {ns}, identifier: root, inputs: {{text: go}}, next_nodes: [split]}}
  - {{node_name: Split, namespace: {ns}, identifier: split, inputs: {{count: "3"}}, next_nodes: [branch]}}
  - node_name: Flaky
    namespace: {ns}
    identifier: branch
    inputs: {{text: "${{{{ split.outputs.item }}}}-{tag}"}}
  - node_name: Upper
    namespace: {ns}
    identifier: total
    inputs: {{text: "${{{{ branch.outputs.text[*] }}}}"}}
    unites: {{identifier: root}}
retry_policy:
  max_retries: 0
"""
    await _apply(cli, tmp_path, graph)
    failed = await cli("run", "trigger", "mapreduce", *WATCH, "-o", "json")
    run_id = failed.json()["run_id"]

    retried = await cli("run", "retry", run_id, *WATCH, "-o", "json")
    joins = (await cli("run", "states", run_id, "--node", "total", "-o", "json")).json()

    assert failed.code == 1 and failed.json()["status"] == "FAILED", failed
    assert retried.code == 0 and retried.json()["status"] == "SUCCESS", retried
    made = [s for s in joins if s["status"] == "SUCCESS"]
    assert [s["status"] for s in joins if s not in made] == ["RETRY_CREATED"]  # the one made before
    assert made[0]["outputs"]["text"] == '["OK AFTER 2", "OK AFTER 2", "OK AFTER 2"]'


async def test_state_get_and_state_retry(cli: Cli, worker: Runtime, ns: str, tmp_path: Path) -> None:
    await _apply(cli, tmp_path, _chain(ns, "bad", "Boom", text="nope"))
    summary = (await cli("run", "trigger", "bad", "-s", "suffix=z", *WATCH, "-o", "json")).json()
    state_id = summary["failed_states"][0]["id"]

    shown = await cli("state", "get", state_id, "-o", "json")
    shown_table = await cli("state", "get", state_id)
    retried = await cli("state", "retry", state_id, "-o", "json")
    watched = await cli("run", "watch", summary["run_id"], "--interval", "0.2", "-o", "json")
    listed = await cli("run", "states", summary["run_id"], "--node", "first", "-o", "json")

    state = shown.json()
    assert (state["id"], state["status"], state["inputs"]) == (state_id, "ERRORED", {"text": "nope"})
    assert "cannot handle nope" in state["error"]
    assert "cannot handle nope" in shown_table.stdout
    # The whole error, as our SDK's runtime sent it: its type and the node's traceback.
    assert state["error_details"]["type"] == "builtins.ValueError"
    assert "type: builtins.ValueError" in shown_table.stdout
    assert "Traceback (most recent call last)" in shown_table.stdout and "nodes.py" in shown_table.stdout
    assert retried.code == 0, retried
    new = retried.json()
    assert new["retry_of"] == state_id and new["status"] == "CREATED" and new["id"] != state_id
    assert watched.code == 1  # Boom fails again
    assert new["id"] in [s["id"] for s in listed.json()]


async def test_nodes_and_queues_are_json_arrays(cli: Cli, worker: Runtime) -> None:
    nodes = await cli("nodes", "-o", "json")
    queues = await cli("queues", "-o", "json")
    table = await cli("queues")

    assert nodes.code == 0 and queues.code == 0, (nodes, queues)
    assert sorted(n["name"] for n in nodes.json()) == ["Boom", "Flaky", "Sign", "Slow", "Split", "Upper"]
    rows = {row["node_name"]: row for row in queues.json()}
    assert set(rows) == {"Boom", "Flaky", "Sign", "Slow", "Split", "Upper"}
    assert rows["Upper"]["registered"] is True and rows["Upper"]["stalled"] is False
    assert table.stdout.splitlines()[0].split()[:3] == ["NODE", "REGISTERED", "DUE"]


async def test_queues_warn_about_work_no_runtime_asks_for(
    live_server_factory: Callable[..., LiveServer], ns: str, tmp_path: Path
) -> None:
    server = live_server_factory(QUEUE_STALL_SECONDS=0.5)
    env = {"EXOSPHERE_STATE_MANAGER_URI": server.base_url, "EXOSPHERE_API_KEY": server.api_key}
    cli = Cli(env={**env, "EXOSPHERE_NAMESPACE": ns})
    async with Runtime(ns, "gone", [Upper], state_manager_uri=server.base_url, key=server.api_key):
        await _apply(cli, tmp_path, _chain(ns, "orphan", "Upper"))
    # The only runtime has stopped: the run's first state is due and nobody asks for it.
    triggered = await cli("run", "trigger", "orphan", "-s", "suffix=1")
    await asyncio.sleep(1.5)

    queues = await cli("queues", "-o", "json")
    table = await cli("queues")

    assert triggered.code == 0, triggered
    assert queues.code == 1, queues  # a stalled node fails the command (for a health check)
    [row] = queues.json()
    assert (row["node_name"], row["due"], row["stalled"]) == ("Upper", 1, True)
    assert "error: stalled" in queues.stderr and "Upper" in queues.stderr
    assert table.code == 1, table
    assert table.stdout.splitlines()[1].split()[0] == "Upper" and "STALLED" in table.stdout


async def test_watch_notices_the_end_promptly_and_prints_the_result(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    await _apply(cli, tmp_path, _chain(ns, "prompt", "Upper"))
    args = ("run", "trigger", "prompt", "-i", "text=ab", "-s", "suffix=z", "--start-delay", "300ms")
    run_id = (await cli(*args, "-o", "json")).json()["run_id"]

    # The run ends about half a second from now. Reads every 5 s (the old way) would see it
    # only after 5 s; reads that start fast see it within a fraction of a second.
    started = time.monotonic()
    watched = await cli("run", "watch", run_id, "--interval", "5s", "-o", "json")
    elapsed = time.monotonic() - started
    table = await cli("run", "watch", run_id)
    shown = await cli("run", "get", run_id, "-o", "json")

    assert watched.code == 0, watched
    assert elapsed < 4.0, watched
    summary = watched.json()
    assert summary["status"] == "SUCCESS"
    [last] = summary["result"]  # the output of the last node, not of the first
    assert (last["identifier"], last["outputs"]) == ("second", {"text": "AB-Z"})
    assert shown.json()["result"] == summary["result"]
    assert table.code == 0, table
    header, row = _section(table.stdout, "RESULT NODE")
    assert header.split() == ["RESULT", "NODE", "STATE", "OUTPUTS"]
    assert row.split() == ["second", last["id"], '{"text":', '"AB-Z"}']


async def test_the_result_of_a_fan_out_is_every_branch_that_ended(
    cli: Cli, worker: Runtime, ns: str, tmp_path: Path
) -> None:
    graph = f"""
name: fan
nodes:
  - {{node_name: Split, namespace: {ns}, identifier: split, inputs: {{count: "3"}}, next_nodes: [branch]}}
  - node_name: Upper
    namespace: {ns}
    identifier: branch
    inputs: {{text: "${{{{ split.outputs.item }}}}"}}
"""
    await _apply(cli, tmp_path, graph)

    result = await cli("run", "trigger", "fan", *WATCH, "-o", "json")

    assert result.code == 0, result
    outputs = sorted(item["outputs"]["text"] for item in result.json()["result"])
    assert outputs == ["ITEM-0", "ITEM-1", "ITEM-2"]
    assert {item["identifier"] for item in result.json()["result"]} == {"branch"}


def _section(stdout: str, header: str) -> list[str]:
    """The lines of the plain table that starts with `header`, up to the next blank line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]
