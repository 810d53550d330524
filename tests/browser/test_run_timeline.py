"""A large run's timeline in Chromium: a fan-out of 200 branches (and its join) drawn one row per
node, in time order, each row leading to the node's states; and a run that does not move saying
why (a start delay, a node no runtime asks for). The screenshots are left in
.cache/browser-screenshots/ for a person to look at.

The test plays the runtimes itself over the API (`fan_out.play`), in namespaces the suite's SDK
runtime does not serve."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import log_in
from tests.factories import Api, graph, node, template
from tests.state_manager.dashboard import fan_out
from tests.support.live_server import REPO_ROOT, LiveServer

pytestmark = pytest.mark.browser

FAN_NS = "web-fan"
STUCK_NS = "web-stuck"
SHOTS = REPO_ROOT / ".cache" / "browser-screenshots"


@pytest.fixture
async def api(dashboard_server: LiveServer) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(
        base_url=dashboard_server.base_url, headers=dashboard_server.headers, timeout=15
    ) as client:
        yield Api(client, FAN_NS)


async def _shoot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_a_fan_out_of_200_is_drawn_one_row_per_node_and_a_row_leads_to_its_states(
    page: Page, dashboard_server: LiveServer, api: Api
) -> None:
    await api.setup("fan", fan_out.fan_graph(namespace=FAN_NS), *fan_out.NODES)
    run_id = (await api.trigger("fan"))["run_id"]
    await fan_out.play(api, branches=200, batch=25, pause=0.15, failing={"7", "141"})

    run_page = f"/ui/ns/{FAN_NS}/runs/{run_id}"
    await log_in(page, dashboard_server, f"{run_page}?tab=timeline")

    timeline = page.locator('svg.timeline[data-rows="node"]')
    await expect(timeline).to_be_visible()
    rows = timeline.locator("g.tl-node")
    await expect(rows).to_have_count(4)
    order = await rows.evaluate_all("gs => gs.map(g => g.dataset.identifier + ':' + g.dataset.count)")
    assert order == ["start:1", "split:200", "leaf:200", "report:1"]
    leaf = timeline.locator('g[data-identifier="leaf"]')
    await expect(leaf.locator("rect.spread")).to_have_count(1)
    await expect(leaf.locator("line.mark-median")).to_have_count(1)
    await expect(leaf.locator("line.mark-p95")).to_have_count(1)
    assert await timeline.get_attribute("data-unit") in {"ms", "s"}
    box = await leaf.locator("rect.spread").bounding_box()
    assert box and box["width"] > 100  # the spread over time of 200 branches, not a sliver
    await expect(page.locator("table.spans tr[data-identifier]")).to_have_count(4)
    await _shoot(page, "timeline-by-node-200")

    await leaf.click()  # drill down: the states list of that node
    await expect(page).to_have_url(re.compile(r"tab=states&identifier=leaf"))
    await expect(page.locator("table.states tr[data-state-id]")).to_have_count(50)
    shown = await page.locator("table.states tr[data-state-id] td:first-child a").all_inner_texts()
    assert len(set(shown)) == 50  # short ids that tell the states apart
    await _shoot(page, "states-of-leaf")

    await page.goto(f"{run_page}?tab=timeline&by=state")
    await expect(page.locator('svg.timeline[data-rows="state"] g.tl-row')).to_have_count(100)
    await _shoot(page, "timeline-by-attempt")


async def test_a_run_that_does_not_move_says_why(page: Page, dashboard_server: LiveServer, api: Api) -> None:
    await api.register(node("Lonely"), namespace=STUCK_NS)  # by a runtime that is gone
    body = graph(template("lonely", "Lonely", {"x": "go"}, namespace=STUCK_NS))
    await api.upsert("waits", body, namespace=STUCK_NS)
    stuck = (await api.call("POST", "/graph/waits/trigger", {}, namespace=STUCK_NS))["run_id"]
    later = (await api.call("POST", "/graph/waits/trigger", {"start_delay": 600_000}, namespace=STUCK_NS))[
        "run_id"
    ]

    await log_in(page, dashboard_server, f"/ui/ns/{STUCK_NS}/runs/{later}")
    await expect(page.locator("#run-starts")).to_contain_text(
        re.compile(r"starts at \d\d:\d\d:\d\d UTC, in (9|10) min")
    )
    await _shoot(page, "run-delayed-start")

    await page.goto(f"/ui/ns/{STUCK_NS}/runs/{stuck}")
    warning = page.locator("#run-stall-warning")
    await expect(warning).to_be_visible()  # after QUEUE_STALL_SECONDS (1 s), live
    await expect(warning).to_contain_text("Lonely")
    await expect(warning).to_contain_text("no runtime has ever asked for its work")
    await _shoot(page, "run-stalled-node")
