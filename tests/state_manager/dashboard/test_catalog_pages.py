"""The graphs, graph and nodes pages: validation, the template DAG, the nodes with their
placeholders, policies, secret names (never values), cron triggers, recent runs, registered
nodes and queue health with its stall warning."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import pytest

from state_manager.dashboard.render import ms_time
from state_manager.db.documents import CronSchedule
from tests.factories import (
    ALPHA,
    BETA,
    Api,
    Worker,
    chain,
    cron,
    fixed_retry,
    graph,
    node,
    template,
)
from tests.state_manager.dashboard.conftest import Ui, rows, svg_of, text_of


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"queue_stall_seconds": 0.2}


async def test_the_graphs_page_shows_each_graph_with_its_validation(api: Api, ui: Ui) -> None:
    await api.setup("good", chain(), ALPHA, BETA)
    await api.upsert("needs-gamma", graph(template("c", "Gamma", {"x": "1"})))

    page = await ui.page("/ui/ns/testns/graphs")

    assert rows(page, "data-graph") == ["good", "needs-gamma"]
    assert '<span class="badge v-VALID">VALID</span>' in page
    assert '<span class="badge v-INVALID">INVALID</span>' in page and "Gamma" in page


async def test_the_graph_page_shows_nodes_policies_secret_names_crons_and_recent_runs(
    api: Api, ui: Ui
) -> None:
    body = chain(
        secrets={"OPENAI_API_KEY": "sk-value-never-shown"},
        retry_policy=fixed_retry(2, 1500),
        store_config={"required_keys": ["topic"], "default_values": {"lang": "en"}},
        triggers=[cron("0 6 * * *")],
    )
    body["nodes"][0]["inputs"] = {"x": "${{ store.topic }}"}
    await api.setup("g", body, ALPHA, BETA)
    run_id = (await api.trigger("g", {"store": {"topic": "t"}}))["run_id"]
    schedule = await CronSchedule.find_one({"graph_name": "g"})
    assert schedule is not None

    page = await ui.page("/ui/ns/testns/graphs/g")
    text = html.unescape(text_of(page))

    assert '<span class="badge big v-VALID">VALID</span>' in page
    assert '<span class="ph">${{ a.outputs.y }}</span>' in html.unescape(page)  # placeholders marked
    assert "from a:" in text and "Beta in testns" in text
    assert "Max retries 2" in text and "FIXED" in text and "Backoff factor 1.5 s" in text
    assert "Required keys: topic" in text and "lang en" in text
    assert "OPENAI_API_KEY" in page and "sk-value-never-shown" not in page
    assert "0 6 * * *" in text and ms_time(schedule.next_fire_ms) in text
    assert rows(page, "data-run-id") == [run_id]
    svg = svg_of(page)
    assert re.findall(r'data-identifier="([^"]+)"', svg) == ["a", "b"] and "data-status" not in svg
    assert 'data-source="a" data-target="b"' in svg


async def test_an_unknown_graph_is_not_found(ui: Ui) -> None:
    response = await ui.get("/ui/ns/testns/graphs/nope", expect=404)
    assert "Graph nope not found in namespace testns" in response.text


async def test_the_nodes_page_lists_fields_secret_names_and_queue_health(api: Api, ui: Ui) -> None:
    await api.register(node("Alpha", inputs=("x",), outputs=("y", "mode"), secrets=("TOKEN",)), BETA)
    await api.setup("g", chain(secrets={"TOKEN": "t0ken-value"}))
    await api.trigger("g")
    await api.trigger("g")
    await Worker(api, "Alpha").claim_one()

    page = await ui.page("/ui/ns/testns/nodes")
    text = text_of(page)

    assert "data-poll=" in page  # queues are live
    assert rows(page, "data-node") == ["Alpha", "Beta"]
    alpha = re.search(r'<tr data-node="Alpha".*?</tr>', page, re.S)
    assert alpha and [int(n) for n in re.findall(r'<td class="num">(\d+)</td>', alpha.group(0))] == [1, 0, 1]
    assert "TOKEN" in text and "t0ken-value" not in page and "mode" in text and "test-runtime" in text
    assert 'id="stall-warning"' not in page


async def test_the_nodes_page_warns_when_waiting_work_has_no_runtime_asking_for_it(api: Api, ui: Ui) -> None:
    await api.setup("g", chain(), ALPHA, BETA)
    await api.trigger("g")
    await asyncio.sleep(0.3)  # over QUEUE_STALL_SECONDS, and nobody polled

    page = await ui.page("/ui/ns/testns/nodes")

    warning = re.search(r'<div class="warning" role="alert" id="stall-warning">(.*?)</div>', page, re.S)
    assert warning, "no stall warning"
    assert "Alpha" in warning.group(1) and "no runtime has ever asked for its work" in warning.group(1)
    assert 'data-node="Alpha" data-stalled="true"' in page and 'data-node="Beta" data-stalled="false"' in page

    await api.claim("Beta")  # a runtime for Beta only: Alpha stays stalled
    assert 'data-node="Alpha" data-stalled="true"' in await ui.page("/ui/ns/testns/nodes")
