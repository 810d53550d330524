"""A map-reduce whose branch failed, repaired from the dashboard in Chromium: Retry failed, the
node fixed, and the run ends with the result of a clean run, under both join strategies.

The test plays the runtimes itself over the API (`tests.support.map_reduce`), in a namespace
the suite's SDK runtime does not serve, so nothing but the test claims the map-reduce's work."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import log_in
from tests.factories import NAMESPACE, Api
from tests.support import map_reduce as mapreduce
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.browser

BROKEN = "2"  # the number Square fails on, until the node is fixed
PARTIAL_TOTAL = str(int(mapreduce.CLEAN_TOTAL) - int(BROKEN) ** 2)  # ALL_DONE's join without it


@pytest.fixture
async def api(dashboard_server: LiveServer) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(
        base_url=dashboard_server.base_url, headers=dashboard_server.headers, timeout=15
    ) as client:
        yield Api(client, NAMESPACE)


async def _sums(api: Api, run_id: str) -> list[tuple[str, str | None]]:
    """(status, total) of each state of the join, in the order the server lists them."""
    sums = (await api.by_identifier(run_id)).get("sum", [])
    return [(s["status"], s["outputs"].get("total")) for s in sums]


@pytest.mark.parametrize("strategy", ["ALL_SUCCESS", "ALL_DONE"])
async def test_a_failed_map_reduce_repaired_from_the_dashboard_gives_the_clean_result(
    page: Page, dashboard_server: LiveServer, api: Api, strategy: str
) -> None:
    name = f"mr-{strategy.lower().replace('_', '-')}"
    await api.setup(name, mapreduce.map_reduce(strategy), *mapreduce.NODES)
    run_id = (await api.trigger(name))["run_id"]
    await mapreduce.work(api, broken=BROKEN)

    # The broken branch failed the run; the join never ran (ALL_SUCCESS) or summed 3 of 4 values.
    assert (await api.call("GET", f"/run/{run_id}"))["status"] == "FAILED"
    if strategy == "ALL_SUCCESS":
        assert await _sums(api, run_id) == [("CANCELLED", None)]
    else:
        assert await _sums(api, run_id) == [("SUCCESS", PARTIAL_TOTAL)]

    run_page = f"/ui/ns/{NAMESPACE}/runs/{run_id}"
    await log_in(page, dashboard_server, run_page)
    await expect(page).to_have_url(re.compile(rf"{run_page}$"))
    await expect(page.locator("#run-status .badge")).to_have_text("FAILED")
    square = page.locator('svg.dag g[data-identifier="square"]')
    await expect(square).to_have_attribute("data-status", "FAILED")

    await page.click("a.btn:has-text('Retry failed (1)')")
    await expect(page.locator("h1")).to_have_text("Retry the failed states?")
    await page.click("button:has-text('Retry 1 failed state')")
    await expect(page).to_have_url(re.compile(rf"{run_page}\?msg=retried&n=1$"))
    await expect(page.locator(".notice")).to_have_text("Failed states were retried: 1 new attempt.")
    await expect(page.locator("#run-status .badge")).not_to_have_text("FAILED")
    await expect(page.locator("a.btn:has-text('Retry failed')")).to_have_count(0)

    await mapreduce.work(api, broken=None)  # the node is fixed: the retried branch and the join run

    await page.goto(run_page)
    await expect(page.locator("#run-status .badge")).to_have_text("SUCCESS")
    for identifier in ("start", "split", "square", "sum"):
        box = page.locator(f'svg.dag g[data-identifier="{identifier}"]')
        await expect(box).to_have_attribute("data-status", "SUCCESS")
    await page.screenshot(path=f"/tmp/repair-{strategy}.png", full_page=True)

    # What the join made, as a user finds it: the sum's states, the one that succeeded, its outputs.
    await page.locator('svg.dag g[data-identifier="sum"]').click()
    await expect(page).to_have_url(re.compile(r"tab=states&identifier=sum"))
    made = page.locator("table.states tr[data-status=SUCCESS]")
    await expect(made).to_have_count(1)
    await made.locator("a.mono").click()
    await expect(page.locator("h1")).to_contain_text("sum")
    await expect(page.locator("#state-status .badge")).to_have_text("SUCCESS")
    outputs = page.locator("section.card:has(h2:text-is('Outputs')) pre.json")
    await expect(outputs).to_contain_text(f'"total": "{mapreduce.CLEAN_TOTAL}"')
    await page.screenshot(path=f"/tmp/repair-{strategy}-sum.png", full_page=True)

    assert (await api.call("GET", f"/run/{run_id}"))["status"] == "SUCCESS"
    current = [total for status, total in await _sums(api, run_id) if status == "SUCCESS"]
    assert current == [mapreduce.CLEAN_TOTAL], await _sums(api, run_id)
    assert await mapreduce.result(api, run_id) == ("SUCCESS", [mapreduce.CLEAN_TOTAL])
