"""The dashboard as a user drives it in Chromium, against a real server and a real runtime."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import IDLE_NS, NS, Rest, log_in
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.browser


async def test_after_login_a_new_run_appears_and_changes_status_without_a_reload(
    page: Page, dashboard_server: LiveServer, rest: Rest
) -> None:
    await log_in(page, dashboard_server, f"/ui/ns/{NS}/runs")
    await expect(page).to_have_url(re.compile(rf"/ui/ns/{NS}/runs$"))
    await page.evaluate("window.__sameDocument = true")

    run_id = rest.trigger("pause", store={"seconds": "4"})
    row = page.locator(f'tr[data-run-id="{run_id}"]')

    await expect(row).to_have_attribute("data-status", "RUNNING")
    await expect(row).to_have_attribute("data-status", "SUCCESS", timeout=20_000)
    await expect(row.locator(".badge")).to_have_text("SUCCESS")
    assert await page.evaluate("window.__sameDocument") is True  # updated in place, not reloaded


async def test_the_runs_are_filtered_by_status(
    page: Page, dashboard_server: LiveServer, rest: Rest, tmp_path: Path
) -> None:
    done = rest.trigger("pause")
    failed = rest.trigger("flaky", store={"marker": str(tmp_path / "never-retried")})
    await rest.wait_run(done, "SUCCESS")
    await rest.wait_run(failed, "FAILED")
    await log_in(page, dashboard_server, f"/ui/ns/{NS}/runs")

    await page.select_option("select[name=status]", "FAILED")
    await page.click("form.filters button[type=submit]")

    await expect(page).to_have_url(re.compile(r"status=FAILED"))
    await expect(page.locator(f'tr[data-run-id="{failed}"]')).to_be_visible()
    await expect(page.locator(f'tr[data-run-id="{done}"]')).to_have_count(0)
    statuses = await page.locator("tr[data-run-id]").evaluate_all("rows => rows.map(r => r.dataset.status)")
    assert statuses and set(statuses) == {"FAILED"}


async def test_a_failed_node_shows_in_the_dag_its_error_in_full_and_retry_turns_the_run_green(
    page: Page, dashboard_server: LiveServer, rest: Rest, tmp_path: Path
) -> None:
    run_id = rest.trigger("flaky", store={"marker": str(tmp_path / f"marker-{uuid.uuid4().hex}")})
    await log_in(page, dashboard_server, f"/ui/ns/{NS}/runs/{run_id}")

    box = page.locator('svg.dag g[data-identifier="flaky"]')
    await expect(box).to_have_attribute("data-status", "FAILED")
    await expect(page.locator('svg.dag g[data-identifier="start"]')).to_have_attribute(
        "data-status", "SUCCESS"
    )
    await expect(page.locator("#run-status .badge")).to_have_text("FAILED")

    await box.click()  # lists that node's states
    await expect(page).to_have_url(re.compile(r"tab=states&identifier=flaky"))
    await page.locator("table.states tr[data-status=ERRORED] a.mono").click()

    error = page.locator("pre.error-full")
    await expect(error).to_contain_text("first attempt fails on purpose")
    await expect(error).to_contain_text("<script>alert('x')</script> in the input")  # shown as text
    await expect(error).to_contain_text("the next attempt succeeds (the marker file now exists)")

    await page.click("button:has-text('Retry')")
    await expect(page.locator(".notice")).to_contain_text("retried")
    await expect(page.locator("#state-status .badge")).to_have_text(
        "SUCCESS"
    )  # live, on the new attempt's page

    await page.goto(f"/ui/ns/{NS}/runs/{run_id}")
    await expect(page.locator("#run-status .badge")).to_have_text("SUCCESS")
    await expect(box).to_have_attribute("data-status", "SUCCESS")
    fill = await box.locator("rect.box").evaluate("r => getComputedStyle(r).stroke")
    assert fill == "rgb(45, 164, 78)", fill  # green
    assert rest.run(run_id)["status"] == "SUCCESS"


async def test_cancel_stops_a_delayed_run_after_a_confirmation(
    page: Page, dashboard_server: LiveServer, rest: Rest
) -> None:
    run_id = rest.trigger("pause", start_delay=60_000)
    await log_in(page, dashboard_server, f"/ui/ns/{NS}/runs/{run_id}")
    await expect(page.locator("#run-status .badge")).to_have_text("PENDING")
    await expect(page.locator("main")).to_have_attribute("data-poll", "2000")

    await page.click("a:has-text('Cancel run')")
    await expect(page.locator("h1")).to_have_text("Cancel this run?")
    assert rest.run(run_id)["status"] == "PENDING"  # nothing happens before the confirmation
    await page.click("button:has-text('Yes, cancel the run')")

    await expect(page.locator("#run-status .badge")).to_have_text("CANCELLED")
    await expect(page.locator(".notice")).to_have_text("The run was cancelled.")
    await expect(page.locator("main")).not_to_have_attribute("data-poll", re.compile(".*"))
    await expect(page.locator("a:has-text('Cancel run')")).to_have_count(0)
    run = rest.run(run_id)
    assert run["status"] == "CANCELLED" and run["counts"] == {"CANCELLED": 1}


async def test_the_nodes_page_warns_when_no_runtime_asks_for_waiting_work(
    page: Page, dashboard_server: LiveServer, rest: Rest
) -> None:
    # A node registered by a runtime that is gone: its work waits for nobody.
    lonely = {"name": "Lonely", "inputs_schema": {}, "outputs_schema": {}, "secrets": []}
    rest.call("PUT", "/nodes/", {"runtime_name": "gone", "nodes": [lonely]}, ns=IDLE_NS)
    body = {
        "secrets": {},
        "nodes": [{"node_name": "Lonely", "namespace": IDLE_NS, "identifier": "lonely", "inputs": {}}],
    }
    rest.call("PUT", "/graph/waits", body, ns=IDLE_NS, expect=201)
    rest.trigger("waits", ns=IDLE_NS)
    await log_in(page, dashboard_server, f"/ui/ns/{NS}/nodes")

    await expect(page.locator("#stall-warning")).to_have_count(0)  # the suite's runtime polls for NS
    await expect(page.locator('tr[data-node="Pause"]')).to_have_attribute("data-stalled", "false")
    await page.click("details.ns-switch summary")
    await page.click(f"details.ns-switch a:has-text('{IDLE_NS}')")
    await page.click("nav.mainnav a:has-text('Nodes')")

    warning = page.locator("#stall-warning")
    await expect(warning).to_be_visible()  # after QUEUE_STALL_SECONDS (1 s), live
    await expect(warning).to_contain_text("Lonely")
    await expect(warning).to_contain_text("no runtime has ever asked for its work")
    await expect(page.locator('tr[data-node="Lonely"]')).to_have_attribute("data-stalled", "true")
