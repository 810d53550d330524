"""Flow control on the dashboard in Chromium (issue 18): a node that runs one state at a time, a
long state of the suite's runtime holding its slot, and the state of another run waiting for it.
The waiting state's page says why and links the holder; the run's page sums it up; the nodes page
lists the limit with its slot held and the state waiting; when the holder's run is cancelled,
the waiting state runs and its page drops the box by itself."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import NS, Rest, log_in
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.browser

GRAPH = "one-at-a-time"
HOLD_SECONDS = "30"  # the holder's pause: longer than the test, which cancels it at its end


def _one_at_a_time(rest: Rest) -> None:
    body = {
        "secrets": {},
        "nodes": [
            {
                "node_name": "Pause",
                "namespace": NS,
                "identifier": "slow",
                "inputs": {"seconds": "${{ store.seconds }}"},
                "next_nodes": [],
                "concurrency": {"limit": 1},
            }
        ],
        "store_config": {"default_values": {"seconds": "0.1"}},
        "retry_policy": {"max_retries": 0},
    }
    assert rest.call("PUT", f"/graph/{GRAPH}", body, expect=201)["validation_status"] == "VALID"


async def _only_state(rest: Rest, run_id: str, status: str) -> dict[str, Any]:
    """The run's one state, once it is in `status`."""
    deadline = time.monotonic() + 20
    while True:
        states = rest.call("GET", f"/run/{run_id}/states")["states"]
        if states and states[0]["status"] == status:
            return dict(states[0])
        assert time.monotonic() < deadline, f"run {run_id}: {states}"
        await asyncio.sleep(0.1)


async def _why(rest: Rest, state_id: str, reason: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while (answer := rest.call("GET", f"/state/{state_id}/why"))["reason"] != reason:
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.1)
    return dict(answer)


async def test_a_state_waiting_for_a_slot_says_why_links_the_holder_and_the_nodes_page_lists_the_limit(
    page: Page, dashboard_server: LiveServer, rest: Rest
) -> None:
    _one_at_a_time(rest)
    holder_run = rest.trigger(GRAPH, store={"seconds": HOLD_SECONDS})
    try:
        holder = await _only_state(rest, holder_run, "QUEUED")  # the runtime runs it
        waiting_run = rest.trigger(GRAPH)
        waiting = await _only_state(rest, waiting_run, "CREATED")
        await _why(rest, waiting["id"], "concurrency")  # the runtime asked for it: held back
        state_page = f"/ui/ns/{NS}/states/{waiting['id']}"
        holder_page = f"/ui/ns/{NS}/states/{holder['id']}"
        await log_in(page, dashboard_server, state_page)

        # The waiting state's page: one line on why, the holder linked.
        box = page.locator("#why")
        await expect(box).to_have_attribute("data-reason", "concurrency")
        await expect(box).to_contain_text(
            "Waiting: Node Pause runs at most 1 at once; 1 of 1 are held, so it waits for a slot "
            "(it is next in line)."
        )
        link = box.locator(f'a[href="{holder_page}"]')
        await expect(link).to_have_text(re.compile(rf"^{holder['id'][:4]}…{holder['id'][-6:]}$"))
        await page.screenshot(path="/tmp/flow-why.png", full_page=True)
        await link.click()
        await expect(page).to_have_url(re.compile(rf"{holder_page}$"))
        await expect(page.locator("#state-status .badge")).to_have_text("CLAIMED")
        await expect(page.locator("#why")).to_have_count(0)

        # The waiting run's page sums up its waiting states by node and reason.
        await page.goto(f"/ui/ns/{NS}/runs/{waiting_run}")
        group = page.locator('#why tr[data-reason="concurrency"]')
        await expect(group).to_contain_text("node's concurrency limit")
        await expect(group.locator(f'a[href="{holder_page}"]')).to_be_visible()

        # The nodes page: the limit, its one slot held, one state waiting for it.
        await page.goto(f"/ui/ns/{NS}/nodes")
        row = page.locator(f'#limits tr[data-graph="{GRAPH}"][data-kind="concurrency"]')
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text("slow")
        await expect(row.locator("td.setting")).to_have_text("1 at once")
        await expect(row.locator("td.held")).to_have_text("1/1")
        await expect(row.locator("td.parked")).to_have_text("1")
        await page.screenshot(path="/tmp/flow-limits.png", full_page=True)

        # The holder's run is cancelled: its slot frees, the waiting state runs, its page follows.
        await page.goto(state_page)
        await expect(page.locator("#why")).to_be_visible()
        rest.call("POST", f"/run/{holder_run}/cancel", {})
        await expect(page.locator("#state-status .badge")).to_have_text("SUCCESS")
        await expect(page.locator("#why")).to_have_count(0)
        await rest.wait_run(waiting_run, "SUCCESS")
    finally:
        if rest.run(holder_run)["status"] not in {"SUCCESS", "FAILED", "CANCELLED"}:
            rest.call("POST", f"/run/{holder_run}/cancel", {})
