"""`exosphere state why ID` and `exosphere run why RUN` against a real server: the reason in a
sentence, when it should start and what holds it; a table by node and reason for a run, or
"nothing waits"; one JSON document with `-o json`; exit 1 for an unknown state or run.

A runtime is played by hand over HTTP: it claims node Alpha's states and holds them (never
reports them), so a concurrency limit of 1 keeps the next run's state waiting."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exospherehost.cli.why import start_text
from tests.cli.conftest import Cli, write
from tests.factories import node
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.e2e

STARTS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(in (\d+) s\)$")


@pytest.fixture
async def by_hand(server: LiveServer, ns: str) -> AsyncIterator[httpx.AsyncClient]:
    """Node Alpha registered by a runtime played over HTTP (see the module docstring)."""
    async with httpx.AsyncClient(
        base_url=f"{server.base_url}/v0/namespace/{ns}", headers=server.headers
    ) as http:
        assert (
            await http.put("/nodes/", json={"runtime_name": "by-hand", "nodes": [node("Alpha")]})
        ).is_success
        yield http


async def _claim(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await http.post("/states/enqueue", json={"nodes": ["Alpha"], "batch_size": 10})
    assert answer.is_success, answer.text
    states: list[dict[str, Any]] = answer.json()["states"]
    return states


async def _graph(cli: Cli, tmp_path: Path, ns: str, **limits: Any) -> None:
    alpha = {"node_name": "Alpha", "namespace": ns, "identifier": "a", "inputs": {"x": "go"}, **limits}
    path = write(tmp_path, f"{uuid.uuid4().hex}.json", json.dumps({"name": "g", "nodes": [alpha]}))
    result = await cli("graph", "apply", str(path))
    assert result.code == 0, result


async def _trigger(cli: Cli, *options: str) -> tuple[str, str]:
    """A run of g: its id and its one state's id."""
    result = await cli("run", "trigger", "g", *options, "-o", "json")
    assert result.code == 0, result
    run_id: str = result.json()["run_id"]
    states = await cli("run", "states", run_id, "-o", "json")
    [state] = states.json()
    return run_id, str(state["id"])


def _fields(stdout: str) -> dict[str, str]:
    """The `label  value` lines under the sentence, as a dict."""
    sentence, blank, *lines = stdout.splitlines()
    assert sentence and blank == "", stdout
    return dict(line.split(maxsplit=1) for line in lines)


async def test_state_why_names_the_reason_and_the_state_holding_the_slot(
    cli: Cli, by_hand: httpx.AsyncClient, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, ns, concurrency={"limit": 1})
    first, _ = await _trigger(cli)
    _, waiting = await _trigger(cli)
    [held] = await _claim(by_hand)

    table = await cli("state", "why", waiting)
    as_json = await cli("state", "why", waiting, "-o", "json")

    assert held["run_id"] == first
    assert table.code == 0, table
    assert table.stdout.startswith("Node Alpha runs at most 1 at once; 1 of 1 are held")
    fields = _fields(table.stdout)
    assert fields == {
        "state": waiting,
        "status": "CREATED",
        "waiting": "yes",
        "reason": "concurrency",
        "starts": fields["starts"],
        "blockers": held["state_id"],
    }
    assert fields["starts"] == "unknown" or STARTS.match(fields["starts"]), fields
    assert as_json.code == 0, as_json
    document = as_json.json()
    assert (document["state_id"], document["reason"], document["blockers"]) == (
        waiting,
        "concurrency",
        [held["state_id"]],
    )
    assert document["detail"] == table.stdout.splitlines()[0]


async def test_state_why_of_a_delayed_state_says_when_it_starts(
    cli: Cli, by_hand: httpx.AsyncClient, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, ns)
    _, delayed = await _trigger(cli, "--start-delay", "60s")

    table = await cli("state", "why", delayed)

    assert table.code == 0, table
    fields = _fields(table.stdout)
    assert (fields["reason"], fields["blockers"]) == ("delayed", "-")
    starts = STARTS.match(fields["starts"])
    assert starts and 55 <= int(starts.group(1)) <= 60, fields


async def test_state_why_of_a_running_state_says_it_does_not_wait(
    cli: Cli, by_hand: httpx.AsyncClient, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, ns)
    await _trigger(cli)
    [held] = await _claim(by_hand)

    table = await cli("state", "why", held["state_id"])

    assert table.code == 0, table
    assert table.stdout.splitlines()[0] == "A runtime is running it."
    fields = _fields(table.stdout)
    assert (fields["waiting"], fields["reason"], fields["starts"], fields["blockers"]) == (
        "no",
        "-",
        "-",
        "-",
    )


async def test_run_why_lists_what_waits_by_node_and_reason(
    cli: Cli, by_hand: httpx.AsyncClient, ns: str, tmp_path: Path
) -> None:
    await _graph(cli, tmp_path, ns, rate_limit={"per_second": 0.1})  # one claim every ten seconds
    first, _ = await _trigger(cli)
    second, _ = await _trigger(cli)
    [held] = await _claim(by_hand)

    table = await cli("run", "why", second)
    as_json = await cli("run", "why", second, "-o", "json")
    holder = await cli("run", "why", first)

    assert held["run_id"] == first
    assert table.code == 0, table
    header, row = table.stdout.splitlines()
    assert header.split() == ["NODE", "REASON", "COUNT", "STARTS", "DETAIL"]
    node_name, reason, count, day, clock, in_, seconds, s, *detail = row.split()
    assert (node_name, reason, count) == ("Alpha", "rate_limit", "1")
    assert STARTS.match(f"{day} {clock} {in_} {seconds} {s}") and 8 <= int(seconds) <= 10, row
    assert " ".join(detail).startswith("Node Alpha is claimed at most 0.1 per second")
    assert as_json.code == 0, as_json
    document = as_json.json()
    assert (document["run_id"], document["waiting"]) == (second, 1)
    assert [(g["node"], g["namespace"], g["reason"], g["count"]) for g in document["groups"]] == [
        ("Alpha", ns, "rate_limit", 1)
    ]
    assert (holder.code, holder.stdout) == (0, "nothing waits\n")


async def test_an_unknown_state_or_run_exits_1_with_the_servers_message(
    cli: Cli, by_hand: httpx.AsyncClient, ns: str
) -> None:
    unknown_state = await cli("state", "why", "000000000000000000000000")
    not_an_id = await cli("state", "why", "nope")
    unknown_run = await cli("run", "why", "nope", "-o", "json")

    for result in (unknown_state, not_an_id, unknown_run):
        assert (result.code, result.stdout) == (1, ""), result
        assert result.stderr.startswith("error: "), result
    assert "Invalid state id 'nope'" in not_an_id.stderr
    assert f"Run nope not found in namespace {ns}" in unknown_run.stderr


def test_a_start_reads_as_a_local_time_and_how_far_off() -> None:
    now = 1_800_000_000_000

    assert start_text(None, now) == "unknown"
    assert STARTS.match(start_text(now + 12_300, now)) and start_text(now + 12_300, now).endswith("(in 13 s)")
    assert start_text(now - 5_000, now).endswith(" (now)")
